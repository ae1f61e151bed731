"""``nnip data``: convert labelled structures into an on-disk store, or describe one."""

from __future__ import annotations

import argparse

__all__ = ["CLICommand"]


class CLICommand:
    """Data sets larger than memory: HDF5 stores that ``nnip train`` streams.

    ``nnip data convert`` writes one (train from it with ``data.train: [data.h5]``);
    ``nnip data info`` summarises one.

    Example: ``nnip data convert run1.xyz run2.xyz deepmd_dir/ -o data.h5``
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the ``convert`` and ``info`` subcommands to ``parser``."""
        sub = parser.add_subparsers(dest="action", metavar="action", required=True)
        convert = sub.add_parser("convert", help="labelled files -> one HDF5 store")
        convert.add_argument("inputs", nargs="+",
                             help="labelled structure files (extxyz, DeePMD folder, n2p2 ...)")
        convert.add_argument("-o", "--output", required=True, help="store to write (.h5)")
        for key in ("energy", "forces", "stress", "weight"):
            convert.add_argument(f"--{key}-key", default=key,
                                 help=f"label name of the {key} in the files")
        convert.add_argument("--units", default=None, choices=["eV_Angstrom", "atomic"],
                             help="units of the files (default eV and Å)")
        info = sub.add_parser("info", help="structures, atoms, elements and labels of a store")
        info.add_argument("store", help="an HDF5 store written by nnip data convert")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Convert, or print the summary of a store."""
        import json

        from nnip.data.store import FrameStore, write_store

        if args.action == "convert":
            path = write_store(args.inputs, args.output, progress=True,
                               energy_key=args.energy_key, forces_key=args.forces_key,
                               stress_key=args.stress_key, weight_key=args.weight_key,
                               units=args.units)
            store = FrameStore(path)
            print(f"wrote {path}: {len(store)} structures, {int(store.n_atoms_each.sum())} "
                  f"atoms from {len(args.inputs)} input(s)")
            return 0
        print(json.dumps(FrameStore(args.store).fingerprint(), indent=1))
        return 0

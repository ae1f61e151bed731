"""``nnip export model.nnip``: compile a model for C++ and LAMMPS (AOTInductor ``.pt2``)."""

from __future__ import annotations

import argparse

__all__ = ["CLICommand"]


class CLICommand:
    """Compile a model file into an AOTInductor package (``.pt2``) that C++ loads.

    The package computes energy, per-atom energies, forces (ghost atoms included),
    virial and a committee's per-atom force spread of one domain, with any number of
    atoms and edges; its metadata names the elements, cutoff and ghost cutoff. This is
    what ``pair_style nnip`` in LAMMPS loads. Compilation takes about a minute.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to ``parser``."""
        parser.add_argument("model", help="model file (*.nnip)")
        parser.add_argument("-o", "--output", default=None,
                            help="package to write (default: the model's name with .pt2)")
        parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                            help="device the package runs on")
        parser.add_argument("--check", default=None, metavar="STRUCTURE",
                            help="compare the package with the model on this structure "
                                 "(the last frame of a file) and print the differences")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Export ``args.model``; returns the exit status."""
        from pathlib import Path

        from nnip.export.compiled import export_compiled

        output = Path(args.output or Path(args.model).with_suffix(".pt2"))
        export_compiled(args.model, output, device=args.device)
        if args.check:
            from nnip.data import read
            from nnip.export.compiled import parity
            from nnip.export.model_file import load_model

            atoms = read(args.check)[-1]
            diff = parity(load_model(args.model, device=args.device), output, atoms)
            print("compiled vs model on " + args.check + ": " + ", ".join(
                f"{k} {v:.2e}" for k, v in diff.items()))
        return 0

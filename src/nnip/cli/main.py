"""``nnip`` command: one module per subcommand, imported only when used.

Each subcommand module ``nnip.cli.<name>`` defines ``CLICommand`` with static methods
``add_arguments(parser)`` and ``run(args) -> int`` (ASE's ``ase/cli`` pattern). A run
only parses arguments and calls a public library function. nnip's own errors are shown
as one clear line; ``--traceback`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main", "COMMANDS"]

COMMANDS: dict[str, str] = {
    "train": "fit a potential from a YAML config",
    "eval": "errors of a model on labelled data",
    "data": "convert labelled files into an on-disk store (data larger than memory)",
    "info": "print metadata and provenance of a model file",
    "validate": "physical checks (MD stability, drift, RDF, EOS, dimers, phonons) + report",
    "al": "active learning: committee, MD exploration, oracle labelling, retraining",
    "md": "molecular dynamics with a model file (NVE, NVT; replicas in one batch)",
    "export": "compile a model file for C++ / LAMMPS (AOTInductor .pt2)",
    "lammps": "build the LAMMPS plugin (pair_style nnip) and run lmp with it",
    "demo": "make EMT data, train a potential, evaluate it, run MD",
}
"""Subcommands and their one-line help."""


def _available() -> dict[str, str]:
    out = {}
    for name, help_text in COMMANDS.items():
        if importlib.util.find_spec(f"nnip.cli.{name}") is not None:
            out[name] = help_text
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="nnip", description="Neural-network interatomic "
                                     "potentials: train, evaluate, simulate.")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback on errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, help_text in _available().items():
        command = importlib.import_module(f"nnip.cli.{name}").CLICommand
        p = sub.add_parser(name, help=help_text, description=command.__doc__)
        command.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnip`` command; returns the exit status."""
    from nnip.errors import NNIPError

    parser = build_parser()
    # a command may pass unknown arguments through (``nnip lammps run -in in.lammps``)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "passthrough"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.passthrough = list(args.passthrough) + extra
    if args.version:
        import nnip

        print(f"nnip {nnip.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 1
    command = importlib.import_module(f"nnip.cli.{args.command}").CLICommand
    try:
        return int(command.run(args) or 0)
    except (NNIPError, FileNotFoundError) as err:
        if args.traceback:
            raise
        print(f"nnip {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nnip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

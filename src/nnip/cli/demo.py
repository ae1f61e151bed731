"""``nnip demo``: EMT data -> trained SchNet -> errors -> MD, in a few minutes."""

from __future__ import annotations

import argparse
import json


class CLICommand:
    """Make EMT data, train SchNet on it, evaluate it and run MD with it.

    The data are Cu/Al structures labelled with ASE's EMT; errors are measured on
    held-out structures. Needs no input; takes about 3-4 minutes on 2 CPU cores.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments."""
        parser.add_argument("--out", default="nnip-demo", help="output directory")
        parser.add_argument("--minutes", type=float, default=3.0,
                            help="training time budget in minutes (default 3)")
        parser.add_argument("--structures", type=int, default=160,
                            help="number of EMT structures (default 160)")
        parser.add_argument("--md-steps", type=int, default=1000,
                            help="MD steps with the trained potential (default 1000)")
        parser.add_argument("--seed", type=int, default=0)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Run the demo and print its summary as JSON."""
        from nnip.demo import run_demo

        summary = run_demo(args.out, minutes=args.minutes, n_structures=args.structures,
                           md_steps=args.md_steps, seed=args.seed)
        print(json.dumps(summary, indent=2))
        return 0

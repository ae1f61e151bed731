"""``nnip train config.yaml [--set key=value ...]``."""

from __future__ import annotations

import argparse


class CLICommand:
    """Fit a potential as described by a YAML config.

    Rerunning the same command in the same run directory resumes from the last
    checkpoint. Overrides: ``--set train.lr=1e-3 --set model.params.n_features=64``.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments."""
        parser.add_argument("config", help="YAML config file")
        parser.add_argument("--set", dest="overrides", action="append", default=[],
                            metavar="KEY=VALUE", help="override a config value (repeatable)")
        parser.add_argument("--resume", action="store_true", default=True,
                            help="continue from the run directory's checkpoint (default)")
        parser.add_argument("--no-resume", dest="resume", action="store_false",
                            help="fail if the run directory already has a checkpoint")
        parser.add_argument("--quiet", action="store_true", help="no progress output")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Run training."""
        import os

        from nnip.training import train

        result = train(args.config, overrides=args.overrides, resume=args.resume,
                       progress=not args.quiet)
        if os.environ.get("RANK", "0") == "0":  # under torchrun: once, from rank 0
            print(result.model_path)
        return 0

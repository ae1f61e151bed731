"""``nnip info model.nnip``: print a model file's metadata and provenance."""

from __future__ import annotations

import argparse

__all__ = ["CLICommand"]


class CLICommand:
    """Print the metadata and provenance of a model file.

    Architecture, elements, cutoff, dtype, parameter count, E0, config, versions, git
    commit, date, license and the training-data fingerprint; the weights are not shown.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to ``parser``."""
        parser.add_argument("model", help="model file (*.nnip)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Print the summary of ``args.model``; returns the exit status."""
        from nnip.export.model_file import format_metadata, read_metadata

        print(format_metadata(read_metadata(args.model)))
        return 0

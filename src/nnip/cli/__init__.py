"""Command-line interface: ``nnip <command>``; see `nnip.cli.main`."""

"""``nnip al``: the active-learning loop."""

from __future__ import annotations

import argparse

__all__ = ["CLICommand"]


class CLICommand:
    """Active learning: train a committee, explore with MD, label uncertain frames, repeat.

    All state lives in the config's ``state_dir``: kill the command at any moment and
    rerun it (with the same ``--set`` overrides) to resume. At the end,
    STATE_DIR/summary.md and summary.png show errors and the uncertain fraction per
    iteration; the final model file is printed. Overrides:
    ``--set iterations=2 --set train.train.time_limit_min=2``.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the arguments of ``nnip al`` to ``parser``."""
        parser.add_argument("config", help="active-learning YAML (see nnip.active.loop.ALConfig)")
        parser.add_argument("--set", dest="overrides", action="append", default=[],
                            metavar="KEY=VALUE",
                            help="override a config value (repeatable), e.g. --set iterations=2 "
                                 "--set train.train.time_limit_min=2")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Run or resume the loop."""
        from nnip.active.loop import load_al_config, run_active_learning

        config = load_al_config(args.config, args.overrides)
        run_active_learning(config)
        with open(f"{config.state_dir}/summary.md") as handle:
            print(handle.read())
        return 0

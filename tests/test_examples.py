"""Every example config loads, and trains for a step through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnip.cli.main import main
from nnip.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_trains(path, shared_data, tmp_path, capsys):
    config = load_config(path)
    for f in config.data.train + config.data.test:
        assert Path(f).exists(), f
    code = main(["train", str(path), "--quiet", "--set", f"output.run_dir={tmp_path / 'run'}",
                 "--set", "train.epochs=1", "--set", "model.params.n_features=8",
                 "--set", "model.params.n_interactions=1", "--set", "output.plots=false",
                 "--set", "train.compile=false"])  # compiled steps: tests/training
    assert code == 0
    assert (tmp_path / "run" / "model.nnip").exists()
    code = main(["info", str(tmp_path / "run" / "model.nnip")])
    assert code == 0 and config.model.arch in capsys.readouterr().out

"""Small EMT datasets for training tests."""

from __future__ import annotations

from pathlib import Path

import ase.io
import pytest

from nnip.demo import make_emt_dataset


@pytest.fixture(scope="session")
def emt_file(tmp_path_factory) -> Path:
    """40 EMT-labelled Cu/Al structures in an extxyz file."""
    path = tmp_path_factory.mktemp("emt") / "emt.extxyz"
    ase.io.write(path, make_emt_dataset(40, seed=1))
    return path


def small_config(data: Path, run_dir: Path, **train) -> dict:
    """A fast config: tiny SchNet, few epochs."""
    return {
        "data": {"train": [str(data)], "validation_fraction": 0.15, "test_fraction": 0.1},
        "model": {"arch": "schnet", "cutoff": 4.0,
                  "params": {"n_features": 16, "n_interactions": 2, "n_basis": 10}},
        "train": {"epochs": 4, "batch_size": 4, "lr": 2e-3, "seed": 3, **train},
        "output": {"run_dir": str(run_dir), "plots": False},
    }

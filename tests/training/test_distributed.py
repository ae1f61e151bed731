"""Data-parallel training: ``torchrun --nproc-per-node 2 -m nnip train`` takes the same
steps as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nnip.config import LossConfig
from nnip.data.graph import AtomicGraph, Targets
from nnip.training import train
from nnip.training.checkpoint import load_checkpoint
from nnip.training.loss import Loss

from .conftest import small_config

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _torchrun(config: dict, tmp_path: Path, n: int) -> subprocess.CompletedProcess:
    path = tmp_path / f"config_{n}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(n), "-m", "nnip", "train", str(path),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("batching", [{"batch_size": 5}, {"batch_atoms": 100},
                                      {"batch_edges": 1500}])
def test_two_processes_take_the_steps_of_one(emt_file, tmp_path, batching):
    # stress in the loss too (EMT labels it): its structures fall unevenly on the ranks
    options = {"epochs": 3, "lr": 3e-3, "threads": 1, "device": "cpu", **batching}
    one = train(small_config(emt_file, tmp_path / "one", **options), progress=False)
    done = _torchrun(small_config(emt_file, tmp_path / "two", **options), tmp_path, 2)
    assert done.returncode == 0, done.stderr[-4000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert a["step"] == b["step"] > 10
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-7, atol=1e-9)
    for row_a, row_b in zip(a["history"], b["history"]):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-7)
        assert row_a["val_loss"] == pytest.approx(row_b["val_loss"], rel=1e-7)
    # rank 0 wrote the model file and the test errors, as a single process does
    assert (tmp_path / "two" / "model.nnip").exists()
    assert (tmp_path / "two" / "log.csv").read_text().count("\n") == 4
    assert one.model_path.exists()


def test_shares_with_global_denominators_sum_to_the_whole_loss(emt_file):
    """The identity behind it: the loss of a batch equals the sum of its shards' losses
    when each shard is normalised by the whole batch's denominators."""
    from nnip.data import read
    from nnip.models import build

    frames = read(emt_file)[:6]
    frames[2].info["weight"] = 3.0
    model = build("schnet", elements=["Al", "Cu"], cutoff=4.0, n_features=8,
                  n_interactions=1)
    loss = Loss(LossConfig())

    def part(sel, den=None):
        graph = AtomicGraph.from_atoms([frames[i] for i in sel], 4.0)
        targets = Targets.from_atoms([frames[i] for i in sel])
        out = model(graph, compute_forces=True, compute_stress=True, training=True)
        return loss(out, targets, graph, den)[0].detach(), loss.denominators(targets, graph)

    whole, _ = part(range(6))
    shards = [[0, 2, 4], [1, 3, 5]]
    den = sum(part(s)[1] for s in shards)
    total = sum(part(s, den)[0] for s in shards)
    assert float(total) == pytest.approx(float(whole), rel=1e-12)
    # with each shard's own normalisers the average differs (unequal weights)
    naive = sum(part(s)[0] for s in shards) / 2
    assert abs(float(naive) - float(whole)) > 1e-6 * float(whole)

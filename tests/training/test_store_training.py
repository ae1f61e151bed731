"""Training from an on-disk store: same result as from the file, batches by atom budget,
and a million structures streamed with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nnip.config import config_from_dict
from nnip.data.datasets import batches_by_atoms
from nnip.data.store import ATOM_DTYPE, SYSTEM_DTYPE, FrameStore, StoreWriter, write_store
from nnip.errors import ConfigError
from nnip.export.model_file import read_metadata
from nnip.training import train
from nnip.training.checkpoint import load_checkpoint
from nnip.training.trainer import _split

from .conftest import small_config


def test_training_from_a_store_equals_training_from_the_file(emt_file, tmp_path):
    store = write_store([emt_file], tmp_path / "emt.h5")
    from_file = train(small_config(emt_file, tmp_path / "file", epochs=3), progress=False)
    from_store = train(small_config(store, tmp_path / "store", epochs=3), progress=False)
    a = load_checkpoint(tmp_path / "file" / "checkpoint.pt")["best"]
    b = load_checkpoint(tmp_path / "store" / "checkpoint.pt")["best"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12)
    assert from_file.errors["test"]["overall"]["forces"]["mae"] == pytest.approx(
        from_store.errors["test"]["overall"]["forces"]["mae"], rel=1e-10)
    provenance = read_metadata(from_store.model_path)["provenance"]["training_data"]
    assert provenance["store"] == str(store) and len(provenance["sha256"]) == 64


def test_a_store_must_be_the_only_file_of_its_split(emt_file, tmp_path):
    store = write_store([emt_file], tmp_path / "emt.h5")
    config = small_config(emt_file, tmp_path / "run")
    config["data"]["train"] = [str(store), str(emt_file)]
    with pytest.raises(ConfigError, match="only file of its split"):
        train(config, progress=False)


def test_batches_by_atom_budget(emt_file, tmp_path):
    counts = np.array([4, 4, 10, 3, 3, 3, 20, 1])
    batches = batches_by_atoms(range(8), counts, 10)
    assert batches == [[0, 1], [2], [3, 4, 5], [6], [7]]
    assert sorted(i for b in batches for i in b) == list(range(8))
    edges = np.array([10, 50, 5, 5, 60, 5, 5, 5])
    assert batches_by_atoms(range(8), counts, 0, edges, 60) == \
        [[0, 1], [2, 3], [4], [5, 6, 7]]
    assert batches_by_atoms(range(8), counts, 10, edges, 60) == \
        [[0, 1], [2], [3], [4], [5], [6], [7]]
    config = small_config(emt_file, tmp_path / "run", epochs=2, batch_atoms=100)
    result = train(config, progress=False)
    # the first epoch took as many steps as the seeded order cut at 100 atoms has batches
    splits = _split(config_from_dict(config))
    counts = np.array([len(a) for a in splits.train])
    order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(
        config["train"]["seed"] * 100_003)).numpy()
    expected = batches_by_atoms(order, counts, 100)
    assert max(counts[b].sum() for b in expected if len(b) > 1) <= 100
    assert result.history[0]["step"] == len(expected)
    assert len(expected) != -(-len(counts) // config["train"]["batch_size"])


def lj_clusters(rng, k, n=8, eps=0.0104, sigma=3.4):
    """``k`` Ar clusters of ``n`` atoms (jittered cube corners) with Lennard-Jones labels.

    Returns positions ``(k, n, 3)`` Å, energies ``(k,)`` eV and forces ``(k, n, 3)`` eV/Å
    (Ar parameters of Rahman 1964: epsilon 10.4 meV, sigma 3.4 Å).
    """
    corners = np.array([[i, j, m] for i in (0, 1) for j in (0, 1) for m in (0, 1)], float)
    pos = corners[None, :n] * 3.8 + rng.normal(0, 0.15, (k, n, 3))
    d = pos[:, :, None] - pos[:, None]  # r_i - r_j
    off = 1.0 - np.eye(n)
    s6 = (sigma**2 / ((d**2).sum(-1) + np.eye(n))) ** 3
    energy = 0.5 * (4 * eps * (s6**2 - s6) * off).sum((1, 2))
    scale = 24 * eps * (2 * s6**2 - s6) / ((d**2).sum(-1) + np.eye(n)) * off
    return pos, energy, (scale[..., None] * d).sum(2)


def test_lj_labels_are_lennard_jones():
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    pos, energy, forces = lj_clusters(np.random.default_rng(1), 2)
    atoms = Atoms("Ar8", positions=pos[1])
    atoms.calc = LennardJones(epsilon=0.0104, sigma=3.4, rc=1e3, smooth=False)
    assert atoms.get_potential_energy() == pytest.approx(energy[1], abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), forces[1], atol=1e-9)


def _write_lj_store(path: Path, n_structures: int, chunk: int = 50_000) -> None:
    rng = np.random.default_rng(0)
    with StoreWriter(path) as writer:
        for start in range(0, n_structures, chunk):
            k = min(chunk, n_structures - start)
            pos, energy, forces = lj_clusters(rng, k)
            systems = np.zeros(k, SYSTEM_DTYPE)
            systems["n_atoms"], systems["weight"] = 8, 1.0
            systems["energy"], systems["has_energy"], systems["has_forces"] = energy, True, True
            systems["frame_index"] = np.arange(start, start + k)
            atoms = np.zeros(8 * k, ATOM_DTYPE)
            atoms["number"] = 18
            atoms["position"], atoms["force"] = pos.reshape(-1, 3), forces.reshape(-1, 3)
            writer.add_arrays(systems, atoms, config_type="lj_cluster", source="lj")


_TRAIN_AND_MEASURE = """
import json, sys
import torch, h5py, nnip
def peak_kb():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
before = peak_kb()
result = nnip.train(sys.argv[1], progress=False)
print(json.dumps({"before_kb": before, "peak_kb": peak_kb(), "steps": len(result.history),
                  "val": result.errors["validation"]["overall"]["forces"]["mae"]}))
"""


def test_a_million_structures_train_from_disk_with_bounded_memory(tmp_path):
    """1 000 000 Ar8 clusters (651 MB on disk; ~3 GB as ase.Atoms): training streams them.

    The process's peak resident memory during ``nnip.train`` (split, statistics, neighbour
    sample, 5 steps, evaluation) grows by less than a third of the store's size: what
    stays in memory is per-structure bookkeeping (indices, atom counts, offsets), not
    the structures.
    """
    big, val = tmp_path / "lj.h5", tmp_path / "lj_val.h5"
    _write_lj_store(big, 1_000_000)
    _write_lj_store(val, 64)
    assert len(FrameStore(big)) == 1_000_000
    config = {"data": {"train": [str(big)], "validation": [str(val)]},
              "model": {"arch": "schnet", "cutoff": 6.0,
                        "params": {"n_features": 16, "n_interactions": 1}},
              "train": {"epochs": 1, "max_steps": 5, "batch_size": 16, "threads": 1,
                        "device": "cpu"},
              "output": {"run_dir": str(tmp_path / "run"), "plots": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", _TRAIN_AND_MEASURE, str(tmp_path / "c.yaml")],
                         capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    grown_mb = (measured["peak_kb"] - measured["before_kb"]) / 1024
    store_mb = big.stat().st_size / 2**20
    print(f"store {store_mb:.0f} MB; peak RSS grew by {grown_mb:.0f} MB while training")
    assert grown_mb < store_mb / 3
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["step"] == 5
    assert np.isfinite(measured["val"])

"""Training: it learns, it resumes exactly after SIGKILL, it stops cleanly on NaN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nnip.errors import ConfigError, TrainingError
from nnip.training import train
from nnip.training.checkpoint import load_checkpoint
from nnip.training.trainer import _build_model

from .conftest import small_config


def test_loss_drops_and_outputs_are_written(emt_file, tmp_path):
    config = small_config(emt_file, tmp_path / "run", epochs=12)
    config["output"]["plots"] = True
    config["output"]["license"] = "CC-BY-4.0"
    result = train(config, progress=False)
    history = result.history
    assert len(history) == 12
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 3
    for name in ("config.yaml", "log.csv", "checkpoint.pt", "model.nnip",
                 "learning_curves.png", "test_parity.png", "test_errors.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert set(resolved["model"]["e0"]) == {"Al", "Cu"}
    assert resolved["model"]["scale"] > 0 and resolved["model"]["params"]["avg_num_neighbors"] > 1
    assert "test" in result.errors and "validation" in result.errors


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoint.pt")["best"]


def test_sigkill_and_resume_reproduce_the_uninterrupted_run(emt_file, tmp_path):
    # one thread in both processes: sums over two threads round differently, and the
    # claim is bitwise resumption, not independence of the thread count
    epochs = 6
    reference = tmp_path / "reference"
    threads = torch.get_num_threads()
    train(small_config(emt_file, reference, epochs=epochs, checkpoint_every=2, threads=1),
          progress=False)
    assert torch.get_num_threads() == threads, "train.threads leaked out of nnip.train"

    killed = tmp_path / "killed"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(small_config(emt_file, killed, epochs=epochs,
                                               checkpoint_every=2, threads=1)))
    cmd = [sys.executable, "-m", "nnip", "train", str(cfg), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(cmd, env=env)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if checkpoint.exists():
            try:
                step = load_checkpoint(checkpoint)["step"]
            except TrainingError:
                step = 0
            if step >= 9:  # mid-run, partway through epoch 2 or later
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(checkpoint)
    assert state["epoch"] < epochs, "the run finished before it could be killed"
    # rerun the same command: it resumes
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _weights(reference), _weights(killed)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-12), key
    ref_hist = load_checkpoint(reference / "checkpoint.pt")["history"]
    new_hist = load_checkpoint(checkpoint)["history"]
    assert [r["val_loss"] for r in ref_hist] == pytest.approx([r["val_loss"] for r in new_hist],
                                                              rel=1e-10)


def test_changed_config_refuses_to_resume(emt_file, tmp_path):
    train(small_config(emt_file, tmp_path / "run", epochs=1), progress=False)
    changed = small_config(emt_file, tmp_path / "run", epochs=2)
    changed["train"]["lr"] = 1e-2
    with pytest.raises(ConfigError, match="train.lr"):
        train(changed, progress=False)
    more = small_config(emt_file, tmp_path / "run", epochs=2)  # more epochs is fine
    assert len(train(more, progress=False).history) == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(emt_file, tmp_path, monkeypatch):
    from nnip.training import loss as loss_module

    original = loss_module.Loss.__call__
    calls = {"n": 0}

    def poisoned(self, out, targets, graph, denominators=None):
        calls["n"] += 1
        total, parts = original(self, out, targets, graph, denominators)
        return (total * float("nan"), parts) if calls["n"] > 5 else (total, parts)

    monkeypatch.setattr(loss_module.Loss, "__call__", poisoned)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError, match="loss became nan at step 5.*last good checkpoint"):
        train(small_config(emt_file, run_dir, epochs=3, checkpoint_every=2), progress=False)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_time_limit_stops_mid_epoch_with_trained_weights(emt_file, tmp_path):
    """A time limit shorter than one epoch stops after the current step and still returns
    (and saves) the trained weights, not the initial ones."""
    config = small_config(emt_file, tmp_path / "run", epochs=3, batch_size=1,
                          time_limit_min=1e-4)
    result = train(config, progress=False)
    assert result.history == []  # stopped inside the first epoch
    initial = _build_model(result.config, torch.device("cpu"))  # same seed: initial weights
    changed = [not torch.equal(a, b) for a, b in
               zip(result.model.state_dict().values(), initial.state_dict().values())]
    assert any(changed)
    assert (tmp_path / "run" / "model.nnip").exists()


def test_cosine_follows_epochs_and_final_stage_weights_energy(emt_file, tmp_path):
    """Cosine decays lr to min_lr over the epochs; the final stage switches the loss to the
    energy-weighted one for the last fraction of the run, and selection restarts there."""
    config = small_config(emt_file, tmp_path / "run", epochs=6, scheduler="cosine", lr=4e-3,
                          min_lr=1e-5)
    config["loss"] = {"final_energy_weight": 1000.0, "final_fraction": 0.5}
    history = train(config, progress=False).history
    lrs = [row["lr"] for row in history]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[0] < 4e-3 and lrs[-1] < 2e-4  # logged after each epoch's last step
    assert [row["stage"] for row in history] == [1, 1, 1, 2, 2, 2]
    # The validation loss jumps at the switch (energy weight 10 -> 1000).
    assert history[3]["val_loss"] > 3 * history[2]["val_loss"]


def test_cosine_with_time_limit_anneals_to_the_budget(emt_file, tmp_path, monkeypatch):
    """With a time budget the cosine follows the clock, so the run ends near min_lr even
    though the epoch budget is far from spent."""
    clock = iter(range(0, 10**6, 10))  # every call to the clock: 10 s later
    monkeypatch.setattr("nnip.training.trainer.time.monotonic", lambda: next(clock))
    config = small_config(emt_file, tmp_path / "run", epochs=1000, scheduler="cosine",
                          lr=4e-3, min_lr=1e-5, time_limit_min=20.0)
    history = train(config, progress=False).history
    assert 1 < len(history) < 1000
    assert history[-1]["lr"] < 1e-4 < history[0]["lr"]


def test_committee_training_saves_one_calibrated_model_and_resumes(emt_file, tmp_path):
    from nnip.export.model_file import load_model, read_metadata
    from nnip.models import Committee

    config = small_config(emt_file, tmp_path / "run", epochs=3, committee=3, bootstrap=True)
    result = train(config, progress=False)
    assert isinstance(result.model, Committee) and len(result.model.members) == 3
    loaded = load_model(tmp_path / "run" / "model.nnip")
    assert isinstance(loaded, Committee)
    calibration = float(loaded.calibration)
    meta = read_metadata(tmp_path / "run" / "model.nnip")
    assert meta["provenance"]["calibration"] == pytest.approx(calibration)
    assert calibration > 0
    for k in range(3):  # each member is an ordinary, resumable run
        assert (tmp_path / "run" / f"member{k}" / "checkpoint.pt").exists()
    weights = [m.state_dict() for m in result.model.members]
    assert not torch.equal(next(iter(weights[0].values())), next(iter(weights[1].values())))
    # Calibrated: on the validation set the scaled spread matches the error on average.
    from nnip.config import config_from_dict
    from nnip.training.trainer import _split

    validation = _split(config_from_dict(config)).validation
    out = loaded.predict(validation)
    reference = np.concatenate([a.get_forces() for a in validation])
    err2 = ((out.forces.numpy() - reference) ** 2).sum(-1).mean()
    assert (out.forces_uncertainty.numpy() ** 2).mean() == pytest.approx(err2, rel=1e-6)
    assert "validation" in result.errors and "test" in result.errors
    again = train(config, progress=False)  # everything done: resumes, same committee
    assert torch.equal(again.model.members[2].state_dict()["terms.reference.e0"],
                       result.model.members[2].state_dict()["terms.reference.e0"])


def test_init_from_warm_starts_the_learned_weights(emt_file, tmp_path):
    first = train(small_config(emt_file, tmp_path / "a", epochs=4), progress=False)
    config = small_config(emt_file, tmp_path / "b", epochs=1, lr=1e-8)
    config["train"]["init_from"] = str(first.model_path)
    second = train(config, progress=False)  # lr ~ 0: the weights stay the loaded ones
    a, b = first.model.state_dict(), second.model.state_dict()
    learned = [k for k in a if not k.startswith("terms.reference") and "scale" not in k]
    assert learned and all(torch.allclose(a[k], b[k], atol=1e-6) for k in learned)
    config["train"]["init_from"] = str(tmp_path / "missing.nnip")
    config["output"]["run_dir"] = str(tmp_path / "c")
    with pytest.raises(Exception, match="missing.nnip"):
        train(config, progress=False)


def test_a_divergence_rolls_back_to_the_best_weights_with_half_the_lr(emt_file, tmp_path,
                                                                     capsys, monkeypatch):
    from nnip.training import trainer

    original = trainer._Run._train_step

    def wreck_in_epoch_4(self, indices):  # what a too-large Adam step does to the weights
        out = original(self, indices)
        if self.step == 3 * self.steps_per_epoch + 1:
            with torch.no_grad():
                for p in (*self.model.parameters(), *self.ema.parameters()):
                    p.mul_(40.0)
        return out

    monkeypatch.setattr(trainer._Run, "_train_step", wreck_in_epoch_4)
    config = small_config(emt_file, tmp_path / "run", epochs=8, scheduler="cosine")
    result = train(config, progress=False)
    history = result.history
    assert [bool(row.get("rolled_back")) for row in history] == [False] * 3 + [True] + \
        [False] * 4
    assert "diverged; back to the best weights" in capsys.readouterr().err
    assert history[4]["lr"] < 0.55 * config["train"]["lr"]  # cosine from half the lr
    assert history[-1]["val_loss"] < 2 * min(row["val_loss"] for row in history[:3])

"""Fit a potential from a `Config`: ``nnip train config.yaml`` or ``nnip.train(config)``.

One run lives in one directory: the resolved config (``config.yaml``), an atomic
checkpoint (``checkpoint.pt``), a CSV log (``log.csv``), plots, and the model file. A
run that is killed resumes from its last checkpoint when started again with the same
config and directory, and reproduces the uninterrupted run exactly (same seed, same
sampler order, same optimizer state).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from ase import Atoms

from nnip._threads import torch_threads
from nnip.config import Config, config_from_dict, config_to_dict, load_config
from nnip.data.datasets import StructureDataset, batches_by_atoms
from nnip.data.io import read
from nnip.data.stats import energy_scale
from nnip.data.store import FrameStore, is_store
from nnip.errors import ConfigError, TrainingError
from nnip.models import MODELS, build
from nnip.models.potential import Potential
from nnip.physics.reference import fit_reference_energies
from nnip.training.checkpoint import load_checkpoint, save_atomic
from nnip.training.distributed import SINGLE, Group, setup
from nnip.training.loss import Loss

__all__ = ["train", "TrainResult", "prepare"]

CHECKPOINT = "checkpoint.pt"
DIVERGED = 10.0
"""An epoch whose validation loss exceeds this multiple of the stage's best diverged."""
# Settings that may change when a run is resumed (they do not change its past).
_RESUMABLE = {"epochs", "max_steps", "time_limit_min", "checkpoint_every", "threads", "device",
              "early_stopping_patience"}


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        model: the trained potential (best EMA weights).
        model_path: the saved model file.
        run_dir: the run directory.
        history: one dict per epoch (losses, validation errors, learning rate).
        errors: validation and test error tables (see `nnip.validate.errors.error_table`).
        config: the resolved config.
    """

    model: Potential
    model_path: Path
    run_dir: Path
    history: list[dict[str, Any]]
    errors: dict[str, Any]
    config: Config


@dataclass
class _Splits:
    """Structures of each split: lists in memory, or views of an on-disk store."""

    train: Sequence[Atoms]
    validation: Sequence[Atoms]
    test: Sequence[Atoms]


def _take(frames: Sequence[Atoms], indices: Sequence[int]) -> Sequence[Atoms]:
    """Structures ``indices`` of ``frames`` (a store view stays a view)."""
    if isinstance(frames, FrameStore):
        return frames[np.asarray(indices, dtype=np.int64)]
    return [frames[int(i)] for i in indices]


def _read_all(files: Sequence[str], config: Config) -> Sequence[Atoms]:
    frames: list[Atoms] = []
    d = config.data
    stores = [f for f in files if is_store(f)]
    if stores:
        if len(files) > 1:
            raise ConfigError(f"an on-disk store ({stores[0]}) must be the only file of its "
                              f"split, got {list(files)}; convert them into one store: "
                              "nnip data convert FILES... -o data.h5")
        return FrameStore(stores[0])
    for f in files:
        frames += read(f, energy_key=d.energy_key, forces_key=d.forces_key,
                       stress_key=d.stress_key, weight_key=d.weight_key)
    return frames


def _split(config: Config) -> _Splits:
    d = config.data
    train = _read_all(d.train, config)
    validation = _read_all(d.validation, config)
    test = _read_all(d.test, config)
    order = np.random.default_rng(d.split_seed).permutation(len(train))
    n_val = 0 if validation else int(round(d.validation_fraction * len(train)))
    n_test = 0 if test else int(round(d.test_fraction * len(train)))
    if not validation and n_val == 0 and len(train) > 1:
        n_val = 1
    held_val, held_test = order[:n_val], order[n_val:n_val + n_test]
    keep = order[n_val + n_test:]
    validation = validation or _take(train, np.sort(held_val))
    test = test or _take(train, np.sort(held_test))
    train = _take(train, np.sort(keep))
    if not len(train):
        raise ConfigError("no training structures left after holding out validation/test")
    return _Splits(train, validation, test)


def prepare(config: Config, splits: _Splits, train_set: StructureDataset) -> Config:
    """Fill data-derived values (E0, scale, average neighbour count) into the config.

    Args:
        config: the config as given.
        splits: training, validation and test structures.
        train_set: the training structures with neighbour lists at ``model.cutoff``.
    """
    resolved = copy.deepcopy(config)
    m = resolved.model
    elements = sorted(set().union(*(_elements(f) for f in
                                    (splits.train, splits.validation, splits.test))))
    if not m.e0:
        m.e0 = fit_reference_energies(splits.train, elements)
    missing = [s for s in elements if s not in m.e0]
    if missing:
        raise ConfigError(f"model.e0 has no value for element(s) {missing}")
    unused = sorted(set(resolved.loss.element_weights) - set(elements))
    if unused:  # a misspelt or absent element would silently weigh nothing
        raise ConfigError(f"loss.element_weights names {unused}, which no structure of the "
                          f"data contains (elements: {elements})")
    if resolved.loss.charges_first_fraction > 0 and not _has_charges(splits.train):
        raise ConfigError("loss.charges_first_fraction fits reference charges first, but no "
                          "training structure has them (per-atom array 'ref_charges')")
    if m.scale == 0:
        m.scale = energy_scale(splits.train, m.e0)
    m.params = _with_avg_neighbors(m.arch, m.params, train_set)
    if m.electrostatics:
        es = {} if m.electrostatics is True else dict(m.electrostatics)
        if "params" in es:  # otherwise the charge network copies m.params
            es["params"] = _with_avg_neighbors(es.get("arch", m.arch), es["params"], train_set)
        m.electrostatics = es or True
    return resolved


def _has_charges(frames: Sequence[Atoms]) -> bool:
    """Whether any structure carries reference charges (``arrays["ref_charges"]``)."""
    if isinstance(frames, FrameStore):
        return frames.has_charges()
    return any("ref_charges" in a.arrays for a in frames)


def _elements(frames: Sequence[Atoms]) -> set[str]:
    if isinstance(frames, FrameStore):
        return set(frames.composition()[0]) if len(frames) else set()
    return {s for a in frames for s in a.get_chemical_symbols()}


def _with_avg_neighbors(arch: str, params: dict[str, Any], train_set: StructureDataset
                        ) -> dict[str, Any]:
    """``params`` plus the data's average neighbour count where ``arch`` takes one."""
    config_cls = MODELS[arch][0] if arch in MODELS else None
    if config_cls is None or "avg_num_neighbors" not in config_cls.__dataclass_fields__ \
            or "avg_num_neighbors" in params:
        return params
    return {**params, "avg_num_neighbors": train_set.average_num_neighbors()}


def _build_model(config: Config, device: torch.device, member: int = 0) -> Potential:
    m = config.model
    dtype = torch.float64 if m.dtype == "float64" else torch.float32
    model = build(m.arch, elements=sorted(m.e0), cutoff=m.cutoff, dtype=dtype, e0=m.e0,
                  scale=m.scale, seed=config.train.seed, zbl=m.zbl, d3=m.d3,
                  electrostatics=m.electrostatics, **m.params)
    if config.train.init_from:
        _warm_start(model, config.train.init_from, member)
    return model.to(device)


def _warm_start(model: Potential, path: str, member: int) -> None:
    """Copy the learned weights of model file ``path`` into ``model``.

    From member ``member`` of a committee file; reference energies and the energy scale
    keep the values of the new data.
    """
    from nnip.export.model_file import load_model
    from nnip.models.committee import Committee

    source = load_model(path)
    if isinstance(source, Committee):
        source = source.members[member % len(source.members)]
    if source.spec.get("arch") != model.spec.get("arch") or source.elements != model.elements:
        raise ConfigError(f"train.init_from {path}: a {source.spec.get('arch')} model for "
                          f"{source.elements}; this run trains {model.spec.get('arch')} for "
                          f"{model.elements}")
    own = model.state_dict()
    keep = {k: v for k, v in source.state_dict().items()
            if k in own and own[k].shape == v.shape and not k.startswith("terms.reference")
            and not k.endswith(".scale")}
    model.load_state_dict(keep, strict=False)


def _device(name: str, group: Group = SINGLE) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    if name == "cuda" and group.world > 1:
        return torch.device("cuda", group.local_rank)
    return torch.device(name)


class _Run:
    """State of one training run (model, optimizer, counters) and its loop."""

    def __init__(self, config: Config, splits: _Splits, train_set: StructureDataset,
                 run_dir: Path, progress: bool, member: int = 0, group: Group = SINGLE
                 ) -> None:
        self.config, self.splits, self.run_dir, self.progress = config, splits, run_dir, progress
        self.group = group
        t = config.train
        self.device = _device(t.device, group)
        self.model = _build_model(config, self.device, member)
        self.ema = copy.deepcopy(self.model)
        self.functional = None  # compiled forces (train.compile)
        if config.train.compile:
            from nnip.models.functional import FunctionalForces

            self.functional = FunctionalForces(self.model, compile=True)
        self.best_state = self._ema_snapshot()
        self.train_set = train_set
        self.val_set = StructureDataset(splits.validation, config.model.cutoff) \
            if splits.validation else None
        self.losses = {0: Loss(config.loss),
                       1: Loss(dataclasses.replace(config.loss,
                                                   energy_weight=config.loss.final_energy_weight)),
                       -1: Loss(dataclasses.replace(config.loss, energy_weight=0.0,
                                                    forces_weight=0.0, stress_weight=0.0))}
        # -1: charges first (loss.charges_first_fraction); 1 once the final
        # (energy-weighted) stage has begun
        self.stage = -1 if config.loss.charges_first_fraction > 0 else 0
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr,
                                           weight_decay=t.weight_decay)
        self.steps_per_epoch = len(self._batches(0))
        self.scheduler = self._make_scheduler()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_val, self.stale_epochs = math.inf, 0
        self.lr_scale = 1.0  # halved at each roll-back after a divergence
        self.history: list[dict[str, Any]] = []
        self.running: list[float] = []  # training losses of the current epoch so far
        self.elapsed = 0.0
        self.use_stress = config.data.use_stress and config.loss.stress_weight > 0
        self.tensorboard: Any = None

    def _make_scheduler(self) -> Any:
        t = self.config.train
        if t.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=t.plateau_factor, patience=t.plateau_patience,
                min_lr=t.min_lr)
        return None  # "cosine" is set step by step from `fraction_done` (it follows the clock)

    @property
    def loss(self) -> Loss:
        """The loss of the current stage."""
        return self.losses[self.stage]

    def fraction_done(self) -> float:
        """Fraction of the run done.

        Of the epoch budget, or of the step or time limit when that is reached sooner.
        """
        t = self.config.train
        done = self.step / (t.epochs * self.steps_per_epoch)
        if t.max_steps:
            done = max(done, self.step / t.max_steps)
        if t.time_limit_min:
            done = max(done, self.elapsed / (60.0 * t.time_limit_min))
        return min(done, 1.0)

    def _schedule(self) -> None:
        """Set the learning rate (cosine) and enter the final loss stage when it is due."""
        t, c = self.config.train, self.config.loss
        done = self.fraction_done()
        if t.scheduler == "cosine":
            lr = t.min_lr + 0.5 * (self.lr_scale * t.lr - t.min_lr) * \
                (1.0 + math.cos(math.pi * done))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if self.stage == -1 and done >= c.charges_first_fraction:
            self.stage, self.best_val, self.stale_epochs = 0, math.inf, 0  # charges fitted
        if c.final_energy_weight > 0 and self.stage == 0 and done >= 1.0 - c.final_fraction:
            # Validation losses of the two stages are not comparable: select anew.
            self.stage, self.best_val, self.stale_epochs = 1, math.inf, 0

    # -------------------------------------------------------------- checkpointing
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly."""
        return {
            "format": "nnip-checkpoint", "format_version": 1,
            "config": config_to_dict(self.config),
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "best": self.best_state, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "step": self.step, "epoch": self.epoch, "stage": self.stage,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val": self.best_val, "stale_epochs": self.stale_epochs,
            "lr_scale": self.lr_scale, "history": self.history, "running": self.running,
            "elapsed": self.elapsed,
            "rng": torch.random.get_rng_state(),
        }

    def save(self) -> None:
        if self.group.main:
            save_atomic(self.state(), self.run_dir / CHECKPOINT)

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by `state`."""
        old = state["config"]
        new = config_to_dict(self.config)
        defaults = config_to_dict(Config())  # for keys added after the checkpoint was written
        for section in ("data", "model", "loss", "train"):
            for key, value in new[section].items():
                if section == "train" and key in _RESUMABLE:
                    continue
                if old[section].get(key, defaults[section].get(key)) != value:
                    raise ConfigError(
                        f"{self.run_dir / CHECKPOINT} was written with {section}.{key} = "
                        f"{old[section].get(key)!r}, now {value!r}; use a new output.run_dir "
                        "or delete the checkpoint to start afresh")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.best_state = state["best"]
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for key in ("step", "epoch", "batch_in_epoch", "best_val", "stale_epochs", "history",
                    "running", "elapsed"):
            setattr(self, key, state[key])
        self.stage = state.get("stage", 0)
        self.lr_scale = state.get("lr_scale", 1.0)
        torch.random.set_rng_state(state["rng"])

    # ------------------------------------------------------------------- training
    def _batches(self, epoch: int) -> list[Sequence[int]]:
        """The batches of ``epoch``: a seeded shuffle cut by structures or atoms."""
        t = self.config.train
        g = torch.Generator().manual_seed(t.seed * 100_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=g).numpy()
        if t.batch_atoms or t.batch_edges:
            if t.batch_edges and self.train_set.edge_counts is None:
                raise ConfigError("train.batch_edges needs the structures in memory; for an "
                                  "on-disk store use train.batch_atoms")
            return batches_by_atoms(order, self.train_set.atom_counts, t.batch_atoms,
                                    self.train_set.edge_counts, t.batch_edges)
        return [order[k:k + t.batch_size] for k in range(0, len(order), t.batch_size)]

    def _train_step(self, indices: Sequence[int]) -> dict[str, float]:
        """One optimizer step on the global batch ``indices`` (this process's share)."""
        self._schedule()
        group = self.group
        local = group.shard(indices)
        self.model.train()
        parts: dict[str, float] = {}
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        if len(local):
            graph, targets = self.train_set.batch(local, self.device, torch.float64)
        denominators = None
        if group.world > 1:  # normalise every process's share by the whole global batch
            own = self.loss.denominators(targets, graph) if len(local) else \
                torch.zeros(4, dtype=torch.float64, device=self.device)
            denominators = group.sum(own)
        if len(local):
            charges_only = self.stage == -1  # loss.charges_first_fraction: no derivatives
            stress = not charges_only and self.use_stress and bool(targets.has_stress.any())
            if self.functional is not None and not charges_only:
                out = self.functional(graph, compute_stress=stress)
            else:
                out = self.model(graph, compute_forces=not charges_only, compute_stress=stress,
                                 training=True)
            loss, parts = self.loss(out, targets, graph, denominators)
        value = float(group.sum(loss.detach().clone().reshape(1))[0])
        if not math.isfinite(value):
            raise TrainingError(
                f"loss became {value} at step {self.step} (epoch {self.epoch}); the last "
                f"good checkpoint is kept in {self.run_dir / CHECKPOINT}. Lower train.lr, "
                "raise train.grad_clip, or check the data for outliers")
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
        group.sum_gradients(self.model.parameters())
        t = self.config.train
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self._update_ema()
        self.step += 1
        return {**parts, "loss": value}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.train.ema_decay
        decay = min(decay, (1.0 + self.step) / (10.0 + self.step))  # warm-up
        for p_ema, p in zip(self.ema.parameters(), self.model.parameters()):
            p_ema.lerp_(p, 1.0 - decay)

    def validate(self) -> dict[str, float]:
        """Loss and MAEs of the EMA model on the validation set."""
        if self.val_set is None:
            return {}
        self.ema.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        n = len(self.val_set)
        bs = self.config.train.batch_size
        total_loss = 0.0
        for k, start in enumerate(range(0, n, bs)):
            if k % self.group.world != self.group.rank:  # whole batches per process
                continue
            idx = list(range(start, min(start + bs, n)))
            graph, targets = self.val_set.batch(idx, self.device, torch.float64)
            stress = self.use_stress and bool(targets.has_stress.any())
            out = self.ema(graph, compute_forces=True, compute_stress=stress)
            loss, _ = self.loss(out, targets, graph)
            total_loss += float(loss) * len(idx)
            _accumulate_mae(out, targets, graph, sums, counts)
        if self.group.world > 1:
            keys = ("energy", "forces", "stress", "charges")
            packed = self.group.sum(torch.tensor(
                [sums.get(k, 0.0) for k in keys] + [counts.get(k, 0) for k in keys]
                + [total_loss], dtype=torch.float64, device=self.device)).tolist()
            sums = {k: v for k, v, c in zip(keys, packed[:4], packed[4:8]) if c > 0}
            counts = {k: int(c) for k, c in zip(keys, packed[4:8]) if c > 0}
            total_loss = packed[8]
        metrics = {f"val_{k}_mae": sums[k] / counts[k] for k in sums}
        metrics["val_loss"] = total_loss / n
        return metrics

    def run(self) -> None:
        """Train until the epoch budget, early stopping or the time limit."""
        t = self.config.train
        start_time = time.monotonic() - self.elapsed
        bar = _Bar(self.progress, total=t.epochs * self.steps_per_epoch, done=self.step)
        self.tensorboard = _open_tensorboard(self.run_dir) if self.group.main else None
        self.group.broadcast_module(self.model)
        self.group.broadcast_module(self.ema)
        def out_of_time() -> bool:
            return (bool(t.time_limit_min) and self.elapsed > 60 * t.time_limit_min) or \
                (bool(t.max_steps) and self.step >= t.max_steps)

        try:
            while self.epoch < t.epochs and not (t.max_steps and self.step >= t.max_steps):
                batches = self._batches(self.epoch)
                while self.batch_in_epoch < len(batches):
                    parts = self._train_step(batches[self.batch_in_epoch])
                    self.running.append(parts["loss"])
                    self.batch_in_epoch += 1
                    self.elapsed = self._clock(start_time)
                    bar.advance(f"epoch {self.epoch + 1}/{t.epochs} loss {parts['loss']:.4g}"
                                + _last_validation(self.history))
                    if self.step % t.checkpoint_every == 0:
                        self.save()
                    if out_of_time() and self.batch_in_epoch < len(batches):
                        # Time and step limits are honoured mid-epoch (large data sets):
                        # keep the current weights if they validate better, checkpoint,
                        # stop. A rerun with a longer limit resumes from this step.
                        self._keep_if_better()
                        self.save()
                        return
                stop = self._end_epoch(bar)
                self.elapsed = self._clock(start_time)
                self.save()
                if stop or out_of_time():
                    break
        finally:
            bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()

    def _clock(self, start_time: float) -> float:
        """Seconds since ``start_time`` by rank 0's clock, so all processes stop together."""
        elapsed = time.monotonic() - start_time
        if self.group.world == 1:
            return elapsed
        mine = torch.tensor([elapsed if self.group.main else 0.0], dtype=torch.float64,
                            device=self.device)
        return float(self.group.sum(mine)[0])

    def _ema_snapshot(self) -> dict[str, torch.Tensor]:
        """A detached copy of the EMA weights (the candidate result of the run)."""
        return {k: v.detach().clone() for k, v in self.ema.state_dict().items()}

    def _keep_if_better(self) -> None:
        """Make the current EMA weights the result if they validate better.

        Also when there is no validation set or no epoch has been validated yet.
        """
        val = self.validate().get("val_loss")
        if val is None or not self.history or val < self.best_val:
            if val is not None:
                self.best_val = min(val, self.best_val)
            self.best_state = self._ema_snapshot()

    def _roll_back(self, row: dict[str, Any], val: float) -> str:
        """Return to the best weights after a divergence, with half the learning rate.

        A step too large for the loss landscape can throw the weights into a region they
        never leave (every output the same); training on from there wastes the budget and
        the final stage would pick that state. Model and EMA go back to the best EMA
        weights, Adam's moments are cleared, and the learning rate is halved.
        """
        self.model.load_state_dict(self.best_state)
        self.ema.load_state_dict(self.best_state)
        self.optimizer.state.clear()
        self.lr_scale *= 0.5
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        row["rolled_back"] = True
        return (f"nnip train: validation loss {val:.4g} > {DIVERGED:g} x the best "
                f"{self.best_val:.4g} at epoch {self.epoch + 1}: diverged; back to the best "
                f"weights with half the learning rate (x{self.lr_scale:g})")

    def _end_epoch(self, bar: _Bar) -> bool:
        t = self.config.train
        metrics = self.validate()
        row = {"epoch": self.epoch + 1, "step": self.step,
               "lr": self.optimizer.param_groups[0]["lr"], "stage": self.stage + 1,
               "train_loss": float(np.mean(self.running)),
               "time_s": round(self.elapsed, 2), **metrics}
        val = metrics.get("val_loss", row["train_loss"])
        if math.isfinite(self.best_val) and not val < DIVERGED * self.best_val:
            bar.log(self._roll_back(row, val), always=self.group.main)
            val = self.best_val
        improved = val is not None and val < self.best_val
        if improved:
            self.best_val, self.stale_epochs = val, 0
            self.best_state = self._ema_snapshot()
        else:
            self.stale_epochs += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val)
        self.history.append(row)
        if self.group.main:
            _write_csv(self.history, self.run_dir / "log.csv")
        if self.tensorboard is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, global_step=self.step)
        bar.log(_format_row(row, improved))
        self.epoch += 1
        self.batch_in_epoch = 0
        self.running = []
        return bool(t.early_stopping_patience and self.stale_epochs >= t.early_stopping_patience)


def _accumulate_mae(out: Any, targets: Any, graph: Any, sums: dict[str, float],
                    counts: dict[str, int]) -> None:
    def add(key: str, err: torch.Tensor) -> None:
        sums[key] = sums.get(key, 0.0) + float(err.abs().sum())
        counts[key] = counts.get(key, 0) + err.numel()

    n_atoms = graph.atoms_per_system.to(torch.float64)
    sel = targets.has_energy
    if bool(sel.any()):
        add("energy", (out.energy[sel] - targets.energy[sel]) / n_atoms[sel])
    atom_sel = targets.has_forces[graph.system_idx]
    if bool(atom_sel.any()):
        add("forces", out.forces[atom_sel] - targets.forces[atom_sel])
    if out.stress is not None and bool(targets.has_stress.any()):
        add("stress", out.stress[targets.has_stress] - targets.stress[targets.has_stress])
    if out.charges is not None and bool(targets.has_charges.any()):
        atom_sel = targets.has_charges[graph.system_idx]
        add("charges", out.charges[atom_sel] - targets.charges[atom_sel])


def _last_validation(history: Sequence[Mapping[str, Any]]) -> str:
    """Short text of the last validation MAEs for the live progress bar."""
    if not history:
        return ""
    row = history[-1]
    parts = [f"{name} {row[key] * 1e3:.3g}" for key, name in
             (("val_energy_mae", "E"), ("val_forces_mae", "F")) if row.get(key) is not None]
    return f" | val MAE {' '.join(parts)} meV(/atom, /Å)" if parts else ""


def _format_row(row: Mapping[str, Any], improved: bool) -> str:
    text = f"epoch {row['epoch']:>4}  loss {row['train_loss']:.4g}"
    for key, unit, factor in (("val_energy_mae", "meV/atom", 1e3), ("val_forces_mae", "meV/Å", 1e3),
                              ("val_stress_mae", "meV/Å³", 1e3)):
        if row.get(key) is not None:
            text += f"  {key[4:-4]} MAE {row[key] * factor:.2f} {unit}"
    text += f"  lr {row['lr']:.2e}  {row['time_s']:.0f}s"
    return text + ("  *" if improved else "")


def _open_tensorboard(run_dir: Path) -> Any:
    """A TensorBoard writer on ``run_dir/tensorboard`` when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _write_csv(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


class _Bar:
    """A rich progress bar on a terminal; plain epoch lines otherwise."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.enabled = enabled
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total} steps"),
                                     TimeRemainingColumn(), console=self.console)
            self.task = self.progress.add_task("training", total=total, completed=done)
            self.progress.start()

    def advance(self, description: str) -> None:
        if self.live:
            self.progress.update(self.task, advance=1, description=description)

    def log(self, text: str, always: bool = False) -> None:
        if self.live:
            self.progress.console.print(text)
        elif self.enabled or always:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def train(config: Config | Mapping[str, Any] | str | Path, *, overrides: Sequence[str] = (),
          resume: bool = True, progress: bool = True) -> TrainResult:
    """Train a potential as described by ``config``.

    Args:
        config: a `Config`, a nested dict, or a YAML file path.
        overrides: ``section.key=value`` strings applied on top (file configs only).
        resume: continue from ``run_dir/checkpoint.pt`` when it exists (default); with
            ``False`` an existing checkpoint is an error.
        progress: show progress and per-epoch lines.

    Returns:
        `TrainResult` with the trained model (best EMA weights) and where it was saved.
    """
    if isinstance(config, (str, Path)):
        config = load_config(config, overrides)
    elif isinstance(config, Mapping):
        config = config_from_dict(config)
    config.check()
    group = setup(config.train.device)  # several processes under torchrun, else one
    progress = progress and group.main
    try:
        with torch_threads():  # train.threads (set below) applies to this call only
            if config.train.committee > 1:
                result = _train_committee(config, resume=resume, progress=progress,
                                          group=group)
            else:
                result = _train_one(config, _split(config), resume=resume,
                                    progress=progress, group=group)
            group.barrier()  # the others wait until rank 0 has written the model file
            return result
    finally:
        group.close()


def _train_one(config: Config, splits: _Splits, *, resume: bool, progress: bool,
               member: int = 0, group: Group = SINGLE) -> TrainResult:
    run_dir = Path(config.output.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_set = StructureDataset(splits.train, config.model.cutoff, progress=progress)
    resolved = prepare(config, splits, train_set)
    if group.main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(resolved),
                                                            sort_keys=False))
    if progress:
        _show_start(resolved, splits, run_dir)
        if group.world > 1:
            print(f"  data parallel: {group.world} processes, global batch "
                  f"{resolved.train.batch_size} structures", file=sys.stderr)
    if resolved.train.threads > 0:
        torch.set_num_threads(resolved.train.threads)
    runner = _Run(resolved, splits, train_set, run_dir, progress, member, group)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists():
        if not resume:
            raise ConfigError(f"{checkpoint} exists; resume or choose a new output.run_dir")
        runner.restore(load_checkpoint(checkpoint))
        if progress:
            print(f"resuming from {checkpoint} at step {runner.step} (epoch "
                  f"{runner.epoch + 1})", file=sys.stderr)
    runner.run()
    return _finish(runner)


def _train_committee(config: Config, *, resume: bool, progress: bool,
                     group: Group = SINGLE) -> TrainResult:
    """Train ``train.committee`` members and save them as one calibrated `Committee`.

    Each member is an ordinary run in ``run_dir/member<k>`` (resumable); the committee's
    force spread is calibrated on the validation set.
    """
    from nnip.models.committee import Committee

    t = config.train
    run_dir = Path(config.output.run_dir)
    splits = _split(config)
    members = []
    for k in range(t.committee):
        member = copy.deepcopy(config)
        member.train.committee, member.train.seed = 1, t.seed + k
        member.output.run_dir = str(run_dir / f"member{k}")
        member.output.plots = False
        member_splits = splits
        if t.bootstrap:
            pick = np.random.default_rng(t.seed * 7919 + k).integers(
                0, len(splits.train), len(splits.train))
            member_splits = _Splits(_take(splits.train, pick), splits.validation,
                                    splits.test)
        if progress:
            print(f"committee member {k + 1}/{t.committee} (seed {member.train.seed}"
                  f"{', bootstrap' if t.bootstrap else ''})", file=sys.stderr)
        members.append(_train_one(member, member_splits, resume=resume, progress=progress,
                                  member=k, group=group))
    committee = Committee([r.model for r in members])
    committee.eval()
    resolved = members[0].config
    if not group.main:  # rank 0 calibrates, saves and evaluates
        return TrainResult(model=committee, model_path=run_dir / config.output.model_file,
                           run_dir=run_dir, history=[row for r in members for row in r.history],
                           errors={}, config=resolved)
    calibration = calibrate_committee(committee, splits.validation) if splits.validation \
        else 1.0
    committee.set_calibration(calibration)
    path, errors = _save_and_evaluate(
        committee, splits, config, resolved,
        {"committee_members": [str(r.model_path) for r in members],
         "bootstrap": t.bootstrap, "calibration": calibration})
    if progress:
        print(f"committee of {t.committee}: force-spread calibration factor "
              f"{calibration:.3g} (validation)", file=sys.stderr)
        _show_end(errors, path)
    return TrainResult(model=committee, model_path=path, run_dir=run_dir,
                       history=[row for r in members for row in r.history], errors=errors,
                       config=resolved)


def calibrate_committee(committee: Any, frames: Sequence[Atoms], batch_size: int = 8
                        ) -> float:
    """Factor that makes the committee's force spread match its force error on ``frames``.

    The factor ``s`` solves ``mean |F_pred - F_ref|^2 = s^2 mean sigma_F^2`` over all
    atoms (variance scaling, as for calibrated committees: Imbalzano et al., J. Chem.
    Phys. 154, 074102 (2021)), computed with the committee's current calibration removed.

    Args:
        committee: a `Committee`.
        frames: labelled structures with forces (e.g. the validation set).
        batch_size: structures per model call.

    Returns:
        The factor (1.0 when ``frames`` have no forces).
    """
    from nnip.validate.errors import predict_frames

    pred = predict_frames(committee, frames, batch_size=batch_size)
    sel = pred.has_forces[pred.system_idx]
    err2 = float(((pred.forces_pred[sel] - pred.forces_ref[sel]) ** 2).sum())
    var2 = float(((pred.forces_uncertainty[sel] / float(committee.calibration)) ** 2).sum())
    return float(np.sqrt(err2 / var2)) if var2 > 0 else 1.0


def _show_start(config: Config, splits: _Splits, run_dir: Path) -> None:
    m = config.model
    print(f"nnip train: {len(splits.train)} train / {len(splits.validation)} validation / "
          f"{len(splits.test)} test structures -> {run_dir}", file=sys.stderr)
    e0 = ", ".join(f"{k} {v:.4f}" for k, v in m.e0.items())
    print(f"  model {m.arch} cutoff {m.cutoff} Å, E0 [eV]: {e0}; scale {m.scale:.4g} eV; "
          f"params {m.params}", file=sys.stderr)


def _save_and_evaluate(model: Potential, splits: _Splits, config: Config,
                       training_config: Config, provenance: Mapping[str, Any]
                       ) -> tuple[Path, dict[str, Any]]:
    """Save ``model`` as ``run_dir/model_file`` and tabulate its validation/test errors.

    ``config`` gives the output settings (file name, license, plots) and the batch size;
    ``training_config`` is recorded in the model file.
    """
    from nnip.export.model_file import data_fingerprint, save_model
    from nnip.validate.errors import evaluate

    run_dir = Path(config.output.run_dir)
    path = run_dir / config.output.model_file
    save_model(model, path, training_config=config_to_dict(training_config),
               license=config.output.license,
               provenance={"training_data": data_fingerprint(splits.train), **provenance})
    errors: dict[str, Any] = {}
    out_dir = run_dir if config.output.plots else None
    for name, frames in (("validation", splits.validation), ("test", splits.test)):
        if frames:
            errors[name] = evaluate(model, frames, out_dir, name=name, progress=False,
                                    batch_size=config.train.batch_size)
    return path, errors


def _finish(runner: _Run) -> TrainResult:
    from nnip.validate.errors import plot_learning_curves

    config, run_dir = runner.config, runner.run_dir
    model = runner.ema
    model.load_state_dict(runner.best_state)
    model.eval()
    if not runner.group.main:  # rank 0 saves and evaluates
        return TrainResult(model=model, model_path=run_dir / config.output.model_file,
                           run_dir=run_dir, history=runner.history, errors={}, config=config)
    path, errors = _save_and_evaluate(
        model, runner.splits, config, config,
        {"train_steps": runner.step, "train_epochs": runner.epoch,
         "train_time_s": round(runner.elapsed, 1)})
    if config.output.plots and runner.history:
        plot_learning_curves(runner.history, run_dir / "learning_curves.png")
    if runner.progress:
        _show_end(errors, path)
    return TrainResult(model=model, model_path=path, run_dir=run_dir, history=runner.history,
                       errors=errors, config=config)


def _show_end(errors: Mapping[str, Any], path: Path) -> None:
    from nnip.validate.errors import format_error_table

    for name, table in errors.items():
        print(f"\n{name} errors:\n{format_error_table(table)}", file=sys.stderr)
    print(f"\nmodel written to {path}", file=sys.stderr)

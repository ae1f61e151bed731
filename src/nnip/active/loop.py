"""The active-learning loop behind ``nnip al``: train → explore → select → label → repeat.

Each iteration k:

1. **train** a committee (``train.committee`` >= 2) on the initial data plus every frame
   labelled so far, starting from the previous iteration's weights (``init_from``);
2. **explore** with batched MD (Langevin; NPT where pressures are given) from the
   starting structures at each temperature, sampling frames with the committee's
   calibrated per-atom force spread;
3. **select** inside a trust window (as DP-GEN does): frames whose largest spread lies
   between the threshold and an upper level are candidates; a trajectory whose spread
   passes the upper level has left the region the model describes at all, and it
   contributes nothing more (its later frames are unphysical and would only teach the
   model its own artefacts). The uncertain fraction (candidates, frames past the upper
   level, and the samples those trajectories lost) is the loop's convergence measure.
   At most ``max_per_iteration`` candidates are kept, made diverse by farthest-point
   sampling on a pair-distance fingerprint from the most uncertain; when no frame lies
   inside the window, the first frame past the upper level of each trajectory is taken
   instead, so that the loop never stalls;
4. **label** them with the oracle (`nnip.active.oracles`), one file per frame, with
   provenance (oracle, iteration, source trajectory and step) in ``info``.

It stops when the uncertain fraction falls below the target (or after ``iterations``).

Crash safety: every file is written atomically (temporary file + rename) and the state
(``state.json``) records the phase reached; each phase skips work already on disk
(the trainer resumes from its checkpoint, labelled frames are never recomputed), so
``SIGKILL`` at any moment followed by rerunning the command loses nothing but the
step, MD chunk or frame in progress.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import yaml
from ase import Atoms

from nnip._files import atomic_write
from nnip.active.oracles import make_oracle
from nnip.data.neighbors import pair_distances
from nnip.errors import ConfigError

__all__ = ["ALConfig", "ExploreConfig", "SelectConfig", "load_al_config", "run_active_learning"]


@dataclass
class ExploreConfig:
    """Exploration by MD with the current committee.

    Attributes:
        structures: files of starting structures (every frame of each file is a start).
        temperatures_K: Langevin temperatures; every start runs at each.
        pressures_GPa: NPT pressures for periodic starts (empty: NVT only).
        steps: MD steps per run.
        timestep_fs: time step.
        replicas: independent copies of each start, in one batch.
        sample_every: steps between sampled frames.
        friction_per_fs: Langevin friction.
        ramp: iteration k explores only at the k+1 lowest temperatures, so that a young
            model meets the hot, hard configurations after the gentle ones; the loop
            does not finish before every temperature was explored.
        compile: run the committee through ``torch.compile`` (all members in one fused
            graph, `nnip.models.functional`): faster steps after a compilation of a
            minute or so at the first iteration (later committees reuse it).
        restart: where an iteration's trajectories begin. ``"start"`` (default): every
            iteration from the starting structures. ``"last"``: each (start, temperature,
            pressure, replica) trajectory continues from its last frame of the previous
            iteration that stayed inside the trust window (positions, cell, momenta),
            so that across iterations the exploration adds up to one long trajectory per
            replica and reaches what short runs from the same start do not (e.g. another
            conformer of a molecule); from the start where there is none.
    """

    structures: list[str] = field(default_factory=list)
    temperatures_K: list[float] = field(default_factory=lambda: [300.0])
    pressures_GPa: list[float] = field(default_factory=list)
    steps: int = 1000
    timestep_fs: float = 1.0
    replicas: int = 2
    sample_every: int = 20
    friction_per_fs: float = 0.02
    ramp: bool = False
    compile: bool = False
    restart: str = "start"


@dataclass
class SelectConfig:
    """Which explored frames get labelled.

    Attributes:
        threshold_eV_per_A: a frame is uncertain when its largest calibrated per-atom
            force spread exceeds this (DP-GEN's trust_lo).
        upper_eV_per_A: past this spread a trajectory is taken to have broken down
            (trust_hi): that frame is not a candidate and the trajectory's later frames
            are dropped. Typically 3-5x the threshold.
        max_per_iteration: labelled frames per iteration at most.
        method: how the candidates are thinned to ``max_per_iteration``: ``"fps"``
            (default) farthest-point sampling on a pair-distance fingerprint, starting
            from the most uncertain candidate: the most diverse set, which favours the
            tails of the explored distribution; ``"random"``: a uniform draw among the
            candidates (DP-GEN's choice), so that the labels follow the distribution
            the committee's MD visits while still inside the trust window. When no
            frame lies inside the window, ``"fps"`` starts from the least broken frame
            and ``"random"`` takes the least broken ones.
        per_condition: share ``max_per_iteration`` evenly among the exploration
            conditions (start structure, temperature, pressure) that have candidates,
            each thinned by ``method`` on its own, slots a condition cannot fill going to
            the others. Without it the labels follow where the measure is largest: with
            a relative measure, the colder trajectories (smaller forces), so hot
            conditions are under-labelled.
        relative_level_eV_per_A: 0 (default): the measure is the largest per-atom force
            spread in eV/Å. > 0: the largest *relative* spread,
            ``spread_i / (|F_i| + level)`` (DP-GEN's relative model deviation), and the
            threshold and upper level are fractions. For molecules, whose forces span
            0–10 eV/Å within one trajectory, an absolute window either labels only the
            hottest frames or none; e.g. level 1 eV/Å with threshold 0.05, upper 0.3.
    """

    threshold_eV_per_A: float = 0.1
    upper_eV_per_A: float = 0.5
    max_per_iteration: int = 20
    relative_level_eV_per_A: float = 0.0
    method: str = "fps"
    per_condition: bool = False


@dataclass
class ALConfig:
    """An active-learning run (the YAML file of ``nnip al``).

    Attributes:
        train: the training config (as for ``nnip train``; ``data.train`` is the
            initial data; ``train.committee`` >= 2; ``train.threads``, when set, holds
            for the whole loop, exploration and labelling included). Relative paths are
            resolved against the YAML file's folder.
        oracle: reference method spec (``emt``, ``tblite:GFN2-xTB``,
            ``pyscf:PBE/6-31G*``, ``module:function``).
        explore: `ExploreConfig`.
        select: `SelectConfig`.
        iterations: most labelling iterations.
        target_uncertain_fraction: stop when fewer explored frames are uncertain.
        test: labelled files for the per-iteration errors (independent of the loop).
        state_dir: folder of the run (state, labelled data, models, summary).
    """

    train: dict[str, Any] = field(default_factory=dict)
    oracle: str = "emt"
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    iterations: int = 5
    target_uncertain_fraction: float = 0.05
    test: list[str] = field(default_factory=list)
    state_dir: str = "al"


def load_al_config(source: str | os.PathLike | dict[str, Any],
                   overrides: Sequence[str] = ()) -> ALConfig:
    """Read and check an `ALConfig` from a YAML file or a dict (unknown keys are errors).

    Relative paths in a file are relative to the file. ``overrides`` are
    ``section.key=value`` strings applied on top (values parsed as YAML), e.g.
    ``["iterations=2", "train.train.time_limit_min=1"]``.
    """
    from nnip.config import apply_overrides

    base = Path(".")
    if not isinstance(source, dict):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: no such active-learning config file")
        base = path.parent
        source = yaml.safe_load(path.read_text()) or {}
    raw = apply_overrides(copy.deepcopy(source), overrides)
    sections = {"explore": ExploreConfig, "select": SelectConfig}
    for name, cls in sections.items():
        raw[name] = _dataclass(cls, raw.get(name) or {}, name)
    config = _dataclass(ALConfig, raw, "al")
    resolve = lambda p: str(p if Path(p).is_absolute() else base / p)  # noqa: E731
    config.explore.structures = [resolve(p) for p in config.explore.structures]
    config.test = [resolve(p) for p in config.test]
    data = config.train.setdefault("data", {})
    for key in ("train", "validation", "test"):
        value = data.get(key)
        if value:
            data[key] = [resolve(p) for p in ([value] if isinstance(value, str) else value)]
    if int(config.train.get("train", {}).get("committee", 1)) < 2:
        raise ConfigError("al.train.train.committee must be >= 2: the loop selects frames by "
                          "the committee's disagreement")
    if not config.explore.structures:
        raise ConfigError("al.explore.structures: give at least one starting structure file")
    if config.select.relative_level_eV_per_A < 0:
        raise ConfigError("al.select.relative_level_eV_per_A must be >= 0 (0: absolute "
                          f"spreads), got {config.select.relative_level_eV_per_A:g}")
    if config.explore.restart not in ("start", "last"):
        raise ConfigError("al.explore.restart must be 'start' or 'last', got "
                          f"{config.explore.restart!r}")
    if config.select.method not in ("fps", "random"):
        raise ConfigError("al.select.method must be 'fps' or 'random', got "
                          f"{config.select.method!r}")
    if not config.select.upper_eV_per_A > config.select.threshold_eV_per_A:
        raise ConfigError(f"al.select.upper_eV_per_A ({config.select.upper_eV_per_A:g}) must "
                          f"exceed threshold_eV_per_A ({config.select.threshold_eV_per_A:g})")
    make_oracle(config.oracle)  # a bad spec fails now, not after the first training
    return config


def _dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


# ------------------------------------------------------------------ atomic files
def _write_atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def _write_atomic_frames(path: Path, frames: list[Atoms]) -> None:
    atomic_write(path, lambda handle: ase.io.write(handle, frames, format="extxyz"),
                 binary=False)


class _State:
    """``state.json``: iteration, phase and per-iteration history, saved atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"iteration": 0, "phase": "train", "history": []}
        if path.exists():
            self.data = json.loads(path.read_text())

    def save(self) -> None:
        _write_atomic_text(self.path, json.dumps(self.data, indent=1))


# ------------------------------------------------------------------------ phases
def fingerprint(atoms: Atoms, r_max: float = 6.0, n_bins: int = 24) -> np.ndarray:
    """A structure's pair-distance histogram per atom ``(n_bins,)`` (for diversity)."""
    r = pair_distances(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    return np.histogram(r, bins=n_bins, range=(0.0, r_max))[0] / max(len(atoms), 1)


def farthest_point_sample(features: np.ndarray, k: int, first: int = 0) -> list[int]:
    """``k`` indices of ``features`` ``(n, d)``, each the farthest from those picked."""
    picked = [first]
    distance = np.linalg.norm(features - features[first], axis=1)
    while len(picked) < min(k, len(features)):
        nxt = int(np.argmax(distance))
        picked.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(features - features[nxt], axis=1))
    return picked


def _temperatures(config: ExploreConfig, iteration: int) -> list[float]:
    """The exploration temperatures of an iteration (all, or the ramp's lowest k+1)."""
    if not config.ramp:
        return list(config.temperatures_K)
    return sorted(config.temperatures_K)[:iteration + 1]


def uncertainty_measure(frame: Atoms, level: float = 0.0) -> float:
    """The selection measure of an explored frame (with its committee's results attached).

    Args:
        frame: a frame from `nnip.md.MD.atoms` of a committee: per-atom calibrated force
            spreads ``arrays["forces_uncertainty"]`` ``(n_atoms,)`` eV/Å and the mean
            forces ``(n_atoms, 3)`` eV/Å in its calculator.
        level: 0: the largest spread (eV/Å); > 0: the largest ``spread_i / (|F_i| +
            level)`` (dimensionless), ``level`` in eV/Å.
    """
    spread = frame.arrays.get("forces_uncertainty")
    if spread is None or len(spread) == 0:
        return float(frame.info.get("max_force_uncertainty", 0.0))
    if level <= 0:
        return float(np.max(spread))
    force = np.linalg.norm(frame.calc.results["forces"], axis=1)
    return float(np.max(spread / (force + level)))


def _restart_points(previous: Sequence[Atoms], label: str, replicas: int,
                    upper: float) -> list[Atoms | None]:
    """Where each replica of the condition ``label`` restarts (``explore.restart: last``).

    Returns, per replica, its last frame in ``previous`` (an earlier exploration's
    frames, in order) whose measure is at most ``upper`` and that did not break down
    (``info["al_broken"]``), or None.
    """
    points: list[Atoms | None] = [None] * replicas
    for frame in previous:
        source = str(frame.info.get("al_source", ""))
        if not source.startswith(f"{label} replica ") or "al_broken" in frame.info or \
                frame.info.get("al_uncertainty", np.inf) > upper:
            continue
        r = int(source[len(label) + 9:].split()[0])
        if r < replicas:
            points[r] = frame
    return points


def _continuation(frame: Atoms, info: dict[str, Any]) -> Atoms:
    """A new MD start at ``frame``'s positions, cell and momenta.

    It carries ``info`` (the starting structure's), not the frame's selection info.
    """
    start = Atoms(frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc,
                  momenta=frame.get_momenta(), info=dict(info))
    start.calc = None
    return start


def _exploration_md(model: Any, structures: list[Atoms], config: ExploreConfig,
                    temperature: float, pressure: float | None, seed: int) -> Any:
    """The batched Langevin (NPT where ``pressure`` is given) MD of one condition."""
    from nnip.md import MD, Langevin, LangevinNPT

    integrator = (Langevin(config.timestep_fs, temperature, config.friction_per_fs,
                           seed=seed) if pressure is None else
                  LangevinNPT(config.timestep_fs, temperature, pressure,
                              config.friction_per_fs, seed=seed))
    return MD(model, structures, integrator, temperature_K=temperature, seed=seed,
              write_every=config.sample_every, max_uncertainty_eV_per_A=0.0, progress=False,
              compile=config.compile)


def _explore(model: Any, config: ExploreConfig, upper: float, iteration: int, seed: int,
             level: float = 0.0, previous: Sequence[Atoms] = (),
             say: Callable[[str], None] | None = None, progress: bool = False
             ) -> list[Atoms]:
    """Sampled frames of every trajectory, each cut after its first frame past ``upper``.

    Each frame's ``info["al_uncertainty"]`` is its `uncertainty_measure` at ``level``.
    ``previous``: the last iteration's frames, where ``config.restart`` is ``"last"``.

    The last kept frame of a cut trajectory carries ``info["al_lost_samples"]``, the
    number of samples it did not deliver (counted as uncertain by `_select`).

    A replica that breaks down (atoms closer than the MD's ``min_distance_A``,
    non-finite energy or positions, overheating: `MD.failing_systems`) ends with that
    frame, marked ``info["al_broken"]`` (the reason): counted past the upper level, never
    selected or restarted from; the other replicas of its batch go on without it.

    ``say`` reports each (start, temperature, pressure) batch when it ends: its speed and
    how many replicas passed the upper level; ``progress`` adds a bar over all steps
    (on a terminal).
    """
    import time

    from nnip.data import read
    from nnip.md.runner import _MDBar

    starts = [(Path(p).stem, k, a) for p in config.structures for k, a in enumerate(read(p))]
    temperatures = _temperatures(config, iteration)
    n_samples = config.steps // config.sample_every
    frames: list[Atoms] = []
    plan = []
    for name, index, atoms in starts:
        conditions = [(t, None) for t in temperatures]
        if atoms.pbc.all():
            conditions += [(t, p) for t in temperatures for p in config.pressures_GPa]
        plan += [(name, index, atoms, t, p) for t, p in conditions]
    bar = _MDBar(progress, len(plan) * config.steps)

    def ns_per_day(steps: int, seconds: float) -> float:
        return steps * config.timestep_fs * 1e-6 * 86400 / max(seconds, 1e-9)

    for c, (name, index, atoms, temperature, pressure) in enumerate(plan):
        label = f"{name}[{index}] {temperature:g} K" + (
            f" {pressure:g} GPa" if pressure is not None else "")
        begin = _restart_points(previous, label, config.replicas, upper) \
            if config.restart == "last" else [None] * config.replicas
        initial = [atoms.copy() if point is None else _continuation(point, atoms.info)
                   for point in begin]
        md = _exploration_md(model, initial, config, temperature, pressure, seed)
        replica_of = list(range(config.replicas))  # replica of each system of the batch
        offset = 0  # steps run by the earlier batches of this condition
        alive = [True] * config.replicas
        latest: list[Atoms | None] = [None] * config.replicas
        taken = [0] * config.replicas
        clock = time.perf_counter()
        while offset + md.state.step < config.steps and any(alive):
            before = md.state.step
            result = md.run(config.sample_every)
            # which systems broke down (atoms too close, non-finite, overheated): their
            # trajectories end there, like one past the upper level, and they are never
            # labelled or restarted from; the rest of the batch goes on without them
            failures = md.failing_systems() if result.stopped else {}
            sample = md.state.step > before and md.state.step % config.sample_every == 0
            bar.update(c * config.steps + offset + md.state.step,
                       ns_per_day(offset + md.state.step, time.perf_counter() - clock))
            current = md.atoms()
            for k, frame in enumerate(current):
                r = replica_of[k]
                if not alive[r] or (k not in failures and not sample):
                    continue
                frame.info["al_uncertainty"] = uncertainty_measure(frame, level)
                frame.calc = None
                frame.info.update(al_iteration=iteration, al_condition=label,
                                  al_source=f"{label} replica {r} step "
                                            f"{offset + md.state.step}")
                if k in failures:
                    frame.info["al_broken"] = failures[k]
                frames.append(frame)
                latest[r], taken[r] = frame, taken[r] + 1
                alive[r] = k not in failures and frame.info["al_uncertainty"] <= upper
            if result.stopped:
                keep = [k for k, r in enumerate(replica_of) if alive[r]]
                if not failures or not keep:  # nothing to blame or nothing left
                    break
                offset += md.state.step
                replica_of = [replica_of[k] for k in keep]
                md = _exploration_md(model, [_continuation(current[k], atoms.info)
                                             for k in keep], config, temperature, pressure,
                                     seed + offset)  # new noise after a rebuild
        for r, frame in enumerate(latest):
            if frame is not None and taken[r] < n_samples:
                frame.info["al_lost_samples"] = n_samples - taken[r]
        if say is not None:
            seconds, steps = time.perf_counter() - clock, offset + md.state.step
            say(f"[al] iteration {iteration}: explored {label} ({c + 1}/{len(plan)}): "
                f"{config.replicas} replicas x {steps} steps in {seconds:.0f} s "
                f"({ns_per_day(steps, seconds):.3g} ns/day each), "
                f"{config.replicas - sum(alive)} past the upper level or broken down")
    bar.close()
    return frames


def _select(frames: list[Atoms], config: SelectConfig,
            seed: int = 0) -> tuple[list[int], dict[str, Any]]:
    """Indices of the frames to label and the counts behind the uncertain fraction.

    ``seed`` drives ``method: random`` (the loop passes the iteration).
    """
    spread = np.array([np.inf if "al_broken" in f.info else  # atoms too close, NaN, ...
                       f.info.get("al_uncertainty", f.info.get("max_force_uncertainty", 0.0))
                       for f in frames])
    lost = sum(int(f.info.get("al_lost_samples", 0)) for f in frames)
    candidates = np.flatnonzero((spread > config.threshold_eV_per_A)
                                & (spread <= config.upper_eV_per_A))
    broken = np.flatnonzero(spread > config.upper_eV_per_A)
    counts = {"n_candidates": len(candidates), "n_past_upper": len(broken),
              "n_broken_down": int(np.isinf(spread).sum()), "n_lost_samples": lost,
              "uncertain_fraction": (len(candidates) + len(broken) + lost)
              / max(len(frames) + lost, 1)}
    pool = candidates if len(candidates) else broken[np.isfinite(spread[broken])]
    if len(pool) == 0:
        return [], counts
    groups = [pool]
    if config.per_condition:
        conditions = np.array([str(frames[i].info.get("al_condition", "")) for i in pool])
        groups = [pool[conditions == c] for c in sorted(set(conditions.tolist()))]
    chosen: list[int] = []
    for group, quota in zip(groups, _quotas([len(g) for g in groups],
                                            config.max_per_iteration)):
        chosen += _thin(frames, spread, group, quota, config, bool(len(candidates)), seed)
    return sorted(chosen), counts


def _quotas(sizes: list[int], total: int) -> list[int]:
    """Even shares of ``total`` slots among groups of ``sizes`` candidates.

    Water filling: each slot goes to the group with the fewest slots that still has
    candidates, so slots a small group cannot fill go to the others evenly.
    """
    quotas = [0] * len(sizes)
    for _ in range(min(total, sum(sizes))):
        k = min((q, k) for k, (q, n) in enumerate(zip(quotas, sizes)) if q < n)[1]
        quotas[k] += 1
    return quotas


def _thin(frames: list[Atoms], spread: np.ndarray, pool: np.ndarray, k: int,
          config: SelectConfig, inside: bool, seed: int) -> list[int]:
    """``k`` of the frames ``pool``, thinned by ``config.method``.

    ``inside``: they lie inside the trust window; else they are past its upper level.
    """
    if k <= 0:
        return []
    if config.method == "random":
        if inside:
            picked = np.random.default_rng(seed).permutation(len(pool))[:k]
        else:  # the frames nearest the window, not the model's wildest artefacts
            picked = np.argsort(spread[pool], kind="stable")[:k]
        return [int(pool[i]) for i in picked]
    features = np.stack([fingerprint(frames[i]) for i in pool])
    first = int(np.argmax(np.where(spread[pool] <= config.upper_eV_per_A, spread[pool],
                                   -spread[pool])))
    return [int(pool[i]) for i in farthest_point_sample(features, k, first)]


def _test_errors(model: Any, files: list[str]) -> dict[str, float]:
    if not files:
        return {}
    from nnip.data import read
    from nnip.validate.errors import error_table, predict_frames

    frames = [a for p in files for a in read(p)]
    table = error_table(predict_frames(model, frames))
    out = {}
    if "energy_per_atom" in table["overall"]:
        out["test_energy_mae_meV_per_atom"] = table["overall"]["energy_per_atom"]["mae"] * 1e3
    if "forces" in table["overall"]:
        out["test_forces_mae_meV_per_A"] = table["overall"]["forces"]["mae"] * 1e3
    if "uncertainty" in table:
        out["test_spearman"] = table["uncertainty"].get("spearman")
    return out


def run_active_learning(config: ALConfig | str | os.PathLike | dict[str, Any], *,
                        progress: bool = True,
                        say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the loop; returns the final state (history per iteration).

    Args:
        config: an `ALConfig`, a YAML path or a dict.
        progress: progress bars of training, exploration and labelling.
        say: where per-iteration lines go (default: stderr).

    Returns:
        The state dict: ``iteration``, ``phase`` (``done`` at the end), ``history`` (one
        row per iteration: training frames, explored / uncertain / labelled / failed
        frames, uncertain fraction, test errors), ``model`` (the final model file).
    """
    from nnip._threads import torch_threads

    if not isinstance(config, ALConfig):
        config = load_al_config(config)
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    # train.threads holds for the whole loop (exploration MD and labelling too)
    with torch_threads(int(config.train.get("train", {}).get("threads") or 0)):
        return _run_loop(config, progress, say)


def _run_loop(config: ALConfig, progress: bool, say: Callable[[str], None]) -> dict[str, Any]:
    from nnip.data import read
    from nnip.export.model_file import load_model
    from nnip.training import train

    root = Path(config.state_dir)
    (root / "labelled").mkdir(parents=True, exist_ok=True)
    state = _State(root / "state.json")
    oracle = make_oracle(config.oracle)
    while state.data["phase"] != "done":
        k = state.data["iteration"]
        it_dir = root / f"iter_{k:03d}"
        it_dir.mkdir(exist_ok=True)
        row = state.data.setdefault("current", {"iteration": k})
        model_path = it_dir / "train" / "model.nnip"
        if state.data["phase"] == "train":
            labelled = sorted(str(p) for p in (root / "labelled").glob("iter_*.extxyz"))
            train_config = copy.deepcopy(config.train)
            train_config.setdefault("data", {})
            train_config["data"]["train"] = list(train_config["data"].get("train", [])) \
                + labelled
            train_config.setdefault("output", {})["run_dir"] = str(it_dir / "train")
            train_config["output"]["plots"] = False
            if k > 0:
                train_config.setdefault("train", {})["init_from"] = str(
                    root / f"iter_{k - 1:03d}" / "train" / "model.nnip")
            say(f"[al] iteration {k}: training a committee on the initial data + "
                f"{len(labelled)} labelled file(s)")
            result = train(train_config, progress=progress)
            row["n_train_frames"] = sum(len(read(p)) for p in train_config["data"]["train"])
            row.update(_test_errors(result.model, config.test))
            state.data["phase"] = "explore"
            state.save()
        model = load_model(model_path)
        candidates_path = it_dir / "explored.extxyz"
        if state.data["phase"] == "explore":
            if not candidates_path.exists():
                say(f"[al] iteration {k}: exploring with MD")
                last = root / f"iter_{k - 1:03d}" / "explored.extxyz"
                previous = ase.io.read(last, ":") if config.explore.restart == "last" \
                    and k > 0 and last.stat().st_size else []
                _write_atomic_frames(candidates_path, _explore(
                    model, config.explore, config.select.upper_eV_per_A, k, seed=k,
                    level=config.select.relative_level_eV_per_A, previous=previous,
                    say=say, progress=progress))
            state.data["phase"] = "select"
            state.save()
        if state.data["phase"] == "select":
            frames = ase.io.read(candidates_path, ":")
            chosen, counts = _select(frames, config.select, seed=k)
            fraction = counts["uncertain_fraction"]
            row.update(n_explored=len(frames), **counts, n_selected=len(chosen))
            say(f"[al] iteration {k} at {_temperatures(config.explore, k)} K: "
                f"{fraction:.1%} of {len(frames)} explored frames uncertain "
                f"({counts['n_candidates']} candidates, {counts['n_past_upper']} past the "
                f"upper level, {counts['n_broken_down']} of them broken down); "
                f"{len(chosen)} selected")
            _write_atomic_frames(it_dir / "selected.extxyz", [frames[i] for i in chosen])
            ramped = not config.explore.ramp or k + 1 >= len(config.explore.temperatures_K)
            done = (fraction < config.target_uncertain_fraction and ramped) \
                or k >= config.iterations
            state.data["phase"] = "finish" if done else "label"
            state.save()
        if state.data["phase"] == "label":
            selected = ase.io.read(it_dir / "selected.extxyz", ":") \
                if (it_dir / "selected.extxyz").stat().st_size else []
            frame_dir = it_dir / "labels"
            frame_dir.mkdir(exist_ok=True)
            for j, atoms in enumerate(selected):
                target = frame_dir / f"frame_{j:04d}.extxyz"
                failed = frame_dir / f"frame_{j:04d}.failed"
                if target.exists() or failed.exists():
                    continue
                result = oracle.label([atoms])
                if result.frames:
                    labelled = result.frames[0]
                    labelled.info.update(al_oracle=oracle.spec, config_type=f"al_iter{k}")
                    _write_atomic_frames(target, [labelled])
                else:
                    _write_atomic_text(failed, result.failures[0]["error"])
            good = [ase.io.read(p) for p in sorted(frame_dir.glob("frame_*.extxyz"))]
            failures = sorted(p.name for p in frame_dir.glob("*.failed"))
            if good:
                _write_atomic_frames(root / "labelled" / f"iter_{k:03d}.extxyz", good)
            row.update(n_labelled=len(good), n_failed=len(failures))
            say(f"[al] iteration {k}: labelled {len(good)} frame(s) with {oracle.spec}"
                + (f", {len(failures)} failed" if failures else ""))
            state.data["history"].append(state.data.pop("current"))
            state.data.update(iteration=k + 1, phase="train")
            state.save()
            continue
        if state.data["phase"] == "finish":
            state.data["history"].append(state.data.pop("current"))
            state.data.update(phase="done", model=str(model_path))
            state.save()
    _write_summary(root, state.data)
    return state.data


def _write_summary(root: Path, state: dict[str, Any]) -> None:
    """``summary.md`` (a table per iteration) and ``summary.png``."""
    from nnip.validate.errors import _figure

    history = state["history"]
    keys = ["iteration", "n_train_frames", "n_explored", "n_candidates", "n_past_upper",
            "n_broken_down", "uncertain_fraction", "n_labelled", "n_failed",
            "test_energy_mae_meV_per_atom", "test_forces_mae_meV_per_A"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in history:
        cells = []
        for key in keys:
            value = row.get(key)
            cells.append("–" if value is None else f"{value:.3g}" if isinstance(value, float)
                         else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    _write_atomic_text(root / "summary.md", "\n".join(lines) + f"\n\nfinal model: "
                       f"{state.get('model', '(running)')}\n")
    fig, (left, right) = _figure(2, 4.6, 3.6)
    it = [r["iteration"] for r in history]
    right.plot(it, [r.get("uncertain_fraction", np.nan) for r in history], "o-")
    right.set(xlabel="iteration", ylabel="uncertain fraction of explored frames")
    for key, label in (("test_forces_mae_meV_per_A", "force MAE (meV/Å)"),
                       ("test_energy_mae_meV_per_atom", "energy MAE (meV/atom)")):
        values = [r.get(key, np.nan) for r in history]
        if np.isfinite(values).any():
            left.plot(it, values, "o-", label=label)
    left.set(xlabel="iteration", ylabel="test error (no test files)" if not config_has_test(
        history) else "test error", yscale="log")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(root / "summary.png", dpi=110)


def config_has_test(history: list[dict[str, Any]]) -> bool:
    """Whether the rows carry test errors."""
    return any("test_forces_mae_meV_per_A" in row for row in history)

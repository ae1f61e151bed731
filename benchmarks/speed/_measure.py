"""Timing loops shared by the nnip and mace-torch sides of the speed benchmark.

Pure ASE/NumPy/torch (no nnip import), so that it runs in every peer's environment.
Each function takes a ready calculator or step function; the packages differ only in
how they build those.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import ase
import ase.io
import numpy as np
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), MB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


MAX_SECONDS = float(os.environ.get("BENCH_MAX_SECONDS", 60.0))
"""A structure whose call would take longer than this (extrapolated) is skipped."""
MAX_MEMORY_MB = float(os.environ.get("BENCH_MAX_MEMORY_MB", 14_000.0))
"""A structure whose peak memory would exceed this (extrapolated) is skipped: the machine
has 24 GB and runs nothing else, but an out-of-memory kill would lose the whole side."""
_LAST: dict[str, float] = {}


class SkippedSize(RuntimeError):
    """The structure is too large for this model on this machine (extrapolated)."""


def _check_size(n_atoms: int) -> None:
    """Raise `SkippedSize` when the last, smaller structure extrapolates past the limits.

    Time and the memory above the process's baseline are taken as linear in the atoms.
    """
    if not _LAST or n_atoms <= _LAST["n_atoms"]:
        return
    ratio = n_atoms / _LAST["n_atoms"]
    seconds = _LAST["seconds"] * ratio
    memory = _LAST["base"] + (_LAST["rss"] - _LAST["base"]) * ratio
    if seconds > MAX_SECONDS or memory > MAX_MEMORY_MB:
        raise SkippedSize(f"skipped: {n_atoms} atoms would take ~{seconds:.0f} s per call "
                          f"and ~{memory / 1024:.1f} GB (extrapolated from "
                          f"{int(_LAST['n_atoms'])} atoms; limits {MAX_SECONDS:.0f} s, "
                          f"{MAX_MEMORY_MB / 1024:.0f} GB)")


def progress(text: str) -> None:
    """One progress line (``[speed] ...`` on stderr; `bench_speed` shows these)."""
    print(f"[speed] {text}", file=sys.stderr, flush=True)


def time_calculator(atoms: ase.Atoms, repeats: int, stress: bool = True) -> dict[str, Any]:
    """Seconds per energy + forces (+ stress) call of ``atoms.calc``.

    One untimed warm-up call, then ``repeats`` timed calls; positions move by ~1e-4 Å
    before every call so that no result cache is used. Structures larger than the last
    one measured in this process are skipped (`SkippedSize`) when they extrapolate past
    `MAX_SECONDS` or `MAX_MEMORY_MB`; a warm-up call longer than ``MAX_SECONDS / 4``
    is the only call (reported as such).
    """
    base = _LAST.get("base", peak_rss_mb())
    _check_size(len(atoms))

    def call(k: int) -> float:
        atoms.rattle(1e-4, seed=k)
        start = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        if stress:
            atoms.get_stress()
        return time.perf_counter() - start

    first = call(0)
    times = [call(k + 1) for k in range(repeats)] if first < MAX_SECONDS / 4 else [first]
    out = {"seconds": statistics.median(times), "all_seconds": times,
           "peak_rss_mb": peak_rss_mb(), "n_atoms": len(atoms)}
    if len(times) == 1 and repeats > 1:
        out["note"] = "one call only (the warm-up call took longer than MAX_SECONDS / 4)"
    _LAST.update(n_atoms=len(atoms), seconds=out["seconds"], rss=out["peak_rss_mb"],
                 base=base)
    progress(f"  {len(atoms)} atoms: {out['seconds'] * 1e3:.3g} ms per call")
    return out


def time_steps(step: Callable[[int], None], warmup: int, steps: int, label: str = "steps"
               ) -> dict[str, float]:
    """Steps per second of ``step(k)`` after ``warmup`` untimed steps (``label`` names the
    measurement in the progress line)."""
    for k in range(warmup):
        step(k)
    start = time.perf_counter()
    for k in range(steps):
        step(warmup + k)
    elapsed = time.perf_counter() - start
    progress(f"  {label}: {steps} timed steps, {steps / elapsed:.3g} steps/s")
    return {"steps_per_s": steps / elapsed, "seconds_per_step": elapsed / steps}


def time_ase_md(atoms: ase.Atoms, timestep_fs: float, warmup: int, steps: int
                ) -> dict[str, float]:
    """NVE velocity Verlet through ASE with ``atoms.calc``; steps/s and ns/day."""
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    out = time_steps(lambda k: dyn.run(1), warmup, steps, "MD")
    return {**out, "ns_per_day": out["steps_per_s"] * timestep_fs * 86400 / 1e6}


def batches(frames: list[ase.Atoms], size: int) -> list[list[ase.Atoms]]:
    """Consecutive batches of ``size`` frames (the last may be shorter)."""
    return [frames[k:k + size] for k in range(0, len(frames), size)]


def labels(frames: list[ase.Atoms]) -> dict[str, np.ndarray]:
    """Energies (n,), forces (sum atoms, 3), stresses (n, 3, 3) and atom counts (n,)."""
    return {"energy": np.array([a.get_potential_energy() for a in frames]),
            "forces": np.concatenate([a.get_forces() for a in frames]),
            "stress": np.stack([a.get_stress(voigt=False) for a in frames]),
            "n_atoms": np.array([len(a) for a in frames])}

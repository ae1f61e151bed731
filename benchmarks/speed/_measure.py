"""Timing loops shared by the nnip and mace-torch sides of the speed benchmark.

Pure ASE/NumPy/torch (no nnip import), so that it runs in every peer's environment.
Each function takes a ready calculator or step function; the packages differ only in
how they build those.
"""

from __future__ import annotations

import statistics
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


def time_calculator(atoms: ase.Atoms, repeats: int, stress: bool = True) -> dict[str, Any]:
    """Seconds per energy + forces (+ stress) call of ``atoms.calc``.

    One untimed warm-up call, then ``repeats`` timed calls; positions move by ~1e-4 Å
    before every call so that no result cache is used.
    """
    def call(k: int) -> float:
        atoms.rattle(1e-4, seed=k)
        start = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        if stress:
            atoms.get_stress()
        return time.perf_counter() - start

    call(0)
    times = [call(k + 1) for k in range(repeats)]
    return {"seconds": statistics.median(times), "all_seconds": times,
            "peak_rss_mb": peak_rss_mb(), "n_atoms": len(atoms)}


def time_steps(step: Callable[[int], None], warmup: int, steps: int) -> dict[str, float]:
    """Steps per second of ``step(k)`` after ``warmup`` untimed steps."""
    for k in range(warmup):
        step(k)
    start = time.perf_counter()
    for k in range(steps):
        step(warmup + k)
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed, "seconds_per_step": elapsed / steps}


def time_ase_md(atoms: ase.Atoms, timestep_fs: float, warmup: int, steps: int
                ) -> dict[str, float]:
    """NVE velocity Verlet through ASE with ``atoms.calc``; steps/s and ns/day."""
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    out = time_steps(lambda k: dyn.run(1), warmup, steps)
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

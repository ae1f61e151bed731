"""The demo: make EMT data, train a potential, evaluate it, and run MD with it.

``nnip demo`` needs no input. It labels a small Cu/Al dataset with ASE's EMT calculator
(strained and rattled bulk, a vacancy, a surface slab, Al substitutions, and snapshots of
EMT molecular dynamics at several temperatures), trains a SchNet potential on it for a
few minutes, evaluates it on held-out structures, and runs NVT then NVE molecular
dynamics with the trained potential through the ASE calculator, comparing with EMT along
the trajectory. Everything lands in one directory.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta as _thermalize
except ImportError:  # pragma: no cover - older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as _mb

    def _thermalize(atoms: Atoms, temperature_K: float, *, rng: Any = None) -> None:
        _mb(atoms, temperature_K=temperature_K, rng=rng)

__all__ = ["make_emt_dataset", "run_demo"]


def _label(atoms: Atoms, config_type: str) -> Atoms:
    """Attach EMT energy, forces (and stress for bulk) as single-point labels."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    results: dict[str, Any] = {"energy": atoms.get_potential_energy(),
                               "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return atoms


def _strained(rng: np.random.Generator, n: int) -> list[Atoms]:
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=rng.uniform(0.02, 0.12), size=atoms.positions.shape)
        frames.append(_label(atoms, "bulk_strained"))
    return frames


def _defects(rng: np.random.Generator, n: int) -> list[Atoms]:
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        if k % 2 == 0:
            del atoms[int(rng.integers(len(atoms)))]
            kind = "vacancy"
        else:
            sites = rng.choice(len(atoms), size=int(rng.integers(1, 5)), replace=False)
            atoms.symbols[sites] = "Al"
            kind = "al_substitution"
        atoms.positions += rng.normal(scale=0.07, size=atoms.positions.shape)
        frames.append(_label(atoms, kind))
    return frames


def _surfaces(rng: np.random.Generator, n: int) -> list[Atoms]:
    frames = []
    for _ in range(n):
        atoms = fcc111("Cu", size=(2, 2, 4), a=3.61, vacuum=6.0, periodic=False)
        atoms.pbc = (True, True, False)
        atoms.info.pop("adsorbate_info", None)
        atoms.positions += rng.normal(scale=0.07, size=atoms.positions.shape)
        frames.append(_label(atoms, "surface"))
    return frames


def _md_snapshots(rng: np.random.Generator, temperatures: list[float], per_t: int
                  ) -> list[Atoms]:
    frames = []
    for temperature in temperatures:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        atoms.symbols[[3, 17]] = "Al"
        atoms.calc = EMT()
        _thermalize(atoms, temperature, rng=rng)
        dyn = Langevin(atoms, 4 * units.fs, temperature_K=temperature, friction=0.02,
                       fixcm=False, rng=rng)
        for _ in range(per_t):
            dyn.run(15)
            frames.append(_label(atoms, f"md_{int(temperature)}K"))
    return frames


def make_emt_dataset(n_structures: int = 160, seed: int = 0) -> list[Atoms]:
    """A labelled Cu/Al dataset from ASE's EMT (energies eV, forces eV/Å, stress eV/Å^3).

    Args:
        n_structures: approximate number of structures (>= 20).
        seed: random seed.

    Returns:
        Structures with EMT labels in single-point calculators and a ``config_type``.
    """
    rng = np.random.default_rng(seed)
    unit = max(n_structures // 8, 2)
    frames = (_strained(rng, 2 * unit) + _defects(rng, 2 * unit) + _surfaces(rng, unit)
              + _md_snapshots(rng, [300.0, 800.0, 1300.0], unit))
    for k, atoms in enumerate(frames):
        atoms.info["frame_index"] = k
    return frames


def _md_check(model_path: Path, out_dir: Path, steps: int, say: Callable[[str], None]
              ) -> dict[str, float]:
    """NVT then NVE with the trained potential in nnip's MD engine; compare with EMT."""
    from nnip.export.model_file import load_model
    from nnip.md import MD
    from nnip.md import Langevin as LangevinBAOAB
    from nnip.md import VelocityVerlet as Verlet

    model = load_model(model_path)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    atoms.symbols[[0, 40, 77]] = "Al"
    nvt = MD(model, atoms, LangevinBAOAB(2.0, 600.0, friction_per_fs=0.02, seed=1),
             temperature_K=600.0, seed=1, progress=False)
    nvt.run(steps // 2)
    traj = out_dir / "md.extxyz"
    if traj.exists():
        traj.unlink()
    nve = MD(model, nvt.atoms()[0], Verlet(1.0), trajectory=traj, log=out_dir / "md.csv",
             write_every=100, progress=False)
    energies, emt_errors = [float(nve.thermo()["etot_eV"][0])], []
    t0 = time.perf_counter()
    for k in range(steps // 20):
        result = nve.run(20)
        if result.stopped:
            raise RuntimeError(f"demo MD stopped: {result.stopped}")
        energies.append(float(nve.thermo()["etot_eV"][0]))
        if k % 5 == 0:
            snapshot = nve.atoms()[0]
            predicted = snapshot.get_potential_energy()
            snapshot.calc = EMT()
            emt_errors.append(abs(snapshot.get_potential_energy() - predicted) / len(atoms))
    elapsed = time.perf_counter() - t0
    n, duration_ps = len(atoms), (len(energies) - 1) * 20 * 1e-3
    drift = (energies[-1] - energies[0]) / n / duration_ps * 1e3
    result = {"nve_drift_meV_per_atom_per_ps": drift,
              "nve_fluctuation_meV_per_atom": float(np.std(energies) / n * 1e3),
              "emt_energy_mae_meV_per_atom_along_md": float(np.mean(emt_errors) * 1e3),
              "temperature_K": float(nve.thermo()["temperature_K"][0]),
              "ns_per_day": duration_ps * 1e-3 / (elapsed / 86400)}
    say(f"MD (nnip.md): {n} atoms, {steps // 2} NVT steps of 2 fs + {steps // 20 * 20} NVE "
        f"steps of 1 fs; NVE drift {drift:+.3f} meV/atom/ps, final T "
        f"{result['temperature_K']:.0f} K, energy vs EMT along the trajectory "
        f"{result['emt_energy_mae_meV_per_atom_along_md']:.2f} meV/atom; {result['ns_per_day']:.2f}"
        f" ns/day; trajectory in {traj}")
    return result


def run_demo(out_dir: str | Path = "nnip-demo", *, minutes: float = 3.0, n_structures: int = 160,
             md_steps: int = 1000, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run the whole demo and return a summary.

    Args:
        out_dir: directory for data, run, model and trajectory.
        minutes: training time budget in minutes.
        n_structures: size of the EMT dataset.
        md_steps: MD steps with the trained potential (half NVT, half NVE).
        seed: random seed.
        progress: print progress.

    Returns:
        ``{"n_structures", "test_errors", "md", "model_path", "seconds"}``.
    """
    import ase.io

    from nnip.training import train

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "run").exists():  # the demo always trains afresh
        shutil.rmtree(out / "run")

    def say(text: str) -> None:
        if progress:
            print(f"[demo] {text}", file=sys.stderr, flush=True)

    say(f"labelling {n_structures} Cu/Al structures with ASE's EMT ...")
    frames = make_emt_dataset(n_structures, seed)
    data_path = out / "emt_data.extxyz"
    ase.io.write(data_path, frames)
    say(f"wrote {len(frames)} structures to {data_path}; training SchNet for up to "
        f"{minutes:g} min ...")
    config = {
        "data": {"train": [str(data_path)], "validation_fraction": 0.1, "test_fraction": 0.1,
                 "split_seed": seed},
        "model": {"arch": "schnet", "cutoff": 4.5,
                  "params": {"n_features": 48, "n_interactions": 2, "n_basis": 20}},
        "loss": {"energy_weight": 10.0, "forces_weight": 1.0, "stress_weight": 10.0},
        "train": {"epochs": 400, "batch_size": 4, "lr": 3e-3, "scheduler": "plateau",
                  "plateau_patience": 8, "ema_decay": 0.99, "seed": seed,
                  "time_limit_min": minutes, "checkpoint_every": 200},
        "output": {"run_dir": str(out / "run"), "license": "CC0-1.0 (EMT demo data)"},
    }
    result = train(config, progress=progress)
    test = result.errors.get("test", {}).get("overall", {})
    md = _md_check(result.model_path, out, md_steps, say)
    seconds = time.perf_counter() - start
    summary = {"n_structures": len(frames), "test_errors": test, "md": md,
               "model_path": str(result.model_path), "seconds": seconds}
    e, f = test.get("energy_per_atom", {}), test.get("forces", {})
    say(f"done in {seconds:.0f} s: test energy MAE {e.get('mae', float('nan')) * 1e3:.2f} "
        f"meV/atom, force MAE {f.get('mae', float('nan')) * 1e3:.1f} meV/Å; model "
        f"{result.model_path}")
    return summary

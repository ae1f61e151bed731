"""Inputs of the speed benchmark, written once and read by nnip and by every peer.

Structures (extxyz, one per file, periodic):

- ``cu_108.xyz``, ``cu_500.xyz``, ``cu_2048.xyz``, ``cu_16384.xyz`` (and, for the
  scaling run, ``cu_55296.xyz``, ``cu_108000.xyz``): fcc Cu (a = 3.61 Å, conventional
  cells repeated 3, 5, 8, 16 (24, 30) times), atoms displaced by a Gaussian of 0.05 Å
  (seed 0);
- ``water_192.xyz``: the first frame of ``../shared/data/deepmd_water/train.xyz``
  (64 H2O molecules in a 12.4 Å cube, DFT liquid water);
- ``train_cu.xyz``: 16 labelled fcc Cu frames of 32 atoms (2x2x2 conventional cells,
  0.1 Å displacements, lattice constants 3.55-3.67 Å) with EMT energies, forces and
  stresses: the batches of the training-speed measurement.

The spec (``spec.json``) tells every package what to measure; see ``bench_speed.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[2]
WATER = ROOT / ".." / "shared" / "data" / "deepmd_water" / "train.xyz"
CU_SIZES = {"cu_108": 3, "cu_500": 5, "cu_2048": 8, "cu_16384": 16, "cu_55296": 24,
            "cu_108000": 30}
DEFAULT_SIZES = ["cu_108", "cu_500", "cu_2048", "cu_16384", "water_192"]
"""Measured by default; ``cu_55296`` and ``cu_108000`` (the scaling run) on request."""


def write_inputs(folder: Path, *, sizes: list[str] | None = None, threads: int = 1,
                 repeats: int = 5, train_steps: int = 20, md_steps: int = 50) -> Path:
    """Write the structures and ``spec.json`` into ``folder``; return the spec's path.

    Args:
        folder: output folder (created).
        sizes: structure names to time (default: `DEFAULT_SIZES`).
        threads: torch threads of every measurement.
        repeats: timed calls per structure (after one untimed warm-up call).
        train_steps: timed training steps (after two warm-up steps).
        md_steps: timed MD steps (after five warm-up steps).
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = sizes or DEFAULT_SIZES
    for name, n in CU_SIZES.items():
        path = folder / f"{name}.xyz"
        if not path.exists() and (name in names or name == "cu_500"):  # cu_500: MD
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n)
            atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
            ase.io.write(path, atoms)
    if not (folder / "water_192.xyz").exists():
        water = ase.io.read(WATER, index=0)
        water.calc = None
        ase.io.write(folder / "water_192.xyz", water)
    if not (folder / "train_cu.xyz").exists():
        rng = np.random.default_rng(1)
        frames = []
        for k in range(16):
            atoms = bulk("Cu", "fcc", a=3.55 + 0.008 * k, cubic=True).repeat(2)
            atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
            atoms.calc = EMT()
            results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                       "stress": atoms.get_stress()}
            atoms.calc = SinglePointCalculator(atoms, **results)
            frames.append(atoms)
        ase.io.write(folder / "train_cu.xyz", frames)
    spec = {
        "threads": threads,
        "cutoff": 5.0,
        "inference": [{"name": n, "file": str(folder / f"{n}.xyz"),
                       "repeats": repeats if n in ("cu_108", "cu_500", "cu_2048", "water_192")
                        else min(repeats, 2)}
                      for n in names],
        "training": {"file": str(folder / "train_cu.xyz"), "batch_size": 4,
                     "steps": train_steps, "warmup": 2},
        "md": {"name": "cu_500", "file": str(folder / "cu_500.xyz"), "steps": md_steps,
               "warmup": 5, "timestep_fs": 1.0},
    }
    path = folder / "spec.json"
    path.write_text(json.dumps(spec, indent=1))
    return path


if __name__ == "__main__":
    import sys

    print(write_inputs(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/speed/runs")))

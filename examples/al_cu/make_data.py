"""Make the starting data of the Cu/EMT active-learning example (``al.yaml`` beside it).

Writes, next to this file, in a few seconds with ASE's EMT as the reference:

- ``start.xyz``: the starting structure of the explorations, a 32-atom fcc Cu cell
  (a = 3.61 Å);
- ``init.xyz``: 10 copies of it with every atom displaced at random (σ = 0.05 Å),
  labelled with EMT (energy in eV, forces in eV/Å, stress in eV/Å³): the first
  training set;
- ``independent_md.xyz``: 40 frames of EMT-driven Langevin MD at 300, 600, 900 and
  1200 K (10 per temperature, 20 fs apart), which the loop never trains on: its test
  errors per iteration.

Usage (repository root; ``NNIP_EXAMPLE_OUT=folder`` writes elsewhere)::

    python examples/al_cu/make_data.py
    nnip al examples/al_cu/al.yaml
"""

from __future__ import annotations

import os
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

from nnip.active import make_oracle

HERE = Path(os.environ.get("NNIP_EXAMPLE_OUT") or Path(__file__).resolve().parent)


def main(out: Path = HERE, seed: int = 0) -> None:
    """Write ``start.xyz``, ``init.xyz`` and ``independent_md.xyz`` into ``out``."""
    rng = np.random.default_rng(seed)
    oracle = make_oracle("emt")
    start = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    ase.io.write(out / "start.xyz", start)

    rattled = []
    for _ in range(10):
        atoms = start.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        rattled.append(atoms)
    ase.io.write(out / "init.xyz", oracle.label(rattled).frames)

    test = []
    for temperature in (300, 600, 900, 1200):
        atoms = start.copy()
        atoms.calc = oracle.factory(atoms)
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        dyn = Langevin(atoms, 1 * units.fs, temperature_K=temperature,
                       friction=0.02 / units.fs, fixcm=False, rng=rng)
        dyn.run(200)  # equilibrate
        for _ in range(10):
            dyn.run(20)
            test.append(atoms.copy())
    ase.io.write(out / "independent_md.xyz", oracle.label(test).frames)
    print(f"wrote start.xyz, init.xyz (10 frames), independent_md.xyz ({len(test)} frames) "
          f"in {out}")


if __name__ == "__main__":
    main()

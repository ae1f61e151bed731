"""Cost of charge equilibration against local charges: Au2–MgO, energy + forces.

One 110-atom Au2–MgO cell (``../shared/data/n2p2_4G_examples/Au2_MgO.xyz``, frame 0),
an untrained 64 x 1 PaiNN with electrostatics (σ = 2 Å, charges from its own features),
one thread; seconds per `Potential.predict` call (energy, forces, stress) for local
charges and for ``charge_model: qeq`` with the kernel matrix from Ewald (the default) or
PME (``method: pme``).

Usage (repository root, project environment)::

    python benchmarks/md/bench_qeq.py
"""

from __future__ import annotations

import time
from pathlib import Path

import ase.io
import torch

from nnip.models import build

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main() -> None:
    """Print seconds per call for each variant."""
    torch.set_num_threads(1)
    atoms = ase.io.read(DATA / "n2p2_4G_examples" / "Au2_MgO.xyz", 0)
    for charge_model, method in (("local", "auto"), ("qeq", "auto"), ("qeq", "pme")):
        model = build("painn", ["O", "Mg", "Al", "Au"], 5.0, n_features=64, n_interactions=1,
                      electrostatics={"smearing": 2.0, "charge_model": charge_model,
                                      "method": method})
        model.predict(atoms)  # warm-up
        repeats = 3
        start = time.perf_counter()
        for _ in range(repeats):
            model.predict(atoms)
        seconds = (time.perf_counter() - start) / repeats
        print(f"{charge_model:5s} method {method:4s}: {1e3 * seconds:8.1f} ms per call "
              f"({len(atoms)} atoms)")


if __name__ == "__main__":
    main()

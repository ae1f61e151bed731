"""Data-derived constants of a potential: reference energies and energy scale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms

__all__ = ["energy_scale"]


def energy_scale(frames: Sequence[Atoms], e0: Mapping[str, float]) -> float:
    """Energy scale (eV) for the learned term, from the training labels.

    The RMS force component times 1 Å when forces are present (as MACE and SchNetPack
    scale by force statistics), else the standard deviation of the per-atom energy left
    after subtracting the reference energies. Never below 1e-3 eV.

    Args:
        frames: training structures with labels.
        e0: per-element reference energies in eV.
    """
    if hasattr(frames, "force_rms"):  # a `nnip.data.store.FrameStore`: streamed
        rms = frames.force_rms()
        if rms is not None and rms > 1e-3:
            return float(rms)
        symbols, counts = frames.composition()
        energy, has_energy = frames.energies()
        base = counts @ np.array([e0[s] for s in symbols])
        residual = ((energy - base) / counts.sum(axis=1))[has_energy]
        return float(np.std(residual)) if len(residual) > 1 and np.std(residual) > 1e-3 \
            else 1.0
    forces = [np.asarray(a.calc.results["forces"]).ravel() for a in frames
              if a.calc is not None and "forces" in a.calc.results]
    if forces:
        values = np.concatenate(forces)
        if values.size and np.sqrt(np.mean(values**2)) > 1e-3:
            return float(np.sqrt(np.mean(values**2)))
    residual = []
    for a in frames:
        if a.calc is not None and "energy" in a.calc.results:
            base = sum(e0[s] for s in a.get_chemical_symbols())
            residual.append((a.calc.results["energy"] - base) / len(a))
    if len(residual) > 1 and np.std(residual) > 1e-3:
        return float(np.std(residual))
    return 1.0

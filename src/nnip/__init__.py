"""nnip: neural-network interatomic potentials.

Quick start::

    import nnip
    frames = nnip.data.read("train.xyz")
    model = nnip.models.build("schnet", elements=["Si"], cutoff=5.0)
    atoms = frames[0].copy()
    atoms.calc = nnip.NNIPCalculator(model)
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
"""

from __future__ import annotations

from nnip import data, models
from nnip.calculators.ase import NNIPCalculator
from nnip.data.graph import AtomicGraph, Targets
from nnip.models.potential import Potential, PotentialOutput

__version__ = "0.1.0"

__all__ = ["AtomicGraph", "NNIPCalculator", "Potential", "PotentialOutput", "Targets",
           "data", "models", "__version__"]

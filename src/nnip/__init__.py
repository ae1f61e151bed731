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


def train(config, **kwargs):  # noqa: ANN001, ANN201 - documented in nnip.training.train
    """Train a potential from a config (file path, dict or `nnip.config.Config`).

    See `nnip.training.train` for the arguments; returns a `nnip.training.TrainResult`.
    """
    from nnip.training import train as _train

    return _train(config, **kwargs)


__all__ = ["AtomicGraph", "NNIPCalculator", "Potential", "PotentialOutput", "Targets",
           "data", "models", "train", "__version__"]

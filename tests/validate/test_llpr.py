"""LLPR: larger energy uncertainty away from the training data, for every architecture."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from nnip.models import build
from nnip.validate.llpr import LLPR


def _frames(a: float, rattle: float, n: int, seed: int):
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.rattle(rattle, seed=seed + k)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        frames.append(atoms)
    return frames


@pytest.mark.parametrize("arch,params", [
    ("schnet", {"n_features": 16, "n_basis": 10}),
    ("painn", {"n_features": 16, "n_interactions": 2}),
    ("mace", {"n_features": 8, "l_max": 1, "correlation": 2, "n_interactions": 2})])
def test_llpr_flags_out_of_distribution_structures(arch, params):
    model = build(arch, elements=["Cu"], cutoff=4.0, e0={"Cu": -0.1}, scale=0.3, **params)
    train = _frames(3.61, 0.05, 40, seed=0)
    llpr = LLPR(model).fit(train, _frames(3.61, 0.05, 10, seed=100))
    near = llpr.energy_uncertainty(_frames(3.61, 0.05, 10, seed=200))
    far = llpr.energy_uncertainty(_frames(3.25, 0.2, 10, seed=300))  # compressed, hot
    assert np.all(np.isfinite(near)) and llpr.alpha > 0
    assert far.mean() > 3 * near.mean()

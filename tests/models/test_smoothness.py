"""Harmonic smoothness at high-symmetry sites: force constants must not depend on the
displacement (a cusp there breaks phonons and the dt² scaling of NVE errors)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from nnip.models import build

ARCHS = {
    "schnet": {"n_features": 16, "n_basis": 10},
    "painn": {"n_features": 16, "n_interactions": 2},
    "nequip": {"n_features": 8, "l_max": 1, "n_interactions": 2},
    "mace": {"n_features": 8, "l_max": 1, "correlation": 2, "n_interactions": 2},
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_force_constants_at_a_symmetric_site_are_displacement_independent(arch):
    model = build(arch, elements=["Si"], cutoff=4.0, scale=1.0, seed=3, **ARCHS[arch])
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)  # every atom on a symmetric site
    constants = []
    for d in (1e-4, 2e-4, 4e-4):  # a cusp makes F/d grow ~2x per halving of d
        atoms = crystal.copy()
        atoms.positions[0, 0] += d
        constants.append(float(model.predict(atoms).forces[0, 0]) / d)
    constants = np.array(constants)
    assert np.ptp(constants) < 0.01 * np.abs(constants).max() + 1e-6, constants


def test_painn_paper_norm_has_the_cusp_and_old_files_keep_it():
    paper = build("painn", elements=["Si"], cutoff=4.0, scale=1.0, seed=3, n_features=16,
                  n_interactions=2, vector_norm="paper")
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    k = []
    for d in (1e-4, 4e-4):
        atoms = crystal.copy()
        atoms.positions[0, 0] += d
        k.append(float(paper.predict(atoms).forces[0, 0]) / d)
    assert abs(k[0] - k[1]) > 0.05 * max(abs(k[0]), abs(k[1]))  # the documented cusp

"""ZBL repulsion: the published formula, physics checks, repulsive dimers, model files."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from nnip.data.graph import AtomicGraph
from nnip.export.model_file import load_model, save_model
from nnip.models import build
from nnip.testing import run_all_checks
from nnip.validate.physical import dimer_curves


def _zbl_reference(z1: int, z2: int, r: float, r_max: float) -> float:
    """ZBL pair energy (eV) written out from the published constants."""
    a = 0.46850 / (z1**0.23 + z2**0.23)
    x = r / a
    phi = (0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x)
           + 0.28022 * np.exp(-0.40290 * x) + 0.02817 * np.exp(-0.20162 * x))
    u = r / r_max
    envelope = 1 - 28 * u**6 + 48 * u**7 - 21 * u**8  # p = 6
    return 14.399645 * z1 * z2 / r * phi * envelope


def test_zbl_matches_the_formula_for_a_dimer():
    model = build("painn", elements=["Si", "O"], cutoff=5.0, n_features=8,
                  n_interactions=1, zbl=True)
    zbl = model.terms["zbl"]
    for (a, b, za, zb), r in zip((("Si", "O", 14, 8), ("Si", "Si", 14, 14)), (0.8, 1.2)):
        dimer = Atoms(a + b, positions=[[0, 0, 0], [r, 0, 0]])
        graph = AtomicGraph.from_atoms(dimer, 5.0)
        r_max = float(zbl.radius[zbl.type_map.atomic_numbers.index(za)]
                      + zbl.radius[zbl.type_map.atomic_numbers.index(zb)])
        assert float(zbl(graph).sum()) == pytest.approx(_zbl_reference(za, zb, r, r_max),
                                                        rel=1e-6)


def test_zbl_model_passes_physics_checks_and_repels():
    model = build("painn", elements=["Cu", "Ni"], cutoff=4.0, n_features=8,
                  n_interactions=1, zbl=True)
    run_all_checks(model)
    curves = dimer_curves(model, r_min=0.3)
    for pair, curve in curves["pairs"].items():
        assert curve["energy_eV"][0] > 100.0, pair  # Cu-Cu at 0.3 Å: ~ keV
        assert curve["repulsive"], pair


def test_zbl_round_trips_through_the_model_file(tmp_path):
    model = build("schnet", elements=["Cu"], cutoff=4.0, n_features=8, n_basis=8, zbl=True)
    loaded = load_model(save_model(model, tmp_path / "m.nnip"))
    assert "zbl" in loaded.terms
    close = Atoms("Cu2", positions=[[0, 0, 0], [1.0, 0, 0]])
    assert float(loaded.predict(close).energy[0]) == pytest.approx(
        float(model.predict(close).energy[0]))

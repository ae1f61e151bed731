"""D3 dispersion term: equals torch-dftd's own calculator, passes the physics checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.stress import voigt_6_to_full_3x3_stress

from nnip.export.model_file import load_model, save_model
from nnip.models import build
from nnip.testing import check_forces_fd, check_rotation, check_stress_fd

pytest.importorskip("torch_dftd")
from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator  # noqa: E402


def _pair(elements, **kw):
    plain = build("schnet", elements=elements, cutoff=4.0, n_features=8, n_basis=8, seed=1)
    with_d3 = build("schnet", elements=elements, cutoff=4.0, n_features=8, n_basis=8, seed=1,
                    d3="pbe", **kw)
    return plain, with_d3


@pytest.mark.parametrize("atoms", [molecule("CH3CH2OH"),
                                   bulk("Si", "diamond", a=5.43, cubic=True)],
                         ids=["ethanol", "si-crystal"])
def test_d3_adds_exactly_torch_dftd(atoms):
    atoms = atoms.copy()
    atoms.rattle(0.03, seed=2)
    plain, with_d3 = _pair(sorted(set(atoms.get_chemical_symbols())))
    periodic = bool(atoms.pbc.all())
    a = plain.predict(atoms, compute_stress=periodic)
    b = with_d3.predict(atoms, compute_stress=periodic)
    reference = atoms.copy()
    reference.calc = TorchDFTD3Calculator(xc="pbe", damping="bj", cutoff=15.0, cnthr=15.0,
                                          cutoff_smoothing="poly", dtype=torch.float64)
    assert float(b.energy[0] - a.energy[0]) == pytest.approx(
        reference.get_potential_energy(), rel=1e-9)
    np.testing.assert_allclose((b.forces - a.forces).numpy(), reference.get_forces(),
                               atol=1e-8)
    if periodic:
        np.testing.assert_allclose((b.stress - a.stress)[0].numpy(),
                                   voigt_6_to_full_3x3_stress(reference.get_stress()),
                                   atol=1e-8)


def test_d3_physics_and_model_file(tmp_path):
    _, model = _pair(["Si"])
    crystal = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    crystal.rattle(0.05, seed=4)
    check_forces_fd(model, crystal)
    check_stress_fd(model, crystal)
    check_rotation(model, crystal)
    loaded = load_model(save_model(model, tmp_path / "m.nnip"))
    assert "d3" in loaded.terms
    assert torch.equal(loaded.predict(crystal).energy, model.predict(crystal).energy)

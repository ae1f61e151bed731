"""The ASE calculator: properties, units, optimizers, cell filters, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE

from nnip import NNIPCalculator
from nnip.errors import ModelError
from nnip.models import build


@pytest.fixture(scope="module")
def model():
    return build("schnet", elements=["Cu", "Ni"], cutoff=4.5, e0={"Cu": -1.0, "Ni": -2.0},
                 n_features=16, n_basis=12, seed=1)


def test_results_shapes_and_consistency(model):
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 5]] = "Ni"
    atoms.rattle(0.05, seed=2)
    atoms.calc = NNIPCalculator(model)
    energy = atoms.get_potential_energy()
    assert isinstance(energy, float)
    assert atoms.get_potential_energy(force_consistent=True) == energy
    assert atoms.get_potential_energies().shape == (8,)
    assert np.isclose(atoms.get_potential_energies().sum(), energy, rtol=1e-12)
    assert atoms.get_forces().shape == (8, 3)
    np.testing.assert_allclose(atoms.get_forces().sum(axis=0), 0.0, atol=1e-10)
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    out = model.predict(atoms, compute_stress=True)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), out.stress[0].numpy())


def test_molecule_has_no_stress(model):
    atoms = molecule("H2O")
    atoms.symbols = "CuNi2"
    atoms.positions *= 2.5
    atoms.calc = NNIPCalculator(model)
    atoms.get_forces()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_unknown_element_is_a_clear_error(model):
    atoms = bulk("Al")
    atoms.calc = NNIPCalculator(model)
    with pytest.raises(ModelError, match=r"\['Al'\] not known to this model.*\['Ni', 'Cu'\]|"
                                         r"\['Al'\] not known to this model.*\['Cu', 'Ni'\]"):
        atoms.get_potential_energy()


def test_bfgs_and_cell_relaxation_lower_the_energy(model):
    atoms = bulk("Cu", cubic=True) * (2, 2, 1)
    atoms.rattle(0.1, seed=0)
    atoms.calc = NNIPCalculator(model)
    e_start = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=200)
    assert atoms.get_potential_energy() < e_start
    filt = FrechetCellFilter(atoms)
    e_before = atoms.get_potential_energy()
    assert FIRE(filt, logfile=None).run(fmax=0.01, steps=500)
    assert atoms.get_potential_energy() <= e_before + 1e-9
    assert np.abs(atoms.get_stress()).max() < 0.01 / atoms.get_volume() ** (1 / 3) + 1e-3


def test_dtype_and_device_options_do_not_touch_the_model(model):
    atoms = bulk("Ni", cubic=True)
    atoms.rattle(0.05, seed=1)
    calc32 = NNIPCalculator(model, dtype="float32", device="cpu")
    assert calc32.model.model_dtype == torch.float32
    assert model.model_dtype == torch.float64
    atoms.calc = calc32
    f32 = atoms.get_forces()
    atoms.calc = NNIPCalculator(model)
    np.testing.assert_allclose(f32, atoms.get_forces(), atol=1e-5)
    with pytest.raises(ValueError, match="dtype must be one of"):
        NNIPCalculator(model, dtype="float16")


def test_unknown_element_in_a_file_names_file_frame_and_field(model, tmp_path):
    import ase.io

    from nnip.data import read

    frames = [bulk("Cu"), bulk("Ni"), bulk("Al")]
    ase.io.write(tmp_path / "mixed.xyz", frames)
    with pytest.raises(Exception, match=r"mixed.xyz, structure 2, field 'atomic_numbers'.*Al"):
        model.predict(read(tmp_path / "mixed.xyz"))


def test_a_model_file_path_is_enough(model, tmp_path):
    """``NNIPCalculator("model.nnip")`` loads the file (str or Path); other objects are a
    clear error."""
    from nnip.export.model_file import save_model

    path = save_model(model, tmp_path / "m.nnip")
    atoms = bulk("Cu", cubic=True)
    atoms.symbols[1] = "Ni"
    atoms.rattle(0.05, seed=3)
    reference = model.predict(atoms)
    for source in (path, str(path)):
        atoms.calc = NNIPCalculator(source)
        assert atoms.get_potential_energy() == pytest.approx(float(reference.energy[0]),
                                                             abs=1e-12)
    with pytest.raises(TypeError, match="path of a model file"):
        NNIPCalculator(42)

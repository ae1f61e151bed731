"""Per-element reference energies by least squares."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from nnip.errors import DataError
from nnip.physics import fit_reference_energies


def _frame(symbols: str, energy: float | None) -> Atoms:
    atoms = Atoms(symbols, positions=np.arange(3 * len(Atoms(symbols))).reshape(-1, 3))
    if energy is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


E0 = {"H": -13.6, "O": -432.1, "C": -1030.7}


def _energy(symbols: str, noise: float = 0.0) -> float:
    return sum(E0[s] for s in Atoms(symbols).get_chemical_symbols()) + noise


def test_recovers_known_reference_energies():
    rng = np.random.default_rng(0)
    formulas = ["H2O", "CH4", "CO2", "H2", "C2H6O", "O2", "CH2O"]
    frames = [_frame(f, _energy(f, rng.normal(scale=1e-3))) for f in formulas * 3]
    frames.append(_frame("H2O", None))  # unlabelled frames are skipped
    fitted = fit_reference_energies(frames, ["H", "C", "O"])
    for symbol, value in E0.items():
        assert fitted[symbol] == pytest.approx(value, abs=5e-3)


def test_fixed_composition_warns_and_keeps_the_sum_exact():
    frames = [_frame("H2O", _energy("H2O", 0.01 * k)) for k in range(5)]
    with pytest.warns(UserWarning, match="arbitrary"):
        fitted = fit_reference_energies(frames, ["H", "O"])
    mean = np.mean([a.get_potential_energy() for a in frames])
    assert 2 * fitted["H"] + fitted["O"] == pytest.approx(mean, abs=1e-9)


def test_errors_name_the_problem():
    with pytest.raises(DataError, match="no structure has an energy"):
        fit_reference_energies([_frame("H2O", None)], ["H", "O"])
    with pytest.raises(DataError, match="element C"):
        fit_reference_energies([_frame("CH4", -1.0)], ["H", "O"])

"""Units and conversion constants: the one source of truth.

nnip works in eV, Å, fs, e (elementary charge), amu and K. Stress is in eV/Å^3 with
ASE's sign (positive = tensile, pressure = -trace/3). All constants derive from ASE's
CODATA set (``ase.units``), so nnip and ASE never disagree. Conversions happen only here
and at I/O boundaries.
"""

from __future__ import annotations

from ase import units as _ase_units

__all__ = [
    "eV",
    "Angstrom",
    "fs",
    "GPa",
    "kB",
    "Bohr",
    "Hartree",
    "bar",
    "kbar",
    "UNITS",
]

eV: float = 1.0
"""Energy unit (eV)."""
Angstrom: float = 1.0
"""Length unit (Å)."""
fs: float = 1.0
"""Time unit of nnip's public API (fs). ASE's internal time unit is ~10.18 fs."""
GPa: float = float(_ase_units.GPa)
"""1 GPa in eV/Å^3 (~6.2415e-3)."""
bar: float = float(_ase_units.bar)
"""1 bar in eV/Å^3."""
kbar: float = 1000.0 * bar
"""1 kbar in eV/Å^3 (VASP's stress unit)."""
kB: float = float(_ase_units.kB)
"""Boltzmann constant in eV/K."""
Bohr: float = float(_ase_units.Bohr)
"""1 Bohr in Å."""
Hartree: float = float(_ase_units.Hartree)
"""1 Hartree in eV."""

UNITS: dict[str, str] = {
    "energy": "eV",
    "length": "Angstrom",
    "time": "fs",
    "charge": "e",
    "mass": "amu",
    "temperature": "K",
    "forces": "eV/Angstrom",
    "stress": "eV/Angstrom^3",
}
"""Units of every quantity, as written into model files."""

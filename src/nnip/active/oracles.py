"""Reference calculators ("oracles") that label structures for active learning.

One interface for every reference method, chosen by a spec string:

- ``emt``: ASE's EMT (Cu, Ag, Au, Ni, Pd, Pt, Al, C, H, N, O; milliseconds, for tests and
  demonstrations);
- ``tblite:GFN2-xTB`` (or ``GFN1-xTB``, ``IPEA1-xTB``): semi-empirical tight binding from
  the PyPI package ``tblite`` (molecules and periodic cells, about a millisecond per small
  molecule);
- ``pyscf:<functional>/<basis>``, e.g. ``pyscf:PBE/6-31G*``: Kohn–Sham DFT for molecules
  with PySCF (restricted for closed shells, unrestricted otherwise; seconds to minutes);
- ``<module>:<function>``: any function returning an ASE calculator, called with no
  arguments, e.g. ``ase.calculators.emt:EMT`` or ``mysite.dft:make_vasp``.

`Oracle.label` returns labelled copies (energy, forces, stress for periodic cells where
the method gives it, in a single-point calculator) plus a record of every frame that
failed (SCF not converged, an exception from the calculator): failures are skipped and
reported, never raised, so one bad frame cannot stop an active-learning loop.
Charge: ``atoms.info["total_charge"]`` (e) where the method supports it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import Bohr, Hartree

from nnip.errors import NNIPError

__all__ = ["Oracle", "OracleError", "LabelResult", "make_oracle", "PySCFCalculator"]


class OracleError(NNIPError, RuntimeError):
    """A reference calculation failed on one structure (e.g. SCF not converged)."""


@dataclass
class LabelResult:
    """Output of `Oracle.label`.

    Attributes:
        frames: labelled copies of the frames that succeeded (input order), each with
            ``info["label_source"]`` (the oracle spec) and ``info["label_seconds"]``.
        indices: index in the input of each labelled frame.
        failures: ``{"index", "error"}`` for every frame that failed.
    """

    frames: list[Atoms] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


class Oracle:
    """A reference method that labels structures.

    Args:
        spec: the spec string (recorded in each labelled frame).
        factory: ``atoms -> ASE calculator`` (a fresh calculator per frame).
    """

    def __init__(self, spec: str, factory: Callable[[Atoms], Calculator]) -> None:
        self.spec = spec
        self.factory = factory

    def __repr__(self) -> str:
        return f"Oracle({self.spec!r})"

    def label(self, frames: Sequence[Atoms], progress: bool = False) -> LabelResult:
        """Label ``frames`` (energy eV, forces eV/Å, stress eV/Å³ where available).

        Args:
            frames: structures to label (not modified).
            progress: show a progress bar.

        Returns:
            `LabelResult` with the labelled copies and the failures.
        """
        from nnip.validate.errors import _track

        result = LabelResult()
        for k, atoms in enumerate(_track(list(frames), progress, f"labelling ({self.spec})")):
            start = time.perf_counter()
            try:
                labelled = self._label_one(atoms)
            except Exception as err:  # noqa: BLE001 - any failure of the method is recorded
                result.failures.append({"index": k, "error": f"{type(err).__name__}: {err}"})
                continue
            labelled.info["label_source"] = self.spec
            labelled.info["label_seconds"] = round(time.perf_counter() - start, 4)
            result.frames.append(labelled)
            result.indices.append(k)
        return result

    def _label_one(self, atoms: Atoms) -> Atoms:
        work = atoms.copy()
        work.calc = self.factory(work)
        results: dict[str, Any] = {"energy": float(work.get_potential_energy()),
                                   "forces": np.array(work.get_forces())}
        if work.pbc.all() and "stress" in getattr(work.calc, "implemented_properties", ()):
            results["stress"] = np.array(work.get_stress())
        for key, value in results.items():
            if not np.all(np.isfinite(value)):
                raise OracleError(f"non-finite {key} from {self.spec}")
        out = atoms.copy()
        out.calc = SinglePointCalculator(out, **results)
        return out


def make_oracle(spec: str) -> Oracle:
    """The oracle for a spec string (see the module docstring).

    Raises:
        ValueError: an unknown or malformed spec; ImportError naming the package to
            install when the method's package is missing.
    """
    spec = spec.strip()
    if spec.lower() == "emt":
        from ase.calculators.emt import EMT

        return Oracle("emt", lambda atoms: EMT())
    kind, _, arg = spec.partition(":")
    if kind == "tblite":
        method = arg or "GFN2-xTB"
        if method not in ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"):
            raise ValueError(f"tblite method {method!r} not in GFN2-xTB, GFN1-xTB, IPEA1-xTB")
        try:
            from tblite.ase import TBLite
        except ImportError as err:
            raise ImportError("oracle 'tblite:...' needs the package tblite "
                              "(pip install tblite)") from err
        return Oracle(f"tblite:{method}", lambda atoms: TBLite(
            method=method, charge=float(atoms.info.get("total_charge", 0.0)), verbosity=0))
    if kind == "pyscf":
        functional, slash, basis = arg.partition("/")
        if not functional or not slash or not basis:
            raise ValueError(f"pyscf oracle spec must be 'pyscf:<functional>/<basis>', got "
                             f"{spec!r}")
        try:
            import pyscf  # noqa: F401
        except ImportError as err:
            raise ImportError("oracle 'pyscf:...' needs the package pyscf "
                              "(pip install pyscf)") from err
        return Oracle(f"pyscf:{functional}/{basis}",
                      lambda atoms: PySCFCalculator(xc=functional, basis=basis))
    if arg.isidentifier() and kind and all(part.isidentifier() for part in kind.split(".")):
        try:
            function = getattr(importlib.import_module(kind), arg)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"oracle {spec!r}: cannot import {arg} from {kind}: {err}") from err
        return Oracle(spec, lambda atoms: function())
    raise ValueError(f"unknown oracle {spec!r}: use emt, tblite:GFN2-xTB, "
                     "pyscf:<functional>/<basis> or <module>:<function>")


class PySCFCalculator(Calculator):
    """Kohn–Sham DFT energy and forces of a molecule with PySCF, as an ASE calculator.

    Restricted (RKS) for an even electron count, unrestricted (UKS, lowest spin)
    otherwise; the molecule's charge is ``atoms.info["total_charge"]``. An SCF that does
    not converge raises `OracleError` rather than returning a wrong energy.

    Args:
        xc: exchange-correlation functional, e.g. ``PBE``, ``B3LYP``.
        basis: basis set, e.g. ``6-31G*``, ``def2-SVP``.
        max_cycle: SCF iterations.
        conv_tol: SCF energy convergence in Hartree.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, xc: str = "PBE", basis: str = "6-31G*", max_cycle: int = 100,
                 conv_tol: float = 1e-9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.xc, self.basis, self.max_cycle, self.conv_tol = xc, basis, max_cycle, conv_tol

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = all_changes) -> None:
        """Run the SCF and the analytic gradient."""
        from pyscf import dft, gto

        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise OracleError("PySCFCalculator is for molecules (no periodic cell)")
        charge = int(round(float(self.atoms.info.get("total_charge", 0.0))))
        mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(self.atoms.get_chemical_symbols(),
                                                         self.atoms.positions)],
                    unit="Angstrom", basis=self.basis, charge=charge, verbose=0)
        mol.spin = mol.nelectron % 2
        mol.build()
        mf = (dft.RKS(mol) if mol.spin == 0 else dft.UKS(mol))
        mf.xc, mf.max_cycle, mf.conv_tol = self.xc, self.max_cycle, self.conv_tol
        energy = mf.kernel()
        if not mf.converged:
            raise OracleError(f"PySCF {self.xc}/{self.basis} SCF did not converge in "
                              f"{self.max_cycle} cycles")
        gradient = mf.nuc_grad_method().kernel()  # Hartree/Bohr
        self.results = {"energy": float(energy) * Hartree,
                        "forces": -np.asarray(gradient) * Hartree / Bohr}

"""ASE calculator for nnip potentials.

Works with every ASE tool that uses a calculator: optimizers, `FrechetCellFilter`,
MD, NEB. Results use ASE's names and units: ``energy``/``free_energy`` (eV),
``energies`` (eV per atom), ``forces`` (eV/Å), ``stress`` (Voigt xx yy zz yz xz xy,
eV/Å^3, ASE sign).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from nnip.data.graph import AtomicGraph
from nnip.models.functional import compiled_forces
from nnip.models.potential import Potential

__all__ = ["NNIPCalculator"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class NNIPCalculator(Calculator):
    """ASE calculator wrapping a `Potential`.

    Args:
        model: the potential (a `Potential` or `Committee`), or the path of a model file
            (``.nnip``, `nnip.export.model_file.load_model`). A given potential is not
            modified: when ``device`` or ``dtype`` differ from the model's, the
            calculator works on a copy.
        device: torch device to evaluate on (default: the model's).
        dtype: model dtype, ``"float64"``/``"float32"`` or a torch dtype (default: the
            model's).
        compile: evaluate through `nnip.models.functional.FunctionalForces` fused by
            ``torch.compile`` (PaiNN 500 Cu atoms: 2.7x faster per call after a compilation
            of ~40 s at the first call; sizes may change). Committees too (all members
            in one compiled graph, with their spreads).
        **kwargs: passed to `ase.calculators.calculator.Calculator`.

    Stress is available for structures periodic in all three directions; asking for it
    on other structures raises `PropertyNotImplementedError`, as ASE's calculators do.
    With a `Committee`, ``calc.results`` also holds ``energy_uncertainty`` (eV) and
    ``forces_uncertainty`` (``(n_atoms,)`` eV/Å, the per-atom force spread). With an
    electrostatics term, ``charges`` (``(n_atoms,)`` e, summing to
    ``atoms.info["total_charge"]``), so ``atoms.get_charges()`` works.

    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                              "energy_uncertainty", "forces_uncertainty", "charges"]

    def __init__(self, model: Potential | str | os.PathLike, *,
                 device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, compile: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(model, (str, os.PathLike)):
            from nnip.export.model_file import load_model

            model = load_model(model, device=device)
        elif not isinstance(model, Potential):
            raise TypeError("NNIPCalculator needs a Potential (or Committee) or the path "
                            f"of a model file, got {type(model).__name__}")
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
            dtype = _DTYPES[dtype]
        target_device = torch.device(device) if device is not None else model.device
        target_dtype = dtype or model.model_dtype
        if target_device != model.device or target_dtype != model.model_dtype:
            model = copy.deepcopy(model).to(device=target_device, dtype=target_dtype)
        self.model = model.eval()
        self.functional = compiled_forces(self.model) if compile else None

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes, plus a change of ``atoms.info["total_charge"]`` (e)."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and float(atoms.info.get("total_charge", 0.0)) != \
                float(self.atoms.info.get("total_charge", 0.0)):
            changes.append("total_charge")
        return changes

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        """Compute ``properties`` for ``atoms`` and store them in ``self.results``."""
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a structure periodic in all three directions")
        graph = AtomicGraph.from_atoms(atoms, self.model.cutoff, device=self.model.device)
        if self.functional is not None:
            out = self.functional(graph, compute_stress=bool(atoms.pbc.all()), training=False)
        else:
            out = self.model(graph, compute_forces=True, compute_stress=atoms.pbc.all())
        energy = float(out.energy[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out.energies.cpu().numpy().copy(),
            "forces": out.forces.cpu().numpy().copy(),
        }
        if out.energy_uncertainty is not None:  # a committee: its spread
            self.results["energy_uncertainty"] = float(out.energy_uncertainty[0])
            self.results["forces_uncertainty"] = out.forces_uncertainty.cpu().numpy().copy()
        if out.charges is not None:
            self.results["charges"] = out.charges.cpu().numpy().copy()
        if out.stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                out.stress[0].cpu().numpy().astype(np.float64))

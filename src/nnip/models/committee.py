"""A committee (ensemble) of potentials evaluated in one pass, with uncertainties.

K members with the same elements and cutoff (e.g. the same architecture trained from
different seeds or bootstrap samples) see the same graph; each differentiates its own
copy of the positions, so a single backward pass gives every member's forces. The
output is the committee mean, plus the spread that active learning and production MD
use to decide when not to trust a prediction:

- ``energy_uncertainty`` ``(n_systems,)`` eV: standard deviation of the members' energies;
- ``forces_uncertainty`` ``(n_atoms,)`` eV/Å: ``sqrt(mean_k |F_k - F_mean|^2)`` per atom.

Both are multiplied by ``calibration`` (1 until fitted on validation data).

Reference: Behler, Int. J. Quantum Chem. 115, 1032 (2015) (committee disagreement as
an error indicator); Smith et al., J. Chem. Phys. 148, 241733 (2018) (query by
committee for active learning).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nnip.data.graph import AtomicGraph
from nnip.models.potential import (
    Potential,
    PotentialOutput,
    _leaves,
    _per_system,
    _strained,
    _virial_stress,
)

__all__ = ["Committee", "force_spread"]


class Committee(Potential):
    """K potentials evaluated together; mean predictions plus their spread.

    Args:
        members: potentials with the same elements and cutoff (at least 2).
        calibration: factor applied to the spreads (fitted on validation data so that
            the spread predicts the actual error).
    """

    def __init__(self, members: Sequence[Potential], calibration: float = 1.0) -> None:
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
        first = members[0]
        for k, m in enumerate(members[1:], start=1):
            if m.elements != first.elements or m.cutoff != first.cutoff:
                raise ValueError(f"committee member {k} has elements {m.elements} / cutoff "
                                 f"{m.cutoff}; member 0 has {first.elements} / {first.cutoff}")
        # Members may differ in data-derived settings (e.g. avg_num_neighbors of their
        # bootstrap sample): each one's config is kept to rebuild it exactly.
        spec = {**first.spec, "committee": len(members),
                "member_configs": [dict(m.spec.get("config", {})) for m in members]}
        if first.spec.get("electrostatics"):  # its charge network is data-derived too
            spec["member_electrostatics"] = [dict(m.spec["electrostatics"]) for m in members]
        super().__init__({f"member{k}": m for k, m in enumerate(members)}, first.type_map,
                         first.cutoff, spec=spec)
        self.register_buffer("calibration", torch.tensor(float(calibration),
                                                         dtype=torch.float64))

    @property
    def members(self) -> list[Potential]:
        """The member potentials."""
        return list(self.terms.values())  # type: ignore[arg-type]

    def _evaluate(self, graph: AtomicGraph, compute_forces: bool, compute_stress: bool,
                  training: bool) -> PotentialOutput:
        k_members = len(self.terms)
        positions, strain, inputs = _leaves(graph, self.model_dtype, k_members,
                                            compute_forces or compute_stress, compute_stress)
        parts = [m.energies_and_charges(_strained(graph, positions[k], strain, k))
                 for k, m in enumerate(self.members)]
        energies = torch.stack([e for e, _ in parts])  # (K, n_atoms)
        energy = _per_system(graph, energies)  # (K, n_systems)
        calibration = self.calibration.to(energy.dtype)
        out = PotentialOutput(energy=energy.mean(0), energies=energies.mean(0))
        if parts[0][1] is not None:
            out.charges = torch.stack([q for _, q in parts]).mean(0)
        out.energy_uncertainty = calibration * energy.std(0)
        if compute_forces or compute_stress:
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=training,
                                        allow_unused=True, materialize_grads=True)
            if compute_forces:
                forces = -grads[0].to(torch.float64)  # (K, n_atoms, 3)
                out.forces = forces.mean(0)
                out.forces_uncertainty = force_spread(forces, self.calibration)
            if compute_stress:
                virial, stress = _virial_stress(graph, grads[1].sum(0) / k_members)
                out.virial, out.stress = virial, stress
        if not training:
            out.energy, out.energies = out.energy.detach(), out.energies.detach()
            out.energy_uncertainty = out.energy_uncertainty.detach()
            out.charges = None if out.charges is None else out.charges.detach()
        return out

    def set_calibration(self, factor: float) -> None:
        """Set the factor applied to the spreads (see `nnip.active` calibration)."""
        if not factor > 0:
            raise ValueError(f"calibration factor must be > 0, got {factor}")
        self.calibration.fill_(float(factor))


def force_spread(forces: torch.Tensor, calibration: torch.Tensor | float = 1.0
                 ) -> torch.Tensor:
    """Calibrated per-atom force spread ``(n_atoms,)`` eV/Å of members' forces.

    Args:
        forces: ``(K, n_atoms, 3)`` eV/Å, one row per member (K >= 2).
        calibration: factor on the spread (`Committee.set_calibration`).

    Returns:
        ``calibration * sqrt(K / (K - 1) * mean_k |F_k - F_mean|^2)`` per atom: the
        unbiased RMS deviation of a member's force vector from the mean.
    """
    k = forces.shape[0]
    mean = forces.mean(0)
    spread = ((forces - mean) ** 2).sum(-1).mean(0).sqrt()  # (n_atoms,)
    return torch.as_tensor(calibration, dtype=spread.dtype, device=spread.device) * spread \
        * (k / (k - 1)) ** 0.5

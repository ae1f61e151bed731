"""Training loss: a weighted sum of per-property terms with per-structure weights.

    L = w_E <(ΔE / N)^2> + w_F <ΔF^2> + w_S <Δσ^2> + w_q <Δq^2>

averaged over the structures (energy, stress; weighted by their weights) or force
components and charges (weighted by their structure's weight times their element's
factor, ``loss.element_weights``) that *have* the label; a structure
without a label does not enter that term. ``huber`` replaces the square by the Huber
function with threshold ``delta``. The charge term (per atom, e) enters for models that
predict charges, on structures with reference charges. Masks are applied by selection,
never by multiplying by zero, so a NaN in a missing label can never leak into the loss.
"""

from __future__ import annotations

import torch

from nnip.config import LossConfig
from nnip.data.graph import AtomicGraph, Targets
from nnip.models.potential import PotentialOutput

__all__ = ["Loss"]


class Loss:
    """Weighted energy-per-atom, force and stress loss.

    Args:
        config: weights and kind (`LossConfig`).
    """

    def __init__(self, config: LossConfig) -> None:
        from ase.data import atomic_numbers

        self.config = config
        self._element_factor = torch.ones(119, dtype=torch.float64)  # by atomic number
        for symbol, factor in config.element_weights.items():
            self._element_factor[atomic_numbers[symbol]] = float(factor)

    def atom_weights(self, targets: Targets, graph: AtomicGraph) -> torch.Tensor:
        """``(n_atoms,)`` each atom's weight: its structure's weight times its element's."""
        weight = targets.weight[graph.system_idx]
        if not self.config.element_weights:
            return weight
        factor = self._element_factor.to(weight.device)[graph.atomic_numbers]
        return weight * factor.to(weight.dtype)

    def _penalty(self, diff: torch.Tensor) -> torch.Tensor:
        if self.config.kind == "huber":
            return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), reduction="none",
                                                  delta=self.config.huber_delta)
        return diff**2

    def denominators(self, targets: Targets, graph: AtomicGraph) -> torch.Tensor:
        """``(4,)`` the normalisers of the energy, force, stress and charge terms.

        The summed weights of the structures (energy, stress x 9 components), force
        components and charges that have the label. Data-parallel training sums them over
        the processes, so that each process's share of the loss is normalised by the
        whole global batch.
        """
        w_atom = self.atom_weights(targets, graph)
        return torch.stack([
            targets.weight[targets.has_energy].sum(),
            3.0 * w_atom[targets.has_forces[graph.system_idx]].sum(),
            9.0 * targets.weight[targets.has_stress].sum(),
            w_atom[targets.has_charges[graph.system_idx]].sum()]).to(torch.float64)

    @staticmethod
    def _weighted_mean(values: torch.Tensor, weights: torch.Tensor,
                       total: torch.Tensor | None) -> torch.Tensor:
        total = weights.sum() if total is None else total
        return (values * weights).sum() / total.clamp_min(1e-12)

    def __call__(self, out: PotentialOutput, targets: Targets, graph: AtomicGraph,
                 denominators: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar tensor) and the value of each term.

        Args:
            out: predictions (`Potential` called with ``training=True``).
            targets: labels of the same batch.
            graph: the batch (for atom counts and the atom-to-structure map).
            denominators: ``(4,)`` normalisers of the four terms (see `denominators`);
                default: this batch's own.
        """
        c = self.config
        den = [None] * 4 if denominators is None else \
            list(denominators.to(out.energy.dtype).unbind())
        n_atoms = graph.atoms_per_system.to(out.energy.dtype)
        total = out.energy.new_zeros(())
        parts: dict[str, float] = {}
        w_atom = self.atom_weights(targets, graph)  # (n_atoms,)
        if c.energy_weight > 0 and bool(targets.has_energy.any()):
            sel = targets.has_energy
            diff = (out.energy[sel] - targets.energy[sel]) / n_atoms[sel]  # (n_sel,) eV/atom
            term = self._weighted_mean(self._penalty(diff), targets.weight[sel], den[0])
            total = total + c.energy_weight * term
            parts["energy"] = float(term.detach())
        if c.forces_weight > 0 and out.forces is not None and bool(targets.has_forces.any()):
            atom_sel = targets.has_forces[graph.system_idx]  # (n_atoms,)
            diff = out.forces[atom_sel] - targets.forces[atom_sel]  # (n_sel, 3) eV/Å
            w = w_atom[atom_sel].unsqueeze(-1).expand_as(diff)
            term = self._weighted_mean(self._penalty(diff), w, den[1])
            total = total + c.forces_weight * term
            parts["forces"] = float(term.detach())
        if c.stress_weight > 0 and out.stress is not None and bool(targets.has_stress.any()):
            sel = targets.has_stress
            diff = out.stress[sel] - targets.stress[sel]  # (n_sel, 3, 3) eV/Å^3
            w = targets.weight[sel][:, None, None].expand_as(diff)
            term = self._weighted_mean(self._penalty(diff), w, den[2])
            total = total + c.stress_weight * term
            parts["stress"] = float(term.detach())
        if c.charges_weight > 0 and out.charges is not None and bool(targets.has_charges.any()):
            atom_sel = targets.has_charges[graph.system_idx]
            diff = out.charges[atom_sel] - targets.charges[atom_sel]  # (n_sel,) e
            w = w_atom[atom_sel]
            term = self._weighted_mean(self._penalty(diff), w, den[3])
            total = total + c.charges_weight * term
            parts["charges"] = float(term.detach())
        return total, parts

"""`Potential`: a sum of energy terms, with forces and stress from one autograd call.

Every energy term (learned network, reference energies, repulsion, ...) maps an
`AtomicGraph` to per-atom energies ``(n_atoms,)`` in eV. The potential sums them in
float64, sums per structure, and differentiates **once**:

    forces  F_i = -dE/dr_i                          (eV/Å)
    virial  W   = -dE/dε                            (eV)
    stress  σ   = (1/V) dE/dε = -W / V              (eV/Å^3, ASE sign: positive tensile)

where ε is a symmetric strain applied as r -> r (1 + ε), cell -> cell (1 + ε) (row
vectors), as in nequip's ``ForceStressOutput`` and Knuth et al., Comput. Phys.
Commun. 190, 33 (2015). Because edge vectors are recomputed from the strained positions
and cell inside the terms, the derivative includes every periodic image exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch import nn

from nnip.data.graph import AtomicGraph, replace
from nnip.errors import DataError, ModelError
from nnip.nn.chunking import auto_chunk, edge_chunks
from nnip.nn.embedding import TypeMap

__all__ = ["Potential", "PotentialOutput", "Scaled"]


@dataclass
class PotentialOutput:
    """Predictions for a batch, float64, named as ASE names them.

    Attributes:
        energy: ``(n_systems,)`` total energy, eV.
        energies: ``(n_atoms,)`` per-atom energies, eV (sum per system is ``energy``).
        forces: ``(n_atoms, 3)`` eV/Å, or ``None`` when not requested.
        stress: ``(n_systems, 3, 3)`` eV/Å^3 (ASE sign), NaN for structures without a
            volume (non-periodic); ``None`` when not requested.
        virial: ``(n_systems, 3, 3)`` eV, ``-dE/dε``; ``None`` when not requested.
        energy_uncertainty: ``(n_systems,)`` eV, committees only (else ``None``).
        forces_uncertainty: ``(n_atoms,)`` eV/Å per-atom force spread, committees only.
        charges: ``(n_atoms,)`` e, predicted partial charges (models with an
            electrostatics term; summing to each structure's total charge), else ``None``.

    """

    energy: torch.Tensor
    energies: torch.Tensor
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    virial: torch.Tensor | None = None
    energy_uncertainty: torch.Tensor | None = None
    forces_uncertainty: torch.Tensor | None = None
    charges: torch.Tensor | None = None


class Scaled(nn.Module):
    """Energy term ``scale * term(graph)`` with a fixed (data-derived) scale in eV.

    Lets a learned term output numbers of order one while the energies it models are of
    the data's scale (e.g. the RMS force times a length), as in SchNetPack and MACE. There
    is deliberately no shift: a constant per-atom energy is what the per-element reference
    energies are for, and keeping it there keeps E(isolated atom) = E0.

    Args:
        term: an energy term ``graph -> (n_atoms,)``.
        scale: energy scale in eV.

    """

    def __init__(self, term: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.term = term
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in eV."""
        out = self.term(graph)
        return out * self.scale.to(out.dtype)

    def energies_and_extra(self, graph: AtomicGraph, head: nn.Module
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom energies ``(n_atoms,)`` eV and ``head`` on the term's final features.

        The wrapped backbone's ``energies_and_extra``: one pass gives both, so an extra
        readout (e.g. charges) shares the representation at no extra message passing.
        """
        energies, extra = self.term.energies_and_extra(graph, head)
        return energies * self.scale.to(energies.dtype), extra


class Potential(nn.Module):
    """A machine-learned interatomic potential: named energy terms plus derivatives.

    Args:
        terms: energy terms by name, each ``graph -> (n_atoms,)`` eV.
        type_map: the elements this potential knows.
        cutoff: neighbour-list cutoff in Å that graphs passed in must have been built with.
        spec: how to rebuild this potential (architecture name and resolved config);
            stored in model files.

    """

    def __init__(self, terms: Mapping[str, nn.Module], type_map: TypeMap, cutoff: float,
                 spec: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a Potential needs at least one energy term")
        self.terms = nn.ModuleDict(dict(terms))
        self.type_map = type_map
        self.cutoff = float(cutoff)
        self.spec = dict(spec or {})

    @property
    def elements(self) -> list[str]:
        """Element symbols the potential knows, in type order."""
        return self.type_map.symbols

    @property
    def model_dtype(self) -> torch.dtype:
        """Float dtype the learned terms compute in."""
        for p in self.parameters():
            return p.dtype
        return torch.float64

    @property
    def device(self) -> torch.device:
        """Device of the potential's tensors."""
        for t in self.state_dict().values():
            return t.device
        return torch.device("cpu")

    def forward(
        self,
        graph: AtomicGraph,
        *,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> PotentialOutput:
        """Energy, per-atom energies, and optionally forces and stress of a batch.

        Args:
            graph: batch built with this potential's cutoff, on the potential's device.
            compute_forces: return forces.
            compute_stress: return stress and virial.
            training: keep the autograd graph of the derivatives (``create_graph``) so
                that a loss on forces or stress can be back-propagated. Without it, graphs
                of many edges are evaluated with message sums in chunks
                (`nnip.nn.chunking`): same numbers, less memory.

        Returns:
            `PotentialOutput` in float64; the input graph is not modified.

        Raises:
            ModelError: the graph contains an element the potential does not know.

        """
        self.type_map.check(graph.atomic_numbers)
        # inference of large graphs: message sums in chunks (faster and smaller on a CPU,
        # `nnip.nn.chunking`); never when training (weight gradients, create_graph)
        chunk = None if training else auto_chunk(graph.n_edges, graph.positions.device)
        with torch.enable_grad(), edge_chunks(chunk):
            return self._evaluate(graph, compute_forces, compute_stress, training)

    def _evaluate(self, graph: AtomicGraph, compute_forces: bool, compute_stress: bool,
                  training: bool) -> PotentialOutput:
        positions, strain, inputs = _leaves(graph, self.model_dtype, 1,
                                            compute_forces or compute_stress, compute_stress)
        energies, charges = self.energies_and_charges(
            _strained(graph, positions[0], strain, 0))
        energy = _per_system(graph, energies)
        out = PotentialOutput(energy=energy, energies=energies, charges=charges)
        if compute_forces or compute_stress:
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=training,
                                        allow_unused=True, materialize_grads=True)
            if compute_forces:
                out.forces = -grads[0][0].to(torch.float64)
            if compute_stress:
                out.virial, out.stress = _virial_stress(graph, grads[1][0])
        if not training:
            out.energy, out.energies = out.energy.detach(), out.energies.detach()
            out.charges = None if charges is None else charges.detach()
        return out

    def atom_energies(self, graph: AtomicGraph) -> torch.Tensor:
        """Sum of the terms' per-atom energies ``(n_atoms,)`` in eV, float64."""
        return self.energies_and_charges(graph)[0]

    def energies_and_charges(self, graph: AtomicGraph
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-atom energies ``(n_atoms,)`` eV (float64) and predicted charges.

        Charges ``(n_atoms,)`` in e (float64) come from a term with an
        ``energies_and_charges`` method (`nnip.physics.electrostatics.Electrostatics`);
        ``None`` when no term predicts them. A term with a ``feature_source`` reads its
        raw charges from that learned term's final features (``energies_and_extra``),
        computed in the same pass as that term's energies.
        """
        energies, charge_terms = self._short_range(graph)
        charges = None
        for term, raw in charge_terms:
            part, q = term.energies_and_charges(graph, raw)
            energies = energies + part.to(torch.float64)
            charges = q.to(torch.float64) if charges is None else charges + q
        return energies, charges

    def short_range_and_raw_charges(self, graph: AtomicGraph
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                               torch.Tensor | None]:
        """The parts of a model with one electrostatics term, before the Coulomb sum.

        What the compiled export evaluates per domain (`nnip.export.compiled`): the
        Coulomb energy of the constrained charges is summed outside, and so is the
        constraint (or the charge equilibration) that turns raw charges into charges.

        Returns:
            Per-atom energies of every other term ``(n_atoms,)`` eV (float64), the raw
            charges ``q̃ (n_atoms,)`` e, per atom ``(n_atoms,)`` the constraint weights
            ``w`` (dimensionless) of local charges or, for charge equilibration
            (``charge_model: qeq``), the hardnesses ``J`` in eV/e²
            (`nnip.physics.electrostatics.Electrostatics.charges`), and, for a term with
            a charge-dependent local energy (``charge_energy``), that energy's inputs
            beside the charge ``(n_atoms, channels)``
            (`nnip.physics.electrostatics.Electrostatics.charge_energies`; else None).

        Raises:
            ModelError: not exactly one term predicts charges.
        """
        energies, charge_terms = self._short_range(graph)
        if len(charge_terms) != 1:
            raise ModelError(f"expected one electrostatics term, found {len(charge_terms)}")
        term, raw = charge_terms[0]
        raw, extra = term._split(term.raw_charges(graph) if raw is None else raw)
        site = term.hardnesses(graph) if term.charge_model == "qeq" else term.weights(graph)
        return energies, raw, site.to(raw.dtype), extra

    def _short_range(self, graph: AtomicGraph
                     ) -> tuple[torch.Tensor, list[tuple[nn.Module, torch.Tensor | None]]]:
        """Per-atom energies (float64) of the terms without charges; the charge terms.

        Each charge term comes with its raw charges when they are read from another
        term's features (computed in that term's pass), else ``None``.
        """
        energies = torch.zeros(graph.n_atoms, dtype=torch.float64,
                               device=graph.positions.device)
        # terms whose charges are read from another term's features (one shared network)
        heads = {t.feature_source: t for t in self.terms.values()
                 if getattr(t, "feature_source", None)}
        raw: dict[str, torch.Tensor] = {}
        charge_terms = []
        for name, term in self.terms.items():
            if name in heads:
                part, extra = term.energies_and_extra(graph, heads[name].charge_net)
                raw[name] = extra.squeeze(-1)
            elif hasattr(term, "energies_and_charges"):
                charge_terms.append(term)
                continue
            else:
                part = term(graph)
            energies = energies + part.to(torch.float64)
        sources = [getattr(term, "feature_source", None) for term in charge_terms]
        return energies, [(term, raw[source] if source else None)
                          for term, source in zip(charge_terms, sources)]

    @property
    def long_range(self) -> bool:
        """Whether a term reaches beyond the neighbour-list cutoff (dispersion, Coulomb)."""
        return any(getattr(t, "long_range", False) for t in self.terms.values())

    def check_elements(self, frames: Sequence[Atoms]) -> None:
        """Raise `DataError` naming the first structure with an element the model lacks."""
        known = set(self.type_map.atomic_numbers)
        for k, atoms in enumerate(frames):
            unknown = sorted(set(atoms.numbers.tolist()) - known)
            if unknown:
                names = [chemical_symbols[z] for z in unknown]
                raise DataError(f"element(s) {names} not known to this model, which was made "
                                f"for {self.elements}", source=atoms.info.get("source"),
                                index=int(atoms.info.get("frame_index", k)),
                                field="atomic_numbers")

    def predict(
        self,
        atoms: Atoms | Sequence[Atoms],
        *,
        compute_forces: bool = True,
        compute_stress: bool = False,
    ) -> PotentialOutput:
        """Evaluate ASE structures (convenience: builds the graph with `cutoff`).

        Args:
            atoms: one structure or a list.
            compute_forces: return forces.
            compute_stress: return stress (needs periodic structures).

        """
        frames = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        self.check_elements(frames)
        graph = AtomicGraph.from_atoms(frames, self.cutoff, device=self.device)
        return self(graph, compute_forces=compute_forces, compute_stress=compute_stress)


def use_static_shapes(model: nn.Module) -> None:
    """Switch off per-element gathers and edge pairing (data-dependent sizes) everywhere.

    Same numbers, static shapes: what `torch.export` needs. Modules that gather by
    element expose a ``gather_by_element`` flag, those that pair edges ``pair_edges``.
    """
    for module in model.modules():
        if hasattr(module, "gather_by_element"):
            module.gather_by_element = False
        if hasattr(module, "pair_edges"):
            module.pair_edges = False


def _leaves(graph: AtomicGraph, dtype: torch.dtype, copies: int, need_grad: bool,
            need_strain: bool) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """Positions ``(copies, n_atoms, 3)`` and strain ``(copies, n_systems, 3, 3)`` leaves.

    One copy per committee member, so that one backward pass gives every member's
    forces; ``inputs`` lists the tensors to differentiate.
    """
    base = graph.positions.to(dtype)
    if base.requires_grad:  # the caller differentiates through its own positions
        positions = base.unsqueeze(0).expand(copies, -1, -1)
    else:
        positions = base.detach().unsqueeze(0).expand(copies, -1, -1).clone()
        positions.requires_grad_(need_grad)
    strain = None
    if need_strain:
        strain = torch.zeros((copies, graph.n_systems, 3, 3), dtype=dtype,
                             device=positions.device, requires_grad=True)
    inputs = [positions, strain] if need_strain else [positions]
    return positions, strain, inputs


def _strained(graph: AtomicGraph, positions: torch.Tensor, strain: torch.Tensor | None,
              k: int) -> AtomicGraph:
    """The graph at ``positions`` (n_atoms, 3) under copy ``k`` of the symmetric strain."""
    cell = graph.cell.to(positions.dtype)
    if strain is not None:
        sym = 0.5 * (strain[k] + strain[k].transpose(1, 2))  # (n_systems, 3, 3)
        positions = positions + torch.einsum("ai,aij->aj", positions, sym[graph.system_idx])
        cell = cell + torch.bmm(cell, sym)
    return replace(graph, positions=positions, cell=cell)


def _per_system(graph: AtomicGraph, energies: torch.Tensor) -> torch.Tensor:
    """Sum per-atom ``(..., n_atoms)`` energies per structure: ``(..., n_systems)``."""
    shape = (*energies.shape[:-1], graph.n_systems)
    out = torch.zeros(shape, dtype=energies.dtype, device=energies.device)
    return out.index_add(-1, graph.system_idx, energies)


def _virial_stress(graph: AtomicGraph, de_deps: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Virial ``-dE/deps`` (eV) and stress ``dE/deps / V`` (eV/Å³, NaN without a cell)."""
    de_deps = de_deps.to(torch.float64)  # (n_systems, 3, 3)
    volume = torch.linalg.det(graph.cell.to(torch.float64)).abs()
    periodic = graph.pbc.any(dim=1) & (volume > 0)
    volume = torch.where(periodic, volume, torch.ones_like(volume))
    stress = de_deps / volume[:, None, None]
    return -de_deps, torch.where(periodic[:, None, None], stress,
                                 torch.full_like(stress, float("nan")))

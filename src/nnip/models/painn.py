"""PaiNN: polarizable atom interaction neural network (equivariant message passing).

K. T. Schütt, O. T. Unke, M. Gastegger, "Equivariant message passing for the prediction
of tensorial properties and molecular spectra", ICML 2021 (PMLR 139, 9377).

Each atom carries invariant features s_i (n_features) and equivariant vector features
v_i (3 × n_features), v_i = 0 at the start. A layer is a message block (eq. 7-8)

    Δs_i = Σ_j φ_s(s_j) ∘ W_s(r_ij)
    Δv_i = Σ_j v_j ∘ φ_vv(s_j) ∘ W_vv(r_ij) + φ_vs(s_j) ∘ W_vs(r_ij) r̂_ij

followed by an update block (eq. 9-11) with U v, V v (linear maps across features):

    Δv_i = a_vv(s_i, ‖V v_i‖) ∘ U v_i
    Δs_i = a_sv(s_i, ‖V v_i‖) ∘ <U v_i, V v_i> + a_ss(s_i, ‖V v_i‖)

Vectors are only scaled by invariants and summed, so v rotates with the structure (and
flips under inversion) while s and the energy stay invariant. The per-atom energy is a
readout MLP of s, minus the same network's output for an isolated atom of that element,
so the term vanishes for isolated atoms (E(isolated atom) = E0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.chunking import aggregate
from nnip.nn.cutoff import CUTOFFS
from nnip.nn.embedding import TypeMap, head_minus_isolated, minus_isolated
from nnip.nn.mlp import ACTIVATIONS, MLP
from nnip.nn.radial import RADIAL_BASES

__all__ = ["PaiNNConfig", "PaiNN"]


@dataclass
class PaiNNConfig:
    """Hyperparameters of PaiNN.

    Attributes:
        n_features: width of scalar and vector features (128 in the paper; 64 is a good
            speed/accuracy compromise on CPU).
        n_interactions: message/update layers (3 in the paper).
        n_basis: radial basis functions (20 in the paper).
        radial_basis: ``bessel`` (paper) or ``gaussian``.
        cutoff_fn: ``cosine`` (paper) or ``polynomial`` (smoother; default).
        activation: ``silu`` (paper), ``ssp`` or ``tanh``.
        avg_num_neighbors: messages are divided by this (data-derived).
        vector_norm: how the update block turns vector features into invariants:
            ``smooth`` (default) ``sqrt(|v|^2 + 1) - 1``, smooth everywhere; ``paper``
            ``sqrt(|v|^2 + 1e-8)``, which has a cusp where ``v`` vanishes by symmetry
            (atoms on high-symmetry sites of a crystal): force constants there diverge
            and phonons and NVE time-step scaling break. Model files written before
            this option existed load as ``paper``.
    """

    n_features: int = 64
    n_interactions: int = 3
    n_basis: int = 20
    radial_basis: str = "bessel"
    cutoff_fn: str = "polynomial"
    activation: str = "silu"
    avg_num_neighbors: float = 1.0
    vector_norm: str = "smooth"

    def __post_init__(self) -> None:
        for name in ("n_features", "n_interactions", "n_basis"):
            if getattr(self, name) < 1:
                raise ValueError(f"PaiNNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.vector_norm not in ("smooth", "paper"):
            raise ValueError(f"PaiNNConfig.vector_norm {self.vector_norm!r} not in "
                             "['paper', 'smooth']")
        for name, table in (("radial_basis", RADIAL_BASES), ("cutoff_fn", CUTOFFS),
                            ("activation", ACTIVATIONS)):
            if getattr(self, name) not in table:
                raise ValueError(f"PaiNNConfig.{name} {getattr(self, name)!r} not in "
                                 f"{sorted(table)}")
        if not self.avg_num_neighbors > 0:
            raise ValueError(f"PaiNNConfig.avg_num_neighbors must be > 0, got "
                             f"{self.avg_num_neighbors}")


class PaiNNMessage(nn.Module):
    """Message block (PaiNN eq. 7-8).

    Shapes:
        ``s (n_nodes, F), v (n_nodes, 3, F), basis (n_edges, n_basis),
        envelope (n_edges,), unit (n_edges, 3), edge_index (2, n_edges)
        -> Δs (n_nodes, F), Δv (n_nodes, 3, F)``.
    """

    def __init__(self, n_features: int, n_basis: int, activation: str, norm: float) -> None:
        super().__init__()
        self.phi = MLP([n_features, n_features, 3 * n_features], activation)
        self.filter = nn.Linear(n_basis, 3 * n_features)
        self.norm = 1.0 / norm
        self.n_features = n_features

    def forward(self, s: torch.Tensor, v: torch.Tensor, basis: torch.Tensor,
                envelope: torch.Tensor, unit: torch.Tensor, edge_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Aggregate messages from neighbours j into centres i."""
        i, j = edge_index
        delta_s, delta_v = aggregate(self._messages, i, j, s.shape[0],
                                     (basis, envelope, unit), (self.phi(s), v))
        return delta_s * self.norm, delta_v * self.norm  # (n_nodes, F), (n_nodes, 3, F)

    def _messages(self, basis: torch.Tensor, envelope: torch.Tensor, unit: torch.Tensor,
                  phi_j: torch.Tensor, v_j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Messages ``(n, F)``, ``(n, 3, F)`` of ``n`` edges from the neighbours' φ(s), v."""
        x = phi_j * self.filter(basis) * envelope.unsqueeze(-1)  # (n, 3F)
        ds, dvv, dvs = torch.split(x, self.n_features, dim=-1)  # 3 × (n, F)
        dv = v_j * dvv.unsqueeze(1) + unit.unsqueeze(-1) * dvs.unsqueeze(1)  # (n, 3, F)
        return ds, dv


class PaiNNUpdate(nn.Module):
    """Update block (PaiNN eq. 9-11).

    Shapes:
        ``s (n_nodes, F), v (n_nodes, 3, F) -> Δs (n_nodes, F), Δv (n_nodes, 3, F)``.
    """

    def __init__(self, n_features: int, activation: str, vector_norm: str = "smooth") -> None:
        super().__init__()
        self.smooth = vector_norm == "smooth"
        self.U = nn.Linear(n_features, n_features, bias=False)
        self.V = nn.Linear(n_features, n_features, bias=False)
        self.a = MLP([2 * n_features, n_features, 3 * n_features], activation)
        self.n_features = n_features

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix scalar and vector channels within each atom."""
        uv, vv = self.U(v), self.V(v)  # (n_nodes, 3, F) each
        squared = (vv**2).sum(dim=1)  # (n_nodes, F)
        # smooth: quadratic near v = 0 (symmetric sites), |v| for large v; paper: a cusp
        # at v = 0 softened only over |v| ~ 1e-4 (eps keeps its gradient finite)
        vv_norm = (torch.sqrt(squared + 1.0) - 1.0) if self.smooth \
            else torch.sqrt(squared + 1e-8)
        a = self.a(torch.cat([s, vv_norm], dim=-1))  # (n_nodes, 3F)
        a_vv, a_sv, a_ss = torch.split(a, self.n_features, dim=-1)  # 3 × (n_nodes, F)
        delta_v = a_vv.unsqueeze(1) * uv  # (n_nodes, 3, F)
        delta_s = a_sv * (uv * vv).sum(dim=1) + a_ss  # (n_nodes, F)
        return delta_s, delta_v


class PaiNN(nn.Module):
    """PaiNN energy term: ``graph -> per-atom energy (n_atoms,)``.

    Outputs are of order one; `Scaled` turns them into eV.

    Args:
        type_map: the model's elements.
        cutoff: radial cutoff in Å.
        config: hyperparameters.
    """

    def __init__(self, type_map: TypeMap, cutoff: float, config: PaiNNConfig) -> None:
        super().__init__()
        c = config
        self.type_map = type_map
        self.cutoff = float(cutoff)
        self.n_features = c.n_features
        self.embedding = nn.Embedding(type_map.n_types, c.n_features)
        self.basis = RADIAL_BASES[c.radial_basis](self.cutoff, c.n_basis)
        self.envelope = CUTOFFS[c.cutoff_fn](self.cutoff)
        self.messages = nn.ModuleList(
            PaiNNMessage(c.n_features, c.n_basis, c.activation, c.avg_num_neighbors)
            for _ in range(c.n_interactions))
        self.updates = nn.ModuleList(PaiNNUpdate(c.n_features, c.activation, c.vector_norm)
                                     for _ in range(c.n_interactions))
        self.readout = MLP([c.n_features, c.n_features // 2, 1], c.activation)

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in the model dtype."""
        return self.energies_and_extra(graph)[0]

    def energies_and_extra(self, graph: AtomicGraph, head: nn.Module | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-atom energies ``(n_atoms,)`` and ``head`` on the final scalar features.

        ``head`` maps ``(n, n_features) -> (n, k)`` (e.g. a charge readout sharing this
        network's representation); its output minus that of the isolated atom of each
        element is returned as ``(n_atoms, k)``, or ``None`` without a head.
        """
        vectors = graph.edge_vectors()  # (n_edges, 3)
        r = torch.linalg.vector_norm(vectors, dim=-1)  # (n_edges,)
        unit = vectors / r.unsqueeze(-1)  # (n_edges, 3)
        basis = self.basis(r)  # (n_edges, n_basis)
        envelope = self.envelope(r)  # (n_edges,)
        types = self.type_map(graph.atomic_numbers)  # (n_atoms,)
        n_atoms, n_types = graph.n_atoms, self.type_map.n_types
        # One extra node per element, without edges: the isolated atom of that element.
        s = torch.cat([self.embedding(types), self.embedding.weight])  # (n_nodes, F)
        v = s.new_zeros((n_atoms + n_types, 3, self.n_features))  # (n_nodes, 3, F)
        for message, update in zip(self.messages, self.updates):
            ds, dv = message(s, v, basis, envelope, unit, graph.edge_index)
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
        energy = self.readout(s).squeeze(-1)  # (n_nodes,)
        return (minus_isolated(energy, n_atoms, types),  # (n_atoms,)
                head_minus_isolated(head, s, n_atoms, types))

"""SchNet: invariant message passing with continuous-filter convolutions.

K. T. Schütt, P.-J. Kindermans, H. E. Sauceda, S. Chmiela, A. Tkatchenko,
K.-R. Müller, "SchNet: A continuous-filter convolutional neural network for
modeling quantum interactions", NeurIPS 2017; and K. T. Schütt et al., "SchNet – A deep
learning architecture for molecules and materials", J. Chem. Phys. 148, 241722 (2018).

Per atom: an element embedding x_i; then ``n_interactions`` residual updates

    v_i = Dense(ssp(Dense( Σ_j  W(r_ij) ⊙ Dense(x)_j  / n_avg )))
    x_i <- x_i + v_i,    W(r) = Dense(ssp(Dense(rbf(r)))) · f_cut(r)

and a per-atom readout MLP giving the atomic energy, minus the readout of an isolated
atom of the same element (so that the term vanishes for isolated atoms and the
per-element reference energies are the isolated-atom energies of the potential).
Only distances enter, so the energy is invariant to rotations, reflections,
translations and permutations; the envelope f_cut makes it smooth where neighbours
cross the cutoff.
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

__all__ = ["SchNetConfig", "SchNet"]


@dataclass
class SchNetConfig:
    """Hyperparameters of SchNet.

    Attributes:
        n_features: width of the atom features; 64 is fast, 128 (default) is the
            published choice, raise for accuracy on large diverse data.
        n_interactions: message-passing layers (receptive field n_interactions ×
            cutoff); 3 is the published default.
        n_basis: radial basis functions.
        n_filters: width of the continuous filters (default: ``n_features``).
        radial_basis: ``gaussian`` (published) or ``bessel``.
        cutoff_fn: ``cosine`` (published) or ``polynomial`` (smoother: also the second
            derivative vanishes, better for MD energy conservation).
        activation: ``ssp`` (shifted softplus, published), ``silu`` or ``tanh``.
        avg_num_neighbors: messages are divided by this (data-derived), which keeps
            feature magnitudes of order one whatever the density.

    """

    n_features: int = 128
    n_interactions: int = 3
    n_basis: int = 50
    n_filters: int | None = None
    radial_basis: str = "gaussian"
    cutoff_fn: str = "polynomial"
    activation: str = "ssp"
    avg_num_neighbors: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_features", "n_interactions", "n_basis"):
            if getattr(self, name) < 1:
                raise ValueError(f"SchNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.radial_basis not in RADIAL_BASES:
            raise ValueError(f"SchNetConfig.radial_basis {self.radial_basis!r} not in "
                             f"{sorted(RADIAL_BASES)}")
        if self.cutoff_fn not in CUTOFFS:
            raise ValueError(f"SchNetConfig.cutoff_fn {self.cutoff_fn!r} not in {sorted(CUTOFFS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"SchNetConfig.activation {self.activation!r} not in "
                             f"{sorted(ACTIVATIONS)}")
        if not self.avg_num_neighbors > 0:
            raise ValueError(f"SchNetConfig.avg_num_neighbors must be > 0, got "
                             f"{self.avg_num_neighbors}")


class CFConv(nn.Module):
    """Continuous-filter convolution (SchNet 2018, eq. 5-6).

    Args:
        n_features: atom feature width.
        n_filters: filter width.
        n_basis: radial basis size.
        activation: activation name.
        avg_num_neighbors: normalisation of the neighbour sum.

    Shapes:
        ``x (n_atoms, n_features), basis (n_edges, n_basis), envelope (n_edges,),
        edge_index (2, n_edges) -> (n_atoms, n_features)``.

    """

    def __init__(self, n_features: int, n_filters: int, n_basis: int, activation: str,
                 avg_num_neighbors: float) -> None:
        super().__init__()
        self.filter_net = MLP([n_basis, n_filters, n_filters], activation)
        self.in2filter = nn.Linear(n_features, n_filters, bias=False)
        # No biases after the aggregation: an atom without neighbours gets a zero update
        # (all activations vanish at zero), so isolated atoms keep their embedding.
        self.filter2out = nn.Sequential(nn.Linear(n_filters, n_features, bias=False),
                                        ACTIVATIONS[activation](),
                                        nn.Linear(n_features, n_features, bias=False))
        self.norm = 1.0 / float(avg_num_neighbors)

    def forward(self, x: torch.Tensor, basis: torch.Tensor, envelope: torch.Tensor,
                edge_index: torch.Tensor) -> torch.Tensor:
        """Aggregate filtered neighbour features (see class docstring for shapes)."""
        i, j = edge_index
        (agg,) = aggregate(self._messages, i, j, x.shape[0], (basis, envelope),
                           (self.in2filter(x),))  # (n_atoms, n_filters)
        return self.filter2out(agg * self.norm)  # (n_atoms, n_features)

    def _messages(self, basis: torch.Tensor, envelope: torch.Tensor, x_j: torch.Tensor
                  ) -> tuple[torch.Tensor]:
        """Filtered messages ``(n, n_filters)`` of ``n`` edges from the neighbours' x_j."""
        return (x_j * self.filter_net(basis) * envelope.unsqueeze(-1),)


class SchNet(nn.Module):
    """SchNet energy term: ``graph -> per-atom energy (n_atoms,)``.

    Outputs are of order one; `Scaled` turns them into eV.

    Args:
        type_map: the model's elements.
        cutoff: radial cutoff in Å.
        config: hyperparameters.

    """

    def __init__(self, type_map: TypeMap, cutoff: float, config: SchNetConfig) -> None:
        super().__init__()
        c = config
        n_filters = c.n_filters or c.n_features
        self.type_map = type_map
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(type_map.n_types, c.n_features)
        self.basis = RADIAL_BASES[c.radial_basis](self.cutoff, c.n_basis)
        self.envelope = CUTOFFS[c.cutoff_fn](self.cutoff)
        self.interactions = nn.ModuleList(
            CFConv(c.n_features, n_filters, c.n_basis, c.activation, c.avg_num_neighbors)
            for _ in range(c.n_interactions)
        )
        self.readout = MLP([c.n_features, c.n_features // 2, 1], c.activation)

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in the model dtype."""
        return self.energies_and_extra(graph)[0]

    def energies_and_extra(self, graph: AtomicGraph, head: nn.Module | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-atom energies ``(n_atoms,)`` and ``head`` on the final features.

        ``head`` maps ``(n, n_features) -> (n, k)`` (e.g. a charge readout sharing this
        network's representation); see `nnip.nn.embedding.head_minus_isolated`.
        """
        r = torch.linalg.vector_norm(graph.edge_vectors(), dim=-1)  # (n_edges,)
        basis = self.basis(r)  # (n_edges, n_basis)
        envelope = self.envelope(r)  # (n_edges,)
        types = self.type_map(graph.atomic_numbers)  # (n_atoms,)
        x = self.embedding(types)  # (n_atoms, n_features)
        for interaction in self.interactions:
            x = x + interaction(x, basis, envelope, graph.edge_index)
        # Subtract the readout of an isolated atom (whose features stay the embedding),
        # so the learned energy is an interaction energy: E(isolated atom) = E0 exactly,
        # and fragments far apart add up.
        features = torch.cat([x, self.embedding.weight])  # (n_atoms + n_types, n_features)
        energies = minus_isolated(self.readout(features).squeeze(-1), graph.n_atoms, types)
        return energies, head_minus_isolated(head, features, graph.n_atoms, types)

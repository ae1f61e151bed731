"""Building blocks shared by the e3nn models (NequIP-style and MACE-style).

- `EdgeEmbedding`: spherical harmonics of the edge direction, Bessel radial basis and
  smooth cutoff envelope of the edge length.
- `Convolution`: the equivariant point convolution
  ``m_i = Σ_j R(|r_ij|) f_cut(|r_ij|) · (Linear(h)_j ⊗ Y(r̂_ij)) / n_avg``
  (Thomas et al. 2018, tensor-field networks; NequIP and MACE use it as their message).
- `with_isolated_atoms`: node types extended by one edge-less node per element, whose
  output the models subtract so that a learned term vanishes for an isolated atom.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.cutoff import CUTOFFS
from nnip.nn.radial import BesselBasis

__all__ = ["EdgeEmbedding", "Convolution", "with_isolated_atoms"]


class EdgeEmbedding(nn.Module):
    """Per-edge inputs of an equivariant convolution.

    Args:
        irreps_sh: irreps of the spherical harmonics (e.g. ``1x0e+1x1o+1x2e``).
        cutoff: radial cutoff in Å.
        n_basis: Bessel radial basis functions.
        cutoff_fn: name of the cutoff envelope (key of `nnip.nn.cutoff.CUTOFFS`).

    Shapes:
        ``graph -> sh (n_edges, irreps_sh.dim), radial (n_edges, n_basis),
        envelope (n_edges,)``; lengths in Å.
    """

    def __init__(self, irreps_sh: o3.Irreps, cutoff: float, n_basis: int,
                 cutoff_fn: str) -> None:
        super().__init__()
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True,
                                                         normalization="component")
        self.basis = BesselBasis(cutoff, n_basis)
        self.envelope = CUTOFFS[cutoff_fn](cutoff)

    def forward(self, graph: AtomicGraph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Spherical harmonics, radial basis and envelope of every edge."""
        vectors = graph.edge_vectors()  # (n_edges, 3)
        r = torch.linalg.vector_norm(vectors, dim=-1)  # (n_edges,)
        return self.spherical_harmonics(vectors), self.basis(r), self.envelope(r)


def with_isolated_atoms(types: torch.Tensor, n_types: int, dtype: torch.dtype
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Append one edge-less node per element to the nodes of a graph.

    Args:
        types: ``(n_atoms,)`` element indices.
        n_types: number of elements.
        dtype: float dtype of the one-hot encoding.

    Returns:
        ``all_types (n_atoms + n_types,)`` and its one-hot ``(n_atoms + n_types,
        n_types)``; node ``n_atoms + t`` is an isolated atom of element ``t``.
    """
    all_types = torch.cat([types, torch.arange(n_types, device=types.device)])
    return all_types, torch.nn.functional.one_hot(all_types, n_types).to(dtype)


class Convolution(nn.Module):
    """Equivariant point convolution with radial-MLP path weights ("uvu" paths).

    Args:
        irreps_in: node feature irreps.
        irreps_sh: spherical harmonics irreps.
        irreps_target: keep only tensor-product outputs whose irrep appears here.
        n_basis: radial basis functions (input of the radial MLP).
        radial_hidden: widths of the radial MLP's hidden layers.
        avg_num_neighbors: the sum over neighbours is divided by this.

    Shapes:
        ``h (n_nodes, irreps_in.dim), sh (n_edges, sh.dim), radial (n_edges, n_basis),
        envelope (n_edges,), edge_index (2, n_edges) -> (n_nodes, irreps_out.dim)``
        with ``irreps_out`` the (unsimplified) irreps of the messages.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps,
                 n_basis: int, radial_hidden: Sequence[int], avg_num_neighbors: float) -> None:
        super().__init__()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        self.linear_in = o3.Linear(irreps_in, irreps_in)
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_edge:
                    if ir_out in o3.Irreps(irreps_target):
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        self.irreps_out = o3.Irreps(mid)
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, self.irreps_out, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = e3nn_nn.FullyConnectedNet(
            [n_basis, *radial_hidden, self.tp.weight_numel], torch.nn.functional.silu)
        self.norm = 1.0 / avg_num_neighbors

    def forward(self, h: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor,
                envelope: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Sum the messages of every node's neighbours (shapes in the class docstring)."""
        i, j = edge_index
        weights = self.radial(radial) * envelope.unsqueeze(-1)  # (n_edges, weight_numel)
        messages = self.tp(self.linear_in(h)[j], sh, weights)  # (n_edges, out.dim)
        agg = messages.new_zeros((h.shape[0], messages.shape[1]))
        return agg.index_add(0, i, messages) * self.norm  # (n_nodes, out.dim)

"""Ziegler–Biersack–Littmark (ZBL) screened nuclear repulsion as an energy term.

``E_ij = k_e Z_i Z_j / r * phi(r / a)``, ``a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23)``,
``phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x} + 0.28022 e^{-0.40290 x}
+ 0.02817 e^{-0.20162 x}`` (Ziegler, Biersack, Littmark, The Stopping and Range of Ions
in Solids, 1985). Multiplied by a smooth polynomial envelope (p = 6) that vanishes at
``factor * (r_cov_i + r_cov_j)`` (covalent radii), as in MACE's ZBL term, so it acts
only where atoms come closer than bonding distances: atoms pushed together are repelled
even where the training data had no such configurations, and the learned term fits the
rest. Per-atom energies are half the pair sum (full neighbour list).
"""

from __future__ import annotations

import torch
from ase.data import covalent_radii
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.embedding import TypeMap

__all__ = ["ZBL"]

_KE = 14.399645478425668  # e^2 / (4 pi eps0) in eV Å
_C = (0.18175, 0.50986, 0.28022, 0.02817)
_D = (3.19980, 0.94229, 0.40290, 0.20162)


class ZBL(nn.Module):
    """ZBL repulsion switched off at ``factor`` times the covalent bond length.

    Args:
        type_map: the model's elements.
        factor: the switch-off distance as a multiple of ``r_cov_i + r_cov_j``.
        p: order of the polynomial envelope.
    """

    def __init__(self, type_map: TypeMap, factor: float = 1.0, p: int = 6) -> None:
        super().__init__()
        self.type_map = type_map
        self.factor, self.p = float(factor), int(p)
        z = torch.tensor(type_map.atomic_numbers, dtype=torch.float64)
        self.register_buffer("z", z)
        self.register_buffer("radius", torch.tensor(
            [covalent_radii[int(k)] for k in type_map.atomic_numbers], dtype=torch.float64))

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in eV."""
        types = self.type_map(graph.atomic_numbers)
        i, j = graph.edge_index
        vec = graph.edge_vectors()
        r = torch.linalg.norm(vec, dim=-1)  # (n_edges,) Å
        zi, zj = self.z[types[i]].to(r.dtype), self.z[types[j]].to(r.dtype)
        r_max = self.factor * (self.radius[types[i]] + self.radius[types[j]]).to(r.dtype)
        inside = r < r_max
        r_safe = torch.where(inside, r, r_max)
        a = 0.46850 / (zi**0.23 + zj**0.23)
        x = r_safe / a
        phi = sum(c * torch.exp(-d * x) for c, d in zip(_C, _D))
        u = r_safe / r_max
        p = self.p
        envelope = (1.0 - 0.5 * (p + 1) * (p + 2) * u**p + p * (p + 2) * u ** (p + 1)
                    - 0.5 * p * (p + 1) * u ** (p + 2))
        pair = torch.where(inside, _KE * zi * zj / r_safe * phi * envelope, torch.zeros_like(r))
        energies = torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device)
        return energies.index_add(0, i, 0.5 * pair)

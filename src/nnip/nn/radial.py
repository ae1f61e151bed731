"""Radial basis expansions of interatomic distances."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GaussianBasis", "BesselBasis", "RADIAL_BASES"]


class GaussianBasis(nn.Module):
    """Gaussians exp(-(r - mu_k)^2 / (2 w^2)) on an even grid mu_k in [0, r_cut].

    K. T. Schütt et al., J. Chem. Phys. 148, 241722 (2018) (SchNet), eq. 10; the width
    ``w`` equals the grid spacing.

    Args:
        cutoff: r_cut in Å.
        n_basis: number of Gaussians.

    """

    def __init__(self, cutoff: float, n_basis: int) -> None:
        super().__init__()
        centers = torch.linspace(0.0, float(cutoff), n_basis, dtype=torch.float64)
        self.register_buffer("centers", centers)
        self.width = float(cutoff) / max(n_basis - 1, 1)
        self.n_basis = n_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Expand ``r`` ``(n_edges,)`` in Å into ``(n_edges, n_basis)``."""
        diff = r.unsqueeze(-1) - self.centers.to(r.dtype)  # (n_edges, n_basis)
        return torch.exp(-0.5 * (diff / self.width) ** 2)


class BesselBasis(nn.Module):
    """sin(k pi r / r_cut) / r Bessel functions (DimeNet; used by NequIP and MACE).

    J. Gasteiger, J. Groß, S. Günnemann, ICLR 2020, eq. 7, normalised by sqrt(2 / r_cut).

    Args:
        cutoff: r_cut in Å.
        n_basis: number of basis functions.
        trainable: learn the frequencies (as NequIP does).

    """

    def __init__(self, cutoff: float, n_basis: int, trainable: bool = False) -> None:
        super().__init__()
        freqs = torch.arange(1, n_basis + 1, dtype=torch.float64) * math.pi / float(cutoff)
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)
        self.prefactor = math.sqrt(2.0 / float(cutoff))
        self.n_basis = n_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Expand ``r`` ``(n_edges,)`` in Å (> 0) into ``(n_edges, n_basis)``."""
        r = r.unsqueeze(-1)  # (n_edges, 1)
        return self.prefactor * torch.sin(self.freqs.to(r.dtype) * r) / r


RADIAL_BASES: dict[str, type[nn.Module]] = {"gaussian": GaussianBasis, "bessel": BesselBasis}
"""Radial bases by config name."""

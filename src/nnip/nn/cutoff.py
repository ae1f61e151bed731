"""Smooth cutoff envelopes f(r) with f(0) = 1 and f(r_cut) = 0.

Every learned interaction is multiplied by an envelope so that energy and forces go
continuously to zero at the cutoff: an atom entering or leaving a neighbourhood then
causes no jump in energy or force, which energy conservation in MD needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CosineCutoff", "PolynomialCutoff", "CUTOFFS"]


class CosineCutoff(nn.Module):
    """Behler's cosine envelope, f(r) = (cos(pi r / r_cut) + 1) / 2 for r < r_cut.

    J. Behler, M. Parrinello, PRL 98, 146401 (2007). Value and first derivative vanish at
    ``r_cut``; the second derivative does not.

    Args:
        cutoff: r_cut in Å.

    """

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Envelope of distances ``r`` (any shape, Å); same shape, dimensionless."""
        f = 0.5 * (torch.cos(r * (math.pi / self.cutoff)) + 1.0)
        return torch.where(r < self.cutoff, f, torch.zeros_like(r))


class PolynomialCutoff(nn.Module):
    """Polynomial envelope of order p (DimeNet), smooth to order p at r_cut.

    J. Gasteiger, J. Groß, S. Günnemann, ICLR 2020 (DimeNet), eq. 8:
    f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = r / r_cut.
    Value and the first two derivatives vanish at ``r_cut`` (for p >= 2).

    Args:
        cutoff: r_cut in Å.
        p: polynomial order (default 6, as NequIP and MACE use).

    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        if p < 2:
            raise ValueError(f"polynomial cutoff order p must be >= 2, got {p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Envelope of distances ``r`` (any shape, Å); same shape, dimensionless."""
        p = self.p
        x = r / self.cutoff
        f = (1.0 - 0.5 * (p + 1) * (p + 2) * x**p + p * (p + 2) * x ** (p + 1)
             - 0.5 * p * (p + 1) * x ** (p + 2))
        return torch.where(x < 1.0, f, torch.zeros_like(r))


CUTOFFS: dict[str, type[nn.Module]] = {"cosine": CosineCutoff, "polynomial": PolynomialCutoff}
"""Envelopes by config name."""

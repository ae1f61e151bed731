"""Multilayer perceptrons and activations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ShiftedSoftplus", "MLP", "ACTIVATIONS"]


class ShiftedSoftplus(nn.Module):
    """ssp(x) = ln(0.5 e^x + 0.5), the smooth activation of SchNet (ssp(0) = 0).

    K. T. Schütt et al., NeurIPS 2017 (SchNet), section 3.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply elementwise; any shape."""
        return nn.functional.softplus(x) - math.log(2.0)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ssp": ShiftedSoftplus,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
"""Smooth activations by config name (smoothness keeps forces continuous)."""


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    Args:
        sizes: layer widths ``[n_in, hidden..., n_out]``; at least two entries.
        activation: name in `ACTIVATIONS`.
        bias_last: whether the last layer has a bias.

    Shapes:
        ``(..., n_in) -> (..., n_out)``.

    """

    def __init__(self, sizes: Sequence[int], activation: str = "silu",
                 bias_last: bool = True) -> None:
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {list(sizes)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from "
                             f"{sorted(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = k == len(sizes) - 2
            layers.append(nn.Linear(a, b, bias=bias_last or not last))
            if not last:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)

"""Tensor-in, tensor-out layers: cutoffs, radial bases, MLPs, element maps."""

from nnip.nn.cutoff import CosineCutoff, PolynomialCutoff
from nnip.nn.embedding import TypeMap
from nnip.nn.mlp import MLP, ShiftedSoftplus
from nnip.nn.radial import BesselBasis, GaussianBasis

__all__ = ["BesselBasis", "CosineCutoff", "GaussianBasis", "MLP", "PolynomialCutoff",
           "ShiftedSoftplus", "TypeMap"]

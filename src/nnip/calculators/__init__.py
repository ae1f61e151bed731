"""ASE calculators."""

from nnip.calculators.ase import NNIPCalculator

__all__ = ["NNIPCalculator"]

"""Batched molecular dynamics in torch: state on the model's device, many systems at once.

`MD` drives a batch with one of the integrators (`VelocityVerlet` for NVE, `Langevin`
(BAOAB) and `NoseHooverChain` for NVT), rebuilding the neighbour list only when an atom
moved more than half the skin, writing extxyz/ASE trajectories and a CSV thermo log,
and stopping cleanly (with a message, keeping what was written) on NaN, overheating or
atoms too close. Units: Å, fs, amu, eV, K (velocities in Å/fs).
"""

from nnip.md.integrators import (
    Langevin,
    LangevinNPT,
    MDState,
    NoseHooverChain,
    VelocityVerlet,
    kinetic_energy,
    temperature,
)
from nnip.md.runner import ENSEMBLES, MD, MDResult, maxwell_boltzmann, simulate

__all__ = ["ENSEMBLES", "MD", "MDResult", "MDState", "Langevin", "LangevinNPT", "NoseHooverChain",
           "VelocityVerlet", "kinetic_energy", "maxwell_boltzmann", "simulate", "temperature"]

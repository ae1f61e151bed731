"""Fixed-form physics energy terms (reference energies; repulsion, dispersion and
electrostatics come in later releases)."""

from nnip.physics.reference import ReferenceEnergies, fit_reference_energies

__all__ = ["ReferenceEnergies", "fit_reference_energies"]

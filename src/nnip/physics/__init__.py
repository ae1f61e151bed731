"""Fixed-form physics energy terms.

Per-element reference energies now; repulsion, dispersion and electrostatics follow.
"""

from nnip.physics.reference import ReferenceEnergies, fit_reference_energies

__all__ = ["ReferenceEnergies", "fit_reference_energies"]

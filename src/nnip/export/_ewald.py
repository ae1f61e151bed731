"""Ewald sum of Gaussian-smeared charges with explicit potentials, forces and virial.

The reference (NumPy) for the C++ sum in LAMMPS's ``pair_style nnip``
(``lammps/pair_nnip.cpp``, same formulas, same k-vectors): the compiled export evaluates
a model's electrostatics outside the compiled graph with it, from Python and from LAMMPS.

For charges ``q_i`` (e) smeared into Gaussians of width σ (Å) in a 3D-periodic cell of
volume V, the pair interaction ``k_e q_i q_j erf(r / (√2 σ)) / r`` summed over every
periodic image is exactly the reciprocal-space part of an Ewald sum with splitting
parameter α = 1/(√2 σ) (Ewald, Ann. Phys. 369, 253 (1921); the formulas as in Allen &
Tildesley, *Computer Simulation of Liquids*, 2nd ed., sec. 6.2, and the virial as in
Nosé & Klein, Mol. Phys. 50, 1055 (1983)), minus each Gaussian's interaction with
itself, plus a uniform neutralising background when the cell is charged (Q = Σ q_i ≠ 0;
Hub et al., J. Chem. Theory Comput. 10, 381 (2014)), the conventions of torch-pme that
`nnip.physics.electrostatics.Coulomb` uses::

    E = Σ_{k ∈ half space} G(k) |S(k)|^2  -  k_e Σ_i q_i^2 / (√(2π) σ)  -  k_e π σ^2 Q^2 / V
    G(k) = k_e 4π exp(-σ^2 k^2 / 2) / (V k^2),   S(k) = Σ_j q_j exp(i k·r_j)

with k = n_1 b_1 + n_2 b_2 + n_3 b_3 (b reciprocal vectors including 2π), every k ≠ 0
with ``exp(-σ^2 k^2 / 2) >= accuracy`` and one of each pair ±k (factor 2 in G's sums
below). Then, with ``A + iB = S(k)`` and ``c_i + i s_i = exp(i k·r_i)``:

    φ_i = ∂E/∂q_i = Σ_k 2 G (A c_i + B s_i) - 2 k_e q_i / (√(2π) σ) - 2 k_e π σ^2 Q / V
    F_i = -∂E/∂r_i = Σ_k 2 G q_i k (A s_i - B c_i)
    W   = -∂E/∂ε   = Σ_k G |S|^2 (1 - 2 k k^T (1/k^2 + σ^2/2))  +  E_background 1

and E = ½ Σ_i q_i φ_i (E is quadratic in q), so per-atom energies are ½ q_i φ_i.
Cost: O(N N_k) with N_k ≈ V k_max^3 / (12 π^2) k-vectors (k_max = √(2 ln(1/accuracy))/σ).

φ is linear in q: φ = C q with the symmetric ``C (n, n)`` of `coulomb_matrix`, the
operator that charge equilibration (``charge_model: qeq``) solves with; `equilibrate`
gives its charges, energy, forces and virial, and what the package's second pass needs
(the derivation is in its docstring; LAMMPS runs the same steps with conjugate
gradients instead of a dense solve).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from nnip.physics.electrostatics import COULOMB_CONSTANT

__all__ = ["ACCURACY", "coulomb_matrix", "equilibrate", "ewald", "kvectors"]

ACCURACY = 1e-12
"""Default: k-vectors with ``exp(-σ^2 k^2 / 2)`` down to this are summed. Measured on a
rattled triclinic 48-ion cell (σ = 0.8 Å): energies, potentials, forces and virial
within ~1e-10 relative of torch-pme's Ewald sum (1e-8: ~5e-9)."""


def kvectors(cell: np.ndarray, smearing: float, accuracy: float = ACCURACY
             ) -> np.ndarray:
    """Half-space reciprocal vectors ``(n_k, 3)`` in 1/Å within the Gaussian's reach.

    One of each pair ±k, k ≠ 0, ``|k| <= √(2 ln(1/accuracy)) / σ``, in the order the C++
    sum visits them (n_1 ascending, then n_2, then n_3).

    Args:
        cell: ``(3, 3)`` Å, rows are lattice vectors.
        smearing: σ in Å.
        accuracy: smallest ``exp(-σ^2 k^2 / 2)`` kept.
    """
    k_max = math.sqrt(2.0 * math.log(1.0 / accuracy)) / smearing
    recip = 2.0 * math.pi * np.linalg.inv(cell).T  # rows b_d: a_i · b_j = 2π δ_ij
    # |n_d| = |k · a_d| / 2π <= k_max |a_d| / 2π
    n_max = np.floor(k_max * np.linalg.norm(cell, axis=1) / (2.0 * math.pi)).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in n_max], indexing="ij"),
                    axis=-1).reshape(-1, 3)  # (n_grid, 3), n_1 slowest
    half = (grid[:, 0] > 0) | ((grid[:, 0] == 0) & (grid[:, 1] > 0)) | \
        ((grid[:, 0] == 0) & (grid[:, 1] == 0) & (grid[:, 2] > 0))
    k = grid[half] @ recip  # (n_half, 3)
    return k[np.einsum("kd,kd->k", k, k) <= k_max * k_max]


def _blocks(pos: np.ndarray, cell: np.ndarray, sigma: float, accuracy: float, chunk: int):
    """Yield the reciprocal-space terms that `ewald` and `coulomb_matrix` sum.

    Per block of at most ``chunk`` k-vectors: ``k (m, 3)`` 1/Å, ``k² (m,)``, ``G (m,)``
    as in the module docstring, ``cos (m, n)`` and ``sin (m, n)`` of k·r.
    """
    volume = abs(float(np.linalg.det(cell)))
    k_all = kvectors(cell, sigma, accuracy)
    for start in range(0, len(k_all), chunk):
        k = k_all[start:start + chunk]
        k2 = np.einsum("kd,kd->k", k, k)
        g = COULOMB_CONSTANT * 4.0 * math.pi * np.exp(-0.5 * sigma * sigma * k2) / (volume * k2)
        phase = k @ pos.T
        yield k, k2, g, np.cos(phase), np.sin(phase)


def _self_and_background(cell: np.ndarray, sigma: float) -> tuple[float, float]:
    """The self-term and background factors of the sum.

    Returns ``k_e / (√(2π) σ)`` (a Gaussian's self term) and ``k_e π σ² / V`` (the
    neutralising background's factor), both eV/e² with σ in Å.
    """
    volume = abs(float(np.linalg.det(cell)))
    return (COULOMB_CONSTANT / (math.sqrt(2.0 * math.pi) * sigma),
            COULOMB_CONSTANT * math.pi * sigma * sigma / volume)


def ewald(positions: np.ndarray, charges: np.ndarray, cell: np.ndarray, smearing: float,
          accuracy: float = ACCURACY, chunk: int = 4096
          ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Energy, potentials, forces and virial of Gaussian charges in a 3D-periodic cell.

    Args:
        positions: ``(n_atoms, 3)`` Å.
        charges: ``(n_atoms,)`` e.
        cell: ``(3, 3)`` Å, rows are lattice vectors.
        smearing: σ in Å.
        accuracy: see `kvectors`.
        chunk: k-vectors per block (memory ~ 3 x 8 x chunk x n_atoms bytes).

    Returns:
        ``energy`` eV, ``potential (n_atoms,)`` eV/e (φ_i = ∂E/∂q_i), ``forces
        (n_atoms, 3)`` eV/Å (at fixed charges), ``virial (3, 3)`` eV (``-dE/dε``).
    """
    pos = np.asarray(positions, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    sigma = float(smearing)
    potential = np.zeros(len(q))
    forces = np.zeros((len(q), 3))
    virial = np.zeros((3, 3))
    for k, k2, g, cos, sin in _blocks(pos, cell, sigma, accuracy, chunk):
        a, b = cos @ q, sin @ q  # (m,): S(k) = A + iB
        potential += 2.0 * ((g * a) @ cos + (g * b) @ sin)
        forces += 2.0 * q[:, None] * ((sin.T * (g * a) - cos.T * (g * b)) @ k)  # (n, 3)
        s2 = g * (a * a + b * b)  # (m,) G |S|^2
        virial += s2.sum() * np.eye(3) - 2.0 * np.einsum(
            "k,kd,ke->de", s2 * (1.0 / k2 + 0.5 * sigma * sigma), k, k)
    total = q.sum()
    self_term, background = _self_and_background(cell, sigma)
    potential += -2.0 * self_term * q - 2.0 * background * total
    virial += -background * total * total * np.eye(3)
    energy = 0.5 * float(q @ potential)
    return energy, potential, forces, virial


def coulomb_matrix(positions: np.ndarray, cell: np.ndarray, smearing: float,
                   accuracy: float = ACCURACY, chunk: int = 4096) -> np.ndarray:
    """The symmetric matrix ``C (n_atoms, n_atoms)`` in eV/e² with ``φ = C q`` (`ewald`).

    ``C = Σ_k 2 G(k) (c cᵀ + s sᵀ) - 2 k_e / (√(2π) σ) 1 - 2 k_e π σ² / V 11ᵀ``: the
    Gaussians' periodic interaction without their self interaction, with the
    neutralising background. ``½ qᵀ C q`` is `ewald`'s energy. Memory n² doubles.
    """
    pos = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    sigma = float(smearing)
    matrix = np.zeros((len(pos), len(pos)))
    for _, _, g, cos, sin in _blocks(pos, cell, sigma, accuracy, chunk):
        matrix += 2.0 * ((cos.T * g) @ cos + (sin.T * g) @ sin)
    self_term, background = _self_and_background(cell, sigma)
    matrix -= 2.0 * self_term * np.eye(len(pos))
    matrix -= 2.0 * background
    return matrix


def equilibrate(positions: np.ndarray, cell: np.ndarray, raw: np.ndarray,
                hardness: np.ndarray, total_charge: float, smearing: float,
                chi_scale: float, energy: str = "coulomb", accuracy: float = ACCURACY,
                charge_gradient: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> dict[str, np.ndarray | float]:
    """Charge equilibration of a 3D-periodic cell, with its energy, forces and virial.

    As `nnip.physics.electrostatics.Electrostatics` with ``charge_model: qeq``: the
    electronegativities are ``χ = -chi_scale q̃``, ``H = C + diag(J + s₀)`` with
    ``s₀ = k_e √(2/π) / σ`` the Gaussian's self interaction (`coulomb_matrix` holds it
    subtracted), and the charges solve ``H q - μ 1 = -χ``, ``Σ q = Q``. With ``φ = C q``
    and ``g = ∂E_q/∂q`` the explicit charge derivative of a charge-dependent local
    energy summed elsewhere (``charge_gradient``; 0 without one):

    - ``energy="coulomb"`` (E = ½ qᵀ C q + E_q): differentiating the constrained solve,
      the adjoint ``λ`` (``H λ - ν 1 = φ + g``, ``Σ λ = 0``) gives
      ``dE = ½ qᵀ dC q - λᵀ dC q - λᵀ dχ = ½ (q-λ)ᵀ dC (q-λ) - ½ λᵀ dC λ - λᵀ dχ``
      (plus E_q's own position dependence at fixed q), so the fixed-charge forces and
      virial are `ewald`'s for ``q - λ`` minus those for ``λ``, and
      ``ψ = ∂E/∂q̃ = chi_scale λ``;
    - ``energy="full"`` (E = E_Qeq at its minimum, ``½ qᵀ C q + Σ χ q + ½ Σ (J + s₀) q²``,
      plus E_q): E_Qeq is stationary in q, so only E_q needs the adjoint
      (``H λ - ν 1 = g``); the forces are the same expression in ``q`` and ``λ`` and
      ``ψ = chi_scale (λ - q)`` (without a charge energy λ = 0: `ewald`'s forces at
      fixed q).

    Args:
        positions: ``(n, 3)`` Å.
        cell: ``(3, 3)`` Å, rows are lattice vectors.
        raw: ``(n,)`` the network's raw outputs q̃ (e).
        hardness: ``(n,)`` J in eV/e².
        total_charge: Q in e.
        smearing: σ in Å.
        chi_scale: d₀ in eV/e (``χ = -d₀ q̃``).
        energy: ``coulomb`` or ``full`` (the model's ``qeq_energy``).
        accuracy: see `kvectors`.
        charge_gradient: maps the charges ``(n,)`` e to ``g (n,)`` eV/e, the derivative
            of a charge-dependent local energy by each atom's charge (the compiled
            package's ``charge_energy`` entry), or None.

    Returns:
        ``charges (n,)`` e, ``energy`` eV, ``energies (n,)`` eV, ``forces (n, 3)`` eV/Å and
        ``virial (3, 3)`` eV at fixed q̃ (the electrostatic part, without E_q), ``psi
        (n,)`` eV/e (``∂E/∂q̃``, the input of the package's second pass).
    """
    if energy not in ("coulomb", "full"):
        raise ValueError(f"qeq energy must be 'coulomb' or 'full', got {energy!r}")
    pos = np.asarray(positions, dtype=np.float64)
    raw = np.asarray(raw, dtype=np.float64)
    n = len(raw)
    matrix = coulomb_matrix(pos, cell, smearing, accuracy)
    # + s₀ = 2 k_e / (√(2π) σ)
    diagonal = np.asarray(hardness, dtype=np.float64) + \
        2.0 * _self_and_background(cell, smearing)[0]
    chi = -chi_scale * raw
    system = np.zeros((n + 1, n + 1))
    system[:n, :n] = matrix + np.diag(diagonal)
    system[:n, n] = system[n, :n] = 1.0
    q = np.linalg.solve(system, np.concatenate([-chi, [total_charge]]))[:n]
    phi = matrix @ q
    energies = 0.5 * q * phi
    if energy == "full":
        energies = energies + q * (chi + 0.5 * diagonal * q)
    if energy == "full" and charge_gradient is None:  # stationary in q: forces at fixed q
        _, _, forces, virial = ewald(pos, q, cell, smearing, accuracy)
        psi = -chi_scale * q
    else:  # the adjoint of dE/dq: φ + g (coulomb) or g (full)
        gradient = np.zeros(n) if charge_gradient is None else \
            np.asarray(charge_gradient(q), dtype=np.float64)
        rhs = gradient if energy == "full" else phi + gradient
        adjoint = np.linalg.solve(system, np.concatenate([rhs, [0.0]]))[:n]
        _, _, forces, virial = ewald(pos, q - adjoint, cell, smearing, accuracy)
        _, _, forces_a, virial_a = ewald(pos, adjoint, cell, smearing, accuracy)
        forces, virial = forces - forces_a, virial - virial_a
        psi = chi_scale * (adjoint - q) if energy == "full" else chi_scale * adjoint
    return {"charges": q, "energy": float(energies.sum()), "energies": energies,
            "forces": forces, "virial": virial, "psi": psi}

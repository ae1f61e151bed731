"""Batched MD integrators: NVE velocity Verlet, Langevin (BAOAB), Nosé–Hoover chain.

State lives in torch tensors on the model's device; every integrator advances all
systems of a batch at once, with per-system thermostat variables. Units: positions Å,
velocities Å/fs, masses amu, forces eV/Å, energies eV, time fs, temperature K.

References:
    Swope, Andersen, Berens, Wilson, J. Chem. Phys. 76, 637 (1982) (velocity Verlet);
    Leimkuhler & Matthews, Appl. Math. Res. Express 2013, 34 (BAOAB);
    Martyna, Klein, Tuckerman, J. Chem. Phys. 97, 2635 (1992) (Nosé–Hoover chains), in
    the Trotter form of Frenkel & Smit, Understanding Molecular Simulation, app. E.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from ase import units

__all__ = ["ACCEL", "MDState", "VelocityVerlet", "Langevin", "LangevinNPT", "NoseHooverChain",
           "Integrator", "kinetic_energy", "pressure_tensor", "temperature"]

ACCEL = units.fs**2
"""Acceleration in Å/fs² per (eV/Å)/amu."""
_KE = 0.5 / units.fs**2
"""Kinetic energy in eV per amu·(Å/fs)²."""


@dataclass
class MDState:
    """Positions, velocities and the latest model outputs of a batch of systems.

    Attributes:
        positions: ``(n_atoms, 3)`` Å.
        velocities: ``(n_atoms, 3)`` Å/fs.
        masses: ``(n_atoms,)`` amu.
        atomic_numbers: ``(n_atoms,)`` int64.
        system_idx: ``(n_atoms,)`` int64, sorted.
        cell: ``(n_systems, 3, 3)`` Å, rows are lattice vectors.
        pbc: ``(n_systems, 3)`` bool.
        total_charge: ``(n_systems,)`` e.
        forces: ``(n_atoms, 3)`` eV/Å at ``positions``.
        energy: ``(n_systems,)`` potential energy, eV.
        stress: ``(n_systems, 3, 3)`` eV/Å³ (ASE sign) or ``None``.
        forces_uncertainty: ``(n_atoms,)`` eV/Å committee force spread, or ``None``.
        time_fs: simulated time.
        step: steps done.
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    masses: torch.Tensor
    atomic_numbers: torch.Tensor
    system_idx: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    total_charge: torch.Tensor
    forces: torch.Tensor
    energy: torch.Tensor
    stress: torch.Tensor | None = None
    forces_uncertainty: torch.Tensor | None = None
    time_fs: float = 0.0
    step: int = 0

    @property
    def n_systems(self) -> int:
        """Number of systems in the batch."""
        return int(self.cell.shape[0])

    def per_system(self, values: torch.Tensor) -> torch.Tensor:
        """Sum per-atom ``values`` ``(n_atoms, ...)`` over each system: ``(n_systems, ...)``."""
        out = values.new_zeros((self.n_systems, *values.shape[1:]))
        return out.index_add(0, self.system_idx, values)

    def degrees_of_freedom(self) -> torch.Tensor:
        """``(n_systems,)`` 3N - 3 (centre-of-mass momentum is removed and conserved)."""
        n = torch.bincount(self.system_idx, minlength=self.n_systems).to(self.masses.dtype)
        return (3.0 * n - 3.0).clamp_min(1.0)


def kinetic_energy(state: MDState) -> torch.Tensor:
    """``(n_systems,)`` kinetic energy in eV."""
    return _KE * state.per_system(state.masses * (state.velocities**2).sum(-1))


def pressure_tensor(state: MDState) -> torch.Tensor:
    """``(n_systems, 3, 3)`` instantaneous pressure tensor in GPa.

    The kinetic part ``sum m v v / V`` minus the stress (ASE's stress holds the virial
    part only). Needs ``state.stress``; infinite or NaN for systems without a volume.
    """
    volume = torch.linalg.det(state.cell).abs()  # (n_systems,)
    mv = state.masses[:, None, None] * state.velocities[:, :, None] \
        * state.velocities[:, None, :]  # (n_atoms, 3, 3) amu Å²/fs²
    kinetic = 2.0 * _KE * state.per_system(mv) / volume[:, None, None]  # eV/Å³
    return (kinetic - state.stress) / units.GPa


def temperature(state: MDState) -> torch.Tensor:
    """``(n_systems,)`` instantaneous temperature in K, 2 KE / (N_dof k_B)."""
    return 2.0 * kinetic_energy(state) / (state.degrees_of_freedom() * units.kB)


Compute = Callable[[MDState], None]
"""Recompute ``state.forces``, ``state.energy`` (and stress) at ``state.positions``."""


class Integrator:
    """Base: one step of ``timestep_fs``; ``compute`` updates the forces in place."""

    timestep_fs: float

    def step(self, state: MDState, compute: Compute) -> None:  # pragma: no cover
        """Advance ``state`` by one time step."""
        raise NotImplementedError

    def conserved_extra(self, state: MDState) -> torch.Tensor:
        """``(n_systems,)`` eV added to E_pot + E_kin to get the conserved quantity."""
        return torch.zeros(state.n_systems, dtype=state.energy.dtype,
                           device=state.energy.device)

    def _kick(self, state: MDState, dt: float) -> None:
        state.velocities += (ACCEL * dt) * state.forces / state.masses[:, None]


class VelocityVerlet(Integrator):
    """NVE velocity Verlet; error in energy O(dt²).

    Args:
        timestep_fs: time step in fs.
    """

    def __init__(self, timestep_fs: float) -> None:
        _positive("timestep_fs", timestep_fs)
        self.timestep_fs = float(timestep_fs)

    def step(self, state: MDState, compute: Compute) -> None:
        """Advance ``state`` by one time step."""
        dt = self.timestep_fs
        self._kick(state, 0.5 * dt)
        state.positions += dt * state.velocities
        compute(state)
        self._kick(state, 0.5 * dt)


class Langevin(Integrator):
    """NVT Langevin dynamics, BAOAB splitting (accurate configurational sampling).

    Args:
        timestep_fs: time step in fs.
        temperature_K: target temperature, a float or one per system.
        friction_per_fs: friction coefficient gamma in 1/fs (0.01 = a 100 fs relaxation).
        seed: seed of the random forces.
    """

    def __init__(self, timestep_fs: float, temperature_K: float | list[float],
                 friction_per_fs: float = 0.01, seed: int = 0) -> None:
        _positive("timestep_fs", timestep_fs)
        _positive("friction_per_fs", friction_per_fs)
        self.timestep_fs = float(timestep_fs)
        self.temperature_K = temperature_K
        self.friction_per_fs = float(friction_per_fs)
        self.generator: torch.Generator | None = None
        self.seed = int(seed)

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        if self.generator is None or self.generator.device != like.device:
            self.generator = torch.Generator(device=like.device).manual_seed(self.seed)
        return torch.randn(like.shape, dtype=like.dtype, device=like.device,
                           generator=self.generator)

    def step(self, state: MDState, compute: Compute) -> None:
        """Advance ``state`` by one time step (B A O A, hook, force call, B)."""
        dt = self.timestep_fs
        kT = units.kB * _per_system(self.temperature_K, state)[state.system_idx]  # (n_atoms,)
        c1 = math.exp(-self.friction_per_fs * dt)
        sigma = torch.sqrt((1.0 - c1 * c1) * kT / state.masses) * units.fs  # Å/fs
        self._kick(state, 0.5 * dt)
        state.positions += 0.5 * dt * state.velocities
        state.velocities.mul_(c1).add_(sigma[:, None] * self._noise(state.velocities))
        _remove_drift(state)  # as ASE's fixcm: keeps N_dof = 3N - 3 exact
        state.positions += 0.5 * dt * state.velocities
        self._before_force(state)
        compute(state)
        self._kick(state, 0.5 * dt)

    def _before_force(self, state: MDState) -> None:
        """Hook between the position update and the force call (the NPT barostat)."""


class NoseHooverChain(Integrator):
    """NVT Nosé–Hoover chain (deterministic, canonical sampling for ergodic systems).

    Thermostat masses ``Q_1 = N_dof kT tau²``, ``Q_k = kT tau²``; the chain is
    propagated by half steps around a velocity-Verlet step. `conserved_extra` gives the
    thermostat energy, so E_pot + E_kin + extra is conserved (a check of the time step).

    Args:
        timestep_fs: time step in fs.
        temperature_K: target temperature, a float or one per system.
        tdamp_fs: thermostat time constant in fs (~100 time steps is usual).
        chain_length: number of thermostats in the chain.
    """

    def __init__(self, timestep_fs: float, temperature_K: float | list[float],
                 tdamp_fs: float = 100.0, chain_length: int = 3) -> None:
        _positive("timestep_fs", timestep_fs)
        _positive("tdamp_fs", tdamp_fs)
        if chain_length < 1:
            raise ValueError(f"chain_length must be >= 1, got {chain_length}")
        self.timestep_fs = float(timestep_fs)
        self.temperature_K = temperature_K
        self.tdamp_fs = float(tdamp_fs)
        self.chain_length = int(chain_length)
        self.xi: torch.Tensor | None = None  # (n_systems, M) thermostat positions
        self.v_xi: torch.Tensor | None = None  # (n_systems, M) 1/fs

    def _masses(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        kT = units.kB * _per_system(self.temperature_K, state)  # (n_systems,)
        q = (kT * self.tdamp_fs**2)[:, None].repeat(1, self.chain_length)  # eV fs²
        q[:, 0] *= state.degrees_of_freedom()
        return kT, q

    def _half_chain(self, state: MDState, dt: float) -> None:
        """Propagate the chain and scale the velocities over ``dt`` (half a step)."""
        kT, q = self._masses(state)
        if self.xi is None:
            self.xi = torch.zeros_like(q)
            self.v_xi = torch.zeros_like(q)
        v, m = self.v_xi, self.chain_length
        n_dof = state.degrees_of_freedom()
        ke2 = 2.0 * kinetic_energy(state)  # eV
        force = lambda k: ((ke2 - n_dof * kT) if k == 0 else  # noqa: E731
                           (q[:, k - 1] * v[:, k - 1] ** 2 - kT)) / q[:, k]
        quarter, eighth = 0.5 * dt, 0.25 * dt
        v[:, m - 1] += force(m - 1) * quarter
        for k in range(m - 2, -1, -1):
            damp = torch.exp(-v[:, k + 1] * eighth)
            v[:, k] = (v[:, k] * damp + force(k) * quarter) * damp
        self.xi += v * dt
        scale = torch.exp(-v[:, 0] * dt)  # (n_systems,)
        state.velocities *= scale[state.system_idx, None]
        ke2 = ke2 * scale**2
        for k in range(m - 1):
            damp = torch.exp(-v[:, k + 1] * eighth)
            v[:, k] = (v[:, k] * damp + force(k) * quarter) * damp
        v[:, m - 1] += force(m - 1) * quarter

    def step(self, state: MDState, compute: Compute) -> None:
        """Advance ``state`` by one time step."""
        dt = self.timestep_fs
        self._half_chain(state, 0.5 * dt)
        self._kick(state, 0.5 * dt)
        state.positions += dt * state.velocities
        compute(state)
        self._kick(state, 0.5 * dt)
        self._half_chain(state, 0.5 * dt)

    def conserved_extra(self, state: MDState) -> torch.Tensor:
        """Thermostat energy ``sum_k Q_k v_k²/2 + N_dof kT xi_1 + kT sum_{k>1} xi_k`` (eV)."""
        if self.xi is None:
            return super().conserved_extra(state)
        kT, q = self._masses(state)
        extra = 0.5 * (q * self.v_xi**2).sum(-1) + kT * self.xi[:, 1:].sum(-1)
        return extra + state.degrees_of_freedom() * kT * self.xi[:, 0]


class LangevinNPT(Langevin):
    """NPT: Langevin thermostat (BAOAB) with a stochastic cell rescaling barostat.

    The barostat (Bernetti & Bussi, J. Chem. Phys. 153, 114107 (2020)) moves
    ``eps = ln V`` by ``d eps = -(beta/tau_p) (P0 - P - kT/V) dt + sqrt(2 kT beta dt /
    (V tau_p)) xi`` once per step, just before the force call, and scales positions and
    cell by ``exp(d eps / 3)`` and velocities by its inverse. ``P`` is the instantaneous
    pressure (virial plus kinetic). With ``anisotropic=True`` each Cartesian axis has its
    own ``eps_a`` driven by ``P_aa`` (rates ``beta / (3 tau_p)``), so orthorhombic cells
    can change shape (shear components of the cell are kept).
    The relaxation time and compressibility set how fast the volume responds; they do
    not change the sampled ensemble.

    Args:
        timestep_fs: time step in fs.
        temperature_K: target temperature (one or one per system).
        pressure_GPa: target pressure (one or one per system).
        friction_per_fs: Langevin friction.
        tau_p_fs: barostat relaxation time (~1000 fs; >= 100 time steps).
        compressibility_per_GPa: an estimate of the isothermal compressibility 1/B
            (metals ~0.01, liquid water ~0.45, liquid argon ~0.3).
        anisotropic: independent axes instead of isotropic scaling.
        seed: seed of the thermostat and barostat noise.
    """

    def __init__(self, timestep_fs: float, temperature_K: float | list[float],
                 pressure_GPa: float | list[float] = 0.0, friction_per_fs: float = 0.01,
                 tau_p_fs: float = 1000.0, compressibility_per_GPa: float = 0.01,
                 anisotropic: bool = False, seed: int = 0) -> None:
        super().__init__(timestep_fs, temperature_K, friction_per_fs, seed)
        _positive("tau_p_fs", tau_p_fs)
        _positive("compressibility_per_GPa", compressibility_per_GPa)
        self.pressure_GPa = pressure_GPa
        self.tau_p_fs = float(tau_p_fs)
        self.compressibility = float(compressibility_per_GPa)
        self.anisotropic = bool(anisotropic)

    def _rescale(self, state: MDState) -> None:
        dt = self.timestep_fs
        kT = units.kB * _per_system(self.temperature_K, state)  # (n_systems,) eV
        volume = torch.linalg.det(state.cell).abs()
        kT_over_V = kT / volume / units.GPa  # GPa
        p0 = _per_system(self.pressure_GPa, state)
        if state.stress is None:
            raise ValueError("NPT needs the stress: periodic systems only")
        pressure = pressure_tensor(state)
        rate = self.compressibility / self.tau_p_fs  # 1/(GPa fs)
        if self.anisotropic:
            p_axes = torch.diagonal(pressure, dim1=1, dim2=2)  # (n_systems, 3)
            drift = -(rate / 3.0) * (p0[:, None] - p_axes - kT_over_V[:, None]) * dt
            noise = torch.sqrt(2.0 * kT_over_V * rate * dt / 3.0)[:, None] \
                * self._noise(p_axes)
            scale = torch.exp(drift + noise)  # (n_systems, 3) per axis
        else:
            p_iso = torch.diagonal(pressure, dim1=1, dim2=2).mean(-1)
            drift = -rate * (p0 - p_iso - kT_over_V) * dt
            noise = torch.sqrt(2.0 * kT_over_V * rate * dt) * self._noise(p_iso)
            scale = torch.exp((drift + noise) / 3.0)[:, None].expand(-1, 3)
        state.positions *= scale[state.system_idx]
        state.velocities /= scale[state.system_idx]
        state.cell = state.cell * scale[:, None, :]

    def _before_force(self, state: MDState) -> None:
        self._rescale(state)


def _remove_drift(state: MDState) -> None:
    """Subtract each system's centre-of-mass velocity."""
    momentum = state.per_system(state.masses[:, None] * state.velocities)  # (n_systems, 3)
    mass = state.per_system(state.masses)  # (n_systems,)
    state.velocities -= (momentum / mass[:, None])[state.system_idx]


def _per_system(value: float | list[float] | torch.Tensor, state: MDState) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=state.masses.dtype, device=state.masses.device)
    if t.ndim == 0:
        return t.expand(state.n_systems)
    if t.shape != (state.n_systems,):
        raise ValueError(f"expected one value or {state.n_systems} (one per system), "
                         f"got shape {tuple(t.shape)}")
    return t


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")

"""The MD driver: a batch of systems, a neighbour list with a skin, writers, stop checks.

Example::

    from nnip.md import MD, Langevin
    md = MD(model, [atoms] * 8, Langevin(timestep_fs=1.0, temperature_K=300),
            temperature_K=300, trajectory="traj.extxyz", log="thermo.csv")
    result = md.run(10_000)
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.trajectory import Trajectory

from nnip.data.graph import AtomicGraph
from nnip.data.neighbors import batch_neighbor_list
from nnip.errors import DataError
from nnip.md.integrators import (
    Integrator,
    LangevinNPT,
    MDState,
    kinetic_energy,
    pressure_tensor,
    temperature,
)
from nnip.models.functional import compiled_forces
from nnip.models.potential import Potential

__all__ = ["ENSEMBLES", "MD", "MDResult", "maxwell_boltzmann", "simulate"]

@dataclass
class MDResult:
    """What a run did.

    Attributes:
        steps: steps done in this call.
        stopped: why the run stopped early (``None``: it ran all steps).
        seconds: wall time of this call.
        ns_per_day: simulated ns per wall-clock day (per system).
        neighbor_rebuilds: neighbour-list builds in this call.
    """

    steps: int
    stopped: str | None
    seconds: float
    ns_per_day: float
    neighbor_rebuilds: int


def maxwell_boltzmann(masses: np.ndarray, temperature_K: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Maxwell–Boltzmann velocities ``(n_atoms, 3)`` in Å/fs, zero total momentum.

    Args:
        masses: ``(n_atoms,)`` amu.
        temperature_K: temperature of the distribution.
        rng: random generator.
    """
    masses = np.asarray(masses, dtype=np.float64)
    sigma = np.sqrt(units.kB * temperature_K / masses) * units.fs  # Å/fs
    v = rng.standard_normal((len(masses), 3)) * sigma[:, None]
    v -= (masses[:, None] * v).sum(0) / masses.sum()
    return v


class MD:
    """Molecular dynamics of one or many systems with a `Potential`, on its device.

    Args:
        model: the potential (its device and dtype are used).
        structures: one `ase.Atoms` or several (replicas or different systems); their
            momenta are used when set, else ``temperature_K`` draws velocities.
        integrator: `VelocityVerlet`, `Langevin`, `NoseHooverChain`.
        temperature_K: initial Maxwell–Boltzmann temperature for structures without
            momenta (0: start at rest).
        skin_A: neighbour-list skin in Å; the list (cutoff + skin) is rebuilt only when
            an atom has moved more than half the skin since the last build.
        trajectory: extxyz or ASE ``.traj`` path; with several systems one file per
            system (``name_000.extxyz`` ...). Frames carry energy, forces, stress.
        log: CSV thermo log path (step, time_fs, system, temperature_K, epot_eV,
            ekin_eV, etot_eV, conserved_eV, pressure_GPa, volume_A3).
        write_every: steps between trajectory frames, log lines and stop checks.
        min_distance_A: stop when two atoms come closer than this.
        max_temperature_K: stop when a system gets hotter than this.
        max_uncertainty_eV_per_A: with a `Committee`: the largest per-atom force spread
            that counts as trusted (0: no check); larger spreads stop the run, or with
            ``stop_on_uncertain=False`` are only counted (``uncertain_frames``) and
            flagged in the trajectory (``info["uncertain"]``).
        stop_on_uncertain: stop (default) or flag on an uncertain prediction.
        seed: seed of the initial velocities.
        progress: show a progress bar with ns/day.
        compile: evaluate forces through ``torch.compile``
            (`nnip.models.functional.FunctionalForces`; committees too): 2–3x faster
            steps for PaiNN and SchNet after a compilation at the first step.
    """

    def __init__(self, model: Potential, structures: Atoms | Sequence[Atoms],
                 integrator: Integrator, *, temperature_K: float = 0.0, skin_A: float = 1.0,
                 trajectory: str | Path | None = None, log: str | Path | None = None,
                 write_every: int = 10, min_distance_A: float = 0.5,
                 max_temperature_K: float = 1e4, max_uncertainty_eV_per_A: float = 0.0,
                 stop_on_uncertain: bool = True, seed: int = 0, progress: bool = True,
                 compile: bool = False) -> None:
        frames = [structures] if isinstance(structures, Atoms) else list(structures)
        if not frames:
            raise DataError("MD needs at least one structure")
        if write_every < 1:
            raise ValueError(f"write_every must be >= 1, got {write_every}")
        model.check_elements(frames)
        self.model, self.integrator = model, integrator
        self.functional = compiled_forces(model) if compile else None
        self.frames = [a.copy() for a in frames]
        self.skin = float(skin_A)
        self.write_every, self.progress = int(write_every), progress
        self.min_distance, self.max_temperature = float(min_distance_A), float(max_temperature_K)
        self.max_uncertainty, self.stop_on_uncertain = float(max_uncertainty_eV_per_A), \
            bool(stop_on_uncertain)
        self.uncertain_frames = 0  # checks (per system) above max_uncertainty_eV_per_A
        self.device = model.device
        self.state = self._initial_state(temperature_K, np.random.default_rng(seed))
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None
        self._built_at: torch.Tensor | None = None
        self.rebuilds = 0
        self.need_stress = bool(self.state.pbc.all(dim=1).any())
        if isinstance(integrator, LangevinNPT) and not bool(self.state.pbc.all()):
            bad = int(torch.nonzero(~self.state.pbc.all(dim=1))[0])
            raise DataError("NPT needs periodic cells in all three directions", index=bad,
                            field="pbc")
        self._traj_paths = _trajectory_paths(trajectory, len(frames))
        self._log_path = Path(log) if log is not None else None
        self._compute(self.state)

    # ------------------------------------------------------------------ set-up
    def _initial_state(self, temperature_K: float, rng: np.random.Generator) -> MDState:
        dev, f64 = self.device, torch.float64
        velocities = []
        for atoms in self.frames:
            masses = atoms.get_masses()
            if atoms.has("momenta") and np.abs(atoms.get_momenta()).sum() > 0:
                velocities.append(atoms.get_velocities() * units.fs)  # ASE units -> Å/fs
            elif temperature_K > 0:
                velocities.append(maxwell_boltzmann(masses, temperature_K, rng))
            else:
                velocities.append(np.zeros((len(atoms), 3)))
        cat = lambda xs, dt=f64: torch.as_tensor(np.concatenate(xs), dtype=dt, device=dev)  # noqa: E731
        n = len(self.frames)
        return MDState(
            positions=cat([a.positions for a in self.frames]),
            velocities=cat(velocities),
            masses=cat([a.get_masses() for a in self.frames]),
            atomic_numbers=cat([a.numbers for a in self.frames], torch.int64),
            system_idx=cat([np.full(len(a), k) for k, a in enumerate(self.frames)],
                           torch.int64),
            cell=cat([a.cell.array[None] for a in self.frames]),
            pbc=cat([a.pbc[None] for a in self.frames], torch.bool),
            total_charge=torch.tensor([float(a.info.get("total_charge", 0.0))
                                       for a in self.frames], dtype=f64, device=dev),
            forces=torch.zeros((sum(len(a) for a in self.frames), 3), dtype=f64, device=dev),
            energy=torch.zeros(n, dtype=f64, device=dev),
        )

    # ------------------------------------------------------------- neighbours
    def _neighbors(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges within cutoff + skin, rebuilt only when an atom moved > skin / 2."""
        if self._built_at is not None and self._edges is not None:
            moved = (state.positions - self._built_at).norm(dim=-1).max()
            stretch = 0.0
            if not torch.equal(state.cell, self._cell_built):
                # A changed cell (NPT, periodic only) moves images: bound that by the strain.
                strain = torch.linalg.solve(self._cell_built, state.cell) - torch.eye(
                    3, dtype=state.cell.dtype, device=state.cell.device)
                stretch = torch.linalg.matrix_norm(strain, ord=2).max() * (
                    self.model.cutoff + self.skin)
            if float(moved + stretch) <= 0.5 * self.skin:
                return self._edges
        self._edges = batch_neighbor_list(state.positions, state.cell, state.pbc,
                                          state.system_idx, self.model.cutoff + self.skin,
                                          source="MD system")
        self._built_at = state.positions.detach().clone()
        self._cell_built = state.cell.detach().clone()
        self.rebuilds += 1
        return self._edges

    def _graph(self, state: MDState, edge_index: torch.Tensor, edge_shift: torch.Tensor
               ) -> AtomicGraph:
        return AtomicGraph(positions=state.positions, atomic_numbers=state.atomic_numbers,
                           system_idx=state.system_idx, cell=state.cell, pbc=state.pbc,
                           total_charge=state.total_charge, edge_index=edge_index,
                           edge_shift=edge_shift)

    def _compute(self, state: MDState) -> None:
        edge_index, edge_shift = self._neighbors(state)
        with torch.no_grad():  # the model sees only pairs within the cutoff (fewer edges)
            r = self._graph(state, edge_index, edge_shift).edge_vectors().norm(dim=-1)
            inside = r < self.model.cutoff
        graph = self._graph(state, edge_index[:, inside], edge_shift[inside])
        if self.functional is not None:
            out = self.functional(graph, compute_stress=self.need_stress, training=False)
        else:
            out = self.model(graph, compute_forces=True, compute_stress=self.need_stress)
        state.forces, state.energy = out.forces.detach(), out.energy.detach()
        state.stress = out.stress.detach() if out.stress is not None else None
        if out.forces_uncertainty is not None:
            state.forces_uncertainty = out.forces_uncertainty.detach()

    # ---------------------------------------------------------------- running
    def thermo(self) -> dict[str, np.ndarray]:
        """Per-system observables now, each ``(n_systems,)``.

        Temperature (K), energies (eV), pressure (GPa, with the kinetic term; NaN
        without a cell), volume (Å³, NaN without a cell), minimum distance (Å).
        """
        s = self.state
        ekin = kinetic_energy(s)
        volume = torch.linalg.det(s.cell).abs()
        periodic = s.pbc.all(dim=1)
        out = {"temperature_K": temperature(s), "epot_eV": s.energy, "ekin_eV": ekin,
               "etot_eV": s.energy + ekin,
               "conserved_eV": s.energy + ekin + self.integrator.conserved_extra(s),
               "volume_A3": torch.where(periodic, volume, torch.full_like(volume, math.nan))}
        if s.stress is not None:  # trace / 3 of the pressure tensor, kinetic part included
            pressure = torch.diagonal(pressure_tensor(s), dim1=1, dim2=2).mean(-1)
            out["pressure_GPa"] = torch.where(periodic, pressure,
                                              torch.full_like(pressure, math.nan))
        else:
            out["pressure_GPa"] = torch.full_like(volume, math.nan)
        out["min_distance_A"] = self._min_distances()
        if s.forces_uncertainty is not None:  # a committee: largest per-atom force spread
            spread = torch.zeros(s.n_systems, dtype=s.forces_uncertainty.dtype,
                                 device=s.forces_uncertainty.device)
            out["max_force_uncertainty_eV_per_A"] = spread.scatter_reduce(
                0, s.system_idx, s.forces_uncertainty, reduce="amax")
        return {k: v.detach().cpu().numpy() for k, v in out.items()}

    def _min_distances(self) -> torch.Tensor:
        s = self.state
        edge_index, edge_shift = self._edges
        r = self._graph(s, edge_index, edge_shift).edge_vectors().norm(dim=-1)
        out = torch.full((s.n_systems,), math.inf, dtype=r.dtype, device=r.device)
        return out.scatter_reduce(0, s.system_idx[edge_index[0]], r, reduce="amin")

    def _failures(self, thermo: dict[str, np.ndarray]) -> dict[int, str]:
        """Every system that fails a check, with the reason; counts uncertain frames."""
        s = self.state
        failures: dict[int, str] = {}
        for k in range(s.n_systems):
            where = f"system {k} at step {s.step} ({s.time_fs:g} fs)"
            if not np.isfinite(thermo["epot_eV"][k]) or not np.isfinite(thermo["ekin_eV"][k]):
                failures[k] = f"non-finite energy in {where}"
            elif thermo["temperature_K"][k] > self.max_temperature:
                failures[k] = (f"temperature {thermo['temperature_K'][k]:.0f} K exceeds "
                               f"max_temperature_K {self.max_temperature:g} in {where}")
            elif thermo["min_distance_A"][k] < self.min_distance:
                failures[k] = (f"two atoms {thermo['min_distance_A'][k]:.3f} Å apart (less "
                               f"than min_distance_A {self.min_distance:g}) in {where}")
            spread = thermo.get("max_force_uncertainty_eV_per_A")
            if (self.max_uncertainty and spread is not None
                    and spread[k] > self.max_uncertainty):
                self.uncertain_frames += 1
                if self.stop_on_uncertain and k not in failures:
                    failures[k] = (f"force uncertainty {spread[k]:.3f} eV/Å exceeds "
                                   f"max_uncertainty_eV_per_A {self.max_uncertainty:g} in {where}")
        return failures

    def _check(self, thermo: dict[str, np.ndarray]) -> str | None:
        return next(iter(self._failures(thermo).values()), None)

    def failing_systems(self) -> dict[int, str]:
        """The systems that fail the run's checks now, each with the reason.

        After a run stopped early (``MDResult.stopped`` names only the first), this tells
        which systems of the batch broke down (non-finite positions or energy,
        overheating, atoms too close) and which can go on, e.g. in a new `MD` of the
        others. Does not count uncertain frames or write anything.

        Returns:
            ``{system index: reason}``; empty when every system passes.
        """
        s = self.state
        pos = s.positions.detach()
        finite = torch.ones(s.n_systems, dtype=torch.bool, device=pos.device)
        finite = finite.scatter_reduce(0, s.system_idx, torch.isfinite(pos).all(dim=1),
                                       reduce="amin")
        failures = {int(k): f"non-finite positions in system {int(k)} at step {s.step}"
                    for k in torch.nonzero(~finite).flatten().tolist()}
        counted = self.uncertain_frames
        for k, reason in self._failures(self.thermo()).items():
            failures.setdefault(k, reason)
        self.uncertain_frames = counted
        return failures

    def run(self, steps: int) -> MDResult:
        """Run ``steps`` steps, writing and checking every ``write_every``.

        Stops early with a message on NaN, overheating or atoms too close, keeping what
        was written so far.

        Returns:
            `MDResult`; ``stopped`` holds the reason of an early stop.
        """
        start, done, rebuilds0 = time.perf_counter(), 0, self.rebuilds
        bar = _MDBar(self.progress, steps)
        stopped = None
        try:
            if self.state.step == 0:
                stopped = self._observe()
            while done < steps and stopped is None:
                try:
                    self.integrator.step(self.state, self._compute)
                except DataError as err:  # e.g. non-finite positions at the list rebuild
                    stopped = f"{err} (step {self.state.step + 1})"
                    break
                self.state.step += 1
                self.state.time_fs += self.integrator.timestep_fs
                done += 1
                if self.state.step % self.write_every == 0:
                    stopped = self._observe()
                    elapsed = time.perf_counter() - start
                    bar.update(done, self._ns_per_day(done, elapsed))
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        if stopped:
            print(f"nnip md: stopped: {stopped}", file=sys.stderr)
        return MDResult(done, stopped, seconds, self._ns_per_day(done, seconds),
                        self.rebuilds - rebuilds0)

    def _ns_per_day(self, steps: int, seconds: float) -> float:
        return steps * self.integrator.timestep_fs * 1e-6 / max(seconds, 1e-9) * 86400.0

    def _observe(self) -> str | None:
        thermo = self.thermo()
        self._write_log(thermo)
        self._write_frames()
        return self._check(thermo)

    def atoms(self) -> list[Atoms]:
        """The current structures as `ase.Atoms`.

        With velocities, and a single-point calculator holding energy, forces, stress.
        """
        s = self.state
        pos = s.positions.detach().cpu().numpy()
        vel = s.velocities.detach().cpu().numpy() / units.fs  # Å/fs -> ASE units
        forces = s.forces.cpu().numpy()
        idx = s.system_idx.cpu().numpy()
        out = []
        for k, template in enumerate(self.frames):
            sel = idx == k
            atoms = template.copy()
            atoms.positions = pos[sel]
            atoms.cell = s.cell[k].cpu().numpy()
            atoms.set_velocities(vel[sel])
            results = {"energy": float(s.energy[k]), "forces": forces[sel]}
            if s.stress is not None and bool(s.pbc[k].all()):
                results["stress"] = s.stress[k].cpu().numpy()
            atoms.calc = SinglePointCalculator(atoms, **results)
            atoms.info.update(step=s.step, time_fs=s.time_fs)
            if s.forces_uncertainty is not None:
                spread = s.forces_uncertainty.cpu().numpy()[sel]
                atoms.arrays["forces_uncertainty"] = spread
                atoms.info["max_force_uncertainty"] = float(spread.max())
                if self.max_uncertainty:
                    atoms.info["uncertain"] = bool(spread.max() > self.max_uncertainty)
            out.append(atoms)
        return out

    def _write_frames(self) -> None:
        if not self._traj_paths:
            return
        for atoms, path in zip(self.atoms(), self._traj_paths):
            if path.suffix == ".traj":  # ASE's binary trajectory: append mode
                with Trajectory(path, "a") as traj:
                    traj.write(atoms)
            else:
                ase.io.write(path, atoms, append=path.exists() and path.stat().st_size > 0)

    def _write_log(self, thermo: dict[str, np.ndarray]) -> None:
        if self._log_path is None:
            return
        keys = ["temperature_K", "epot_eV", "ekin_eV", "etot_eV", "conserved_eV",
                "pressure_GPa", "volume_A3"]
        if "max_force_uncertainty_eV_per_A" in thermo:
            keys.append("max_force_uncertainty_eV_per_A")
        new = not self._log_path.exists() or self._log_path.stat().st_size == 0
        with open(self._log_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "time_fs", "system", *keys])
            for k in range(self.state.n_systems):
                writer.writerow([self.state.step, f"{self.state.time_fs:g}", k,
                                 *(f"{thermo[key][k]:.10g}" for key in keys)])


def _trajectory_paths(path: str | Path | None, n: int) -> list[Path]:
    if path is None:
        return []
    path = Path(path)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{k:03d}{path.suffix}") for k in range(n)]


class _MDBar:
    def __init__(self, enabled: bool, total: int) -> None:
        from rich.console import Console

        self.live = enabled and Console(stderr=True).is_terminal
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("MD"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total} steps"),
                                     TextColumn("{task.description}"), TimeRemainingColumn(),
                                     console=Console(stderr=True))
            self.task = self.progress.add_task("", total=total)
            self.progress.start()

    def update(self, done: int, ns_per_day: float) -> None:
        if self.live:
            self.progress.update(self.task, completed=done,
                                 description=f"{ns_per_day:.3g} ns/day")

    def close(self) -> None:
        if self.live:
            self.progress.stop()


ENSEMBLES = ("nve", "nvt", "nvt-nh", "npt")
"""``nve`` velocity Verlet, ``nvt`` Langevin (BAOAB), ``nvt-nh`` Nosé–Hoover chain,
``npt`` Langevin + stochastic cell rescaling."""


def simulate(model: Potential, structure: Atoms, out_dir: str | Path, *, steps: int,
             ensemble: str = "nvt", temperature_K: float = 300.0, timestep_fs: float = 1.0,
             replicas: int = 1, friction_per_fs: float = 0.01, tdamp_fs: float = 100.0,
             pressure_GPa: float = 0.0, tau_p_fs: float = 1000.0,
             compressibility_per_GPa: float = 0.01, anisotropic: bool = False,
             write_every: int = 10, skin_A: float = 1.0, min_distance_A: float = 0.5,
             seed: int = 0, progress: bool = True, compile: bool = False) -> MDResult:
    """Run (or continue) an MD simulation into ``out_dir``: what ``nnip md`` does.

    Writes ``trajectory.extxyz`` (``trajectory_000.extxyz`` ... with replicas) and
    ``thermo.csv``. When ``out_dir`` already holds trajectories, the run continues from
    their last frames (positions, velocities, cell, step) up to ``steps`` in total;
    thermostat internal variables restart from zero.

    Args:
        model: the potential.
        structure: starting structure; replicas start from it with independent
            Maxwell–Boltzmann velocities at ``temperature_K``.
        out_dir: output folder.
        steps: total number of steps (including those of earlier runs).
        ensemble: ``nve``, ``nvt`` (Langevin), ``nvt-nh`` (Nosé–Hoover chain) or ``npt``
            (Langevin + stochastic cell rescaling, `LangevinNPT`).
        temperature_K: thermostat target and initial-velocity temperature.
        timestep_fs: time step.
        replicas: copies of ``structure`` simulated in one batch.
        friction_per_fs: Langevin friction.
        tdamp_fs: Nosé–Hoover time constant.
        pressure_GPa: NPT target pressure.
        tau_p_fs: NPT barostat relaxation time.
        compressibility_per_GPa: NPT compressibility estimate (see `LangevinNPT`).
        anisotropic: NPT with independent axes.
        write_every: steps between frames / log lines / stop checks.
        skin_A: neighbour-list skin.
        min_distance_A: stop when two atoms come closer (Å).
        seed: seed of initial velocities and Langevin noise.
        progress: progress bar.
        compile: forces through ``torch.compile`` (see `MD`).

    Returns:
        `MDResult` of this call (``steps`` 0 when the run was already complete).
    """
    from nnip.md.integrators import Langevin, NoseHooverChain, VelocityVerlet

    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble {ensemble!r} not in {ENSEMBLES}")
    if replicas < 1 or steps < 0:
        raise ValueError(f"need replicas >= 1 and steps >= 0, got {replicas}, {steps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    traj = out / "trajectory.extxyz"
    paths = _trajectory_paths(traj, replicas)
    done = 0
    if all(p.is_file() and p.stat().st_size > 0 for p in paths):
        try:
            frames = [ase.io.read(p, -1) for p in paths]
        except Exception as err:  # a frame cut off by a kill: name the file
            raise DataError(f"cannot read the last frame to continue from: {err}",
                            source=str(paths[0])) from err
        done = int(frames[0].info.get("step", 0))
        start_temperature = 0.0  # velocities come from the frames
    else:
        frames = []
        for _ in range(replicas):
            atoms = structure.copy()
            atoms.set_momenta(np.zeros((len(atoms), 3)))
            frames.append(atoms)
        start_temperature = temperature_K
    if done >= steps:
        return MDResult(0, None, 0.0, 0.0, 0)
    integrator: Integrator
    if ensemble == "nve":
        integrator = VelocityVerlet(timestep_fs)
    elif ensemble == "nvt":
        integrator = Langevin(timestep_fs, temperature_K, friction_per_fs, seed=seed + done)
    elif ensemble == "npt":
        integrator = LangevinNPT(timestep_fs, temperature_K, pressure_GPa, friction_per_fs,
                                 tau_p_fs, compressibility_per_GPa, anisotropic,
                                 seed=seed + done)
    else:
        integrator = NoseHooverChain(timestep_fs, temperature_K, tdamp_fs)
    md = MD(model, frames, integrator, temperature_K=start_temperature, skin_A=skin_A,
            trajectory=traj, log=out / "thermo.csv", write_every=write_every, seed=seed,
            min_distance_A=min_distance_A, progress=progress, compile=compile)
    md.state.step, md.state.time_fs = done, done * timestep_fs
    return md.run(steps - done)

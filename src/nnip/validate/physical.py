"""Physical validation of a potential: what errors on a test set do not show.

Each function runs one check and returns a JSON-ready dict of numbers (and the curves
to plot). `nnip.validate.report.validate` runs them all and writes the report.

Units: Å, fs, eV, K, GPa; drifts in meV/atom/ps; diffusion in cm²/s; frequencies in THz.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.eos import EquationOfState
from ase.units import GPa

from nnip.data.neighbors import pair_distances
from nnip.md import MD, Langevin, VelocityVerlet
from nnip.models.potential import Potential

__all__ = ["nve_drift", "nvt_stability", "radial_distribution", "diffusion",
           "equation_of_state", "find_volume_scans", "dimer_curves", "phonons"]


def nve_drift(model: Potential, atoms: Atoms, *, temperature_K: float = 300.0,
              timesteps_fs: Sequence[float] = (1.0, 0.5), duration_fs: float = 2000.0,
              seed: int = 0) -> dict[str, Any]:
    """NVE energy conservation at several time steps, from the same initial velocities.

    Args:
        model: the potential.
        atoms: starting structure (e.g. equilibrated at ``temperature_K``).
        temperature_K: Maxwell–Boltzmann temperature of the initial velocities.
        timesteps_fs: time steps to compare (largest first).
        duration_fs: simulated time per time step.
        seed: seed of the velocities.

    Returns:
        ``timestep_fs``, ``drift_meV_per_atom_per_ps`` (slope of a linear fit of E_tot),
        ``fluctuation_meV_per_atom`` (std of E_tot around the fit), ``fluctuation_ratio``
        (first over second time step; ~4 for a ratio-2 pair with velocity Verlet),
        ``stopped`` (a reason or None) and the ``traces`` (time_fs, E_tot meV/atom).
    """
    n = len(atoms)
    out: dict[str, Any] = {"timestep_fs": [], "drift_meV_per_atom_per_ps": [],
                           "fluctuation_meV_per_atom": [], "traces": [], "stopped": None}
    for dt in timesteps_fs:
        md = MD(model, atoms, VelocityVerlet(dt), temperature_K=temperature_K, seed=seed,
                write_every=max(1, round(5.0 / dt)), progress=False)
        times, energies = [0.0], [float(md.thermo()["etot_eV"][0])]
        chunk = max(1, round(10.0 / dt))
        while times[-1] < duration_fs:
            result = md.run(chunk)
            times.append(md.state.time_fs)
            energies.append(float(md.thermo()["etot_eV"][0]))
            if result.stopped:
                out["stopped"] = f"dt {dt} fs: {result.stopped}"
                break
        t = np.asarray(times)
        e = (np.asarray(energies) - energies[0]) / n * 1e3  # meV/atom
        slope, intercept = np.polyfit(t, e, 1) if len(t) > 2 else (np.nan, 0.0)
        out["timestep_fs"].append(float(dt))
        out["drift_meV_per_atom_per_ps"].append(float(slope * 1e3))
        out["fluctuation_meV_per_atom"].append(float(np.std(e - (slope * t + intercept))))
        out["traces"].append({"time_fs": t.tolist(), "etot_meV_per_atom": e.tolist()})
    fl = out["fluctuation_meV_per_atom"]
    out["fluctuation_ratio"] = float(fl[0] / fl[1]) if len(fl) > 1 and fl[1] > 0 else None
    return out


def nvt_stability(model: Potential, atoms: Atoms, *, temperature_K: float = 300.0,
                  timestep_fs: float = 1.0, duration_fs: float = 10000.0,
                  sample_every_fs: float = 20.0, friction_per_fs: float = 0.01,
                  seed: int = 0) -> dict[str, Any]:
    """A long Langevin NVT run: does the structure stay physical?

    Args:
        model: the potential.
        atoms: starting structure.
        temperature_K: thermostat temperature.
        timestep_fs: time step.
        duration_fs: simulated time.
        sample_every_fs: interval of the traces and of the returned frames.
        friction_per_fs: Langevin friction.
        seed: seed of velocities and noise.

    Returns:
        ``stable`` (ran to the end), ``stopped`` (reason or None), ``time_fs`` and the
        traces ``temperature_K``, ``min_distance_A``, ``max_force_eV_per_A``,
        ``epot_eV_per_atom``; ``mean_temperature_K``; and ``frames`` (list of `Atoms`,
        unwrapped positions, for the RDF and diffusion; not JSON).
    """
    every = max(1, round(sample_every_fs / timestep_fs))
    md = MD(model, atoms, Langevin(timestep_fs, temperature_K, friction_per_fs, seed=seed),
            temperature_K=temperature_K, seed=seed, write_every=every, progress=False,
            max_temperature_K=max(5.0 * temperature_K, 2000.0))
    traces: dict[str, list[float]] = {k: [] for k in (
        "time_fs", "temperature_K", "min_distance_A", "max_force_eV_per_A", "epot_eV_per_atom")}
    frames, stopped = [], None
    n_steps = round(duration_fs / timestep_fs)
    while md.state.step < n_steps and stopped is None:
        stopped = md.run(min(every, n_steps - md.state.step)).stopped
        thermo = md.thermo()
        traces["time_fs"].append(md.state.time_fs)
        traces["temperature_K"].append(float(thermo["temperature_K"][0]))
        traces["min_distance_A"].append(float(thermo["min_distance_A"][0]))
        traces["max_force_eV_per_A"].append(float(md.state.forces.norm(dim=-1).max()))
        traces["epot_eV_per_atom"].append(float(thermo["epot_eV"][0]) / len(atoms))
        frames.append(md.atoms()[0])
    half = len(traces["temperature_K"]) // 2
    return {"stable": stopped is None, "stopped": stopped, **traces,
            "mean_temperature_K": float(np.mean(traces["temperature_K"][half:]))
            if traces["temperature_K"] else None, "frames": frames}


def radial_distribution(frames: Sequence[Atoms], r_max: float = 6.0, n_bins: int = 120
                        ) -> dict[str, Any]:
    """Total radial distribution function g(r) averaged over periodic frames.

    Args:
        frames: periodic structures (same composition).
        r_max: largest distance in Å.
        n_bins: histogram bins.

    Returns:
        ``r_A`` (bin centres) and ``g`` (``g -> 1`` for an uncorrelated liquid at large r).
    """
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    density_sum = 0.0
    used = 0
    for atoms in frames:
        if not atoms.pbc.all():
            continue
        r = pair_distances(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
        hist += np.histogram(r, bins=edges)[0] / len(atoms)
        density_sum += len(atoms) / atoms.get_volume()
        used += 1
    if used == 0:
        raise ValueError("radial_distribution needs periodic frames")
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = hist / used / (shell * density_sum / used)
    return {"r_A": (0.5 * (edges[1:] + edges[:-1])).tolist(), "g": g.tolist(),
            "n_frames": used}


def diffusion(frames: Sequence[Atoms], times_fs: Sequence[float]) -> dict[str, Any]:
    """Mean-square displacement and the Einstein diffusion coefficient per element.

    Args:
        frames: structures along one trajectory with *unwrapped* positions (as the MD
            engine writes them).
        times_fs: time of each frame.

    Returns:
        ``time_fs``, ``msd_A2`` per element, and ``D_cm2_per_s`` per element from a
        linear fit of MSD(t) over the second half of the run (6 D t).
    """
    t = np.asarray(times_fs, dtype=float) - float(times_fs[0])
    pos = np.stack([a.positions for a in frames])  # (n_frames, n_atoms, 3)
    disp2 = ((pos - pos[0]) ** 2).sum(-1)  # (n_frames, n_atoms)
    symbols = np.array([str(x) for x in frames[0].get_chemical_symbols()])
    out: dict[str, Any] = {"time_fs": t.tolist(), "msd_A2": {}, "D_cm2_per_s": {}}
    half = len(t) // 2
    for el in sorted({str(x) for x in symbols}):
        msd = disp2[:, symbols == el].mean(1)
        out["msd_A2"][el] = msd.tolist()
        if len(t) - half >= 2 and t[-1] > t[half]:
            slope = np.polyfit(t[half:], msd[half:], 1)[0]  # Å²/fs
            out["D_cm2_per_s"][el] = float(slope / 6.0 * 0.1)  # 1 Å²/fs = 0.1 cm²/s
    return out


def equation_of_state(model: Potential, atoms: Atoms, *,
                      strains: Sequence[float] = tuple(np.linspace(-0.04, 0.04, 9))
                      ) -> dict[str, Any]:
    """Energy against volume under isotropic strain (fixed fractional positions).

    Args:
        model: the potential.
        atoms: periodic structure, ideally relaxed.
        strains: linear strains applied to the cell.

    Returns:
        ``volume_A3_per_atom``, ``energy_eV_per_atom`` and the Birch–Murnaghan fit
        ``v0_A3_per_atom``, ``e0_eV_per_atom``, ``bulk_modulus_GPa``.
    """
    frames = []
    for eps in strains:
        a = atoms.copy()
        a.set_cell(atoms.cell.array * (1.0 + eps), scale_atoms=True)
        frames.append(a)
    energies = model.predict(frames).energy.cpu().numpy()
    n = len(atoms)
    volumes = np.array([a.get_volume() for a in frames])
    return {"volume_A3_per_atom": (volumes / n).tolist(),
            "energy_eV_per_atom": (energies / n).tolist(), **_fit_eos(volumes / n, energies / n)}


def _fit_eos(volumes: np.ndarray, energies: np.ndarray) -> dict[str, float | None]:
    try:
        v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    except (RuntimeError, ValueError):
        return {"v0_A3_per_atom": None, "e0_eV_per_atom": None, "bulk_modulus_GPa": None}
    return {"v0_A3_per_atom": float(v0), "e0_eV_per_atom": float(e0),
            "bulk_modulus_GPa": float(b / GPa)}


def find_volume_scans(frames: Sequence[Atoms], min_points: int = 5) -> list[list[int]]:
    """Groups of labelled frames that form a volume scan.

    Frames qualify when they share species order and fractional coordinates and their
    cells are scalar multiples of each other (an isotropic E(V) curve, as in most DFT
    data sets); each group has at least ``min_points`` distinct volumes.

    Returns:
        Lists of frame indices, each sorted by volume.
    """
    groups: dict[tuple, list[int]] = {}
    for k, atoms in enumerate(frames):
        if not atoms.pbc.all() or atoms.calc is None:
            continue
        cell = atoms.cell.array
        shape = cell / np.cbrt(abs(np.linalg.det(cell)))
        key = (tuple(atoms.numbers), tuple(np.round(shape, 4).ravel()),
               tuple(np.round(atoms.get_scaled_positions(wrap=True), 4).ravel()))
        groups.setdefault(key, []).append(k)
    scans = []
    for members in groups.values():
        volumes = {round(frames[k].get_volume(), 3) for k in members}
        if len(volumes) >= min_points:
            scans.append(sorted(members, key=lambda k: frames[k].get_volume()))
    return scans


def dimer_curves(model: Potential, *, r_min: float = 0.5, n_points: int = 200
                 ) -> dict[str, Any]:
    """Energy of every element pair as an isolated dimer, relative to the separated atoms.

    Args:
        model: the potential.
        r_min: shortest distance in Å.
        n_points: distances between ``r_min`` and the cutoff.

    Returns:
        ``r_A`` and per pair (``"Cu-Ni"``): ``energy_eV``, ``repulsive`` (energy at
        ``r_min`` above 1 eV and rising towards it over the first 0.3 Å) and
        ``n_force_sign_changes`` (a smooth physical curve has 1: attraction then
        repulsion; more means wiggles).
    """
    r = np.linspace(r_min, model.cutoff, n_points)
    out: dict[str, Any] = {"r_A": r.tolist(), "pairs": {}}
    for a, b in itertools.combinations_with_replacement(model.elements, 2):
        frames = [Atoms([a, b], positions=[[0, 0, 0], [d, 0, 0]]) for d in r]
        isolated = model.predict([Atoms([a]), Atoms([b])]).energy.cpu().numpy().sum()
        prediction = model.predict(frames)
        energy = prediction.energy.cpu().numpy() - isolated
        force = prediction.forces.cpu().numpy()[1::2, 0]  # on the second atom along +x
        signs = np.sign(force[np.abs(force) > 1e-6])
        short = r <= r_min + 0.3
        out["pairs"][f"{a}-{b}"] = {
            "energy_eV": energy.tolist(),
            "repulsive": bool(energy[0] > 1.0 and np.all(np.diff(energy[short]) < 0)),
            "n_force_sign_changes": int(np.count_nonzero(np.diff(signs))),
            "covalent_distance_A": float(covalent_radii[Atoms(a).numbers[0]]
                                         + covalent_radii[Atoms(b).numbers[0]]),
        }
    return out


def phonons(model: Potential, atoms: Atoms, *, supercell: Sequence[int] = (2, 2, 2),
            mesh: Sequence[int] = (12, 12, 12), displacement_A: float = 0.01,
            imaginary_tolerance_THz: float = 0.05) -> dict[str, Any]:
    """Harmonic phonons by finite displacements through phonopy.

    Args:
        model: the potential.
        atoms: relaxed periodic structure (primitive or conventional cell).
        supercell: supercell of the force calculations.
        mesh: q-point mesh of the density of states.
        displacement_A: finite displacement.
        imaginary_tolerance_THz: frequencies below ``-tolerance`` count as imaginary
            (numerical noise near Gamma stays below it).

    Returns:
        ``min_frequency_THz``, ``max_frequency_THz``, ``n_imaginary`` (mesh modes),
        ``stable`` and the density of states ``dos_frequency_THz`` / ``dos``.
    """
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    phonon = Phonopy(unit, supercell_matrix=np.diag(supercell), primitive_matrix="auto")
    phonon.generate_displacements(distance=displacement_A)
    displaced = [Atoms(s.symbols, cell=s.cell, scaled_positions=s.scaled_positions, pbc=True)
                 for s in phonon.supercells_with_displacements]
    phonon.forces = np.stack([model.predict(a).forces.cpu().numpy() for a in displaced])
    phonon.produce_force_constants()
    phonon.run_mesh(list(mesh), is_gamma_center=True)
    freqs = phonon.mesh.frequencies  # (n_q, 3 n_atoms) THz
    phonon.run_total_dos()
    dos = {"frequency_points": phonon.total_dos.frequency_points,
           "total_dos": phonon.total_dos.dos}
    n_imag = int(np.count_nonzero(freqs < -imaginary_tolerance_THz))
    return {"min_frequency_THz": float(freqs.min()), "max_frequency_THz": float(freqs.max()),
            "n_imaginary": n_imag, "stable": n_imag == 0,
            "dos_frequency_THz": dos["frequency_points"].tolist(),
            "dos": dos["total_dos"].tolist()}

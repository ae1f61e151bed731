"""The MD engine against known answers (Lennard-Jones argon, reference integrators)."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet as AseVerlet

from nnip.calculators.ase import NNIPCalculator
from nnip.errors import DataError
from nnip.md import MD, Langevin, LangevinNPT, NoseHooverChain, VelocityVerlet, maxwell_boltzmann
from nnip.physics.pair import pair_potential


@pytest.fixture(scope="module")
def argon():
    """LJ argon (epsilon 10.4 meV, sigma 3.4 Å) and a 32-atom fcc crystal."""
    model = pair_potential("lj", ["Ar"], cutoff=8.0, epsilon=0.0104, sigma=3.4)
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    return model, atoms


def _hot(atoms: Atoms, temperature: float, seed: int) -> Atoms:
    atoms = atoms.copy()
    v = maxwell_boltzmann(atoms.get_masses(), temperature, np.random.default_rng(seed))
    atoms.set_velocities(v / units.fs)  # Å/fs -> ASE units
    return atoms


def _nve_spread(model, atoms, dt, total_fs=1000.0):
    md = MD(model, atoms, VelocityVerlet(dt), progress=False, write_every=int(50 / dt))
    energies = [md.thermo()["etot_eV"][0]]
    for _ in range(int(total_fs / 50)):
        md.run(int(50 / dt))
        energies.append(md.thermo()["etot_eV"][0])
    return np.ptp(energies)


def test_nve_conserves_energy_and_error_scales_with_dt_squared(argon):
    model, atoms = argon
    atoms = _hot(atoms, 60.0, seed=1)
    coarse, fine = _nve_spread(model, atoms, 4.0), _nve_spread(model, atoms, 2.0)
    assert coarse < 1e-3 * len(atoms)  # < 1 meV/atom
    assert 3.0 < coarse / fine < 5.0  # velocity Verlet: O(dt²)


def test_engine_matches_ase_velocity_verlet_step_by_step(argon):
    model, atoms = argon
    atoms = _hot(atoms, 80.0, seed=2)
    atoms.rattle(0.05, seed=3)
    md = MD(model, atoms, VelocityVerlet(2.0), progress=False, write_every=1)
    reference = atoms.copy()
    reference.calc = NNIPCalculator(model)
    ase_md = AseVerlet(reference, timestep=2.0 * units.fs)
    for _ in range(5):
        md.run(4)
        ase_md.run(4)
        ours = md.atoms()[0]
        np.testing.assert_allclose(ours.positions, reference.positions, atol=1e-10)
        np.testing.assert_allclose(ours.get_velocities(), reference.get_velocities(),
                                   rtol=1e-8, atol=1e-12)


def test_skin_reuses_the_neighbour_list_without_changing_the_trajectory(argon):
    model, atoms = argon
    atoms = _hot(atoms, 100.0, seed=4)
    runs = {}
    for skin in (0.0, 1.0):
        md = MD(model, atoms, VelocityVerlet(4.0), skin_A=skin, progress=False)
        md.run(100)
        runs[skin] = (md.state.positions.clone(), md.rebuilds)
    torch.testing.assert_close(runs[0.0][0], runs[1.0][0], rtol=0, atol=1e-9)
    assert runs[0.0][1] == 101 and runs[1.0][1] < 20


def test_batched_replicas_equal_single_runs(argon):
    model, atoms = argon
    systems = [_hot(atoms, 50.0, seed=5), _hot(atoms.repeat((2, 1, 1)), 70.0, seed=6),
               _hot(bulk("Ar", "fcc", a=5.3).repeat(3), 90.0, seed=7)]
    batched = MD(model, systems, VelocityVerlet(4.0), progress=False)
    batched.run(50)
    for k, system in enumerate(systems):
        single = MD(model, system, VelocityVerlet(4.0), progress=False)
        single.run(50)
        np.testing.assert_allclose(batched.atoms()[k].positions, single.atoms()[0].positions,
                                   atol=1e-9)


@pytest.mark.parametrize("thermostat", ["langevin", "nose-hoover"])
def test_thermostats_reach_the_target_temperature(argon, thermostat):
    model, atoms = argon
    target = 40.0
    replicas = [_hot(atoms, 5.0, seed=s) for s in range(8)]
    integrator = (Langevin(4.0, target, friction_per_fs=0.02, seed=0)
                  if thermostat == "langevin" else NoseHooverChain(4.0, target, tdamp_fs=200.0))
    md = MD(model, replicas, integrator, progress=False, write_every=5)
    md.run(500)  # 2 ps to equilibrate
    temps, conserved = [], []
    for _ in range(150):
        md.run(10)
        thermo = md.thermo()
        temps.append(thermo["temperature_K"])
        conserved.append(thermo["conserved_eV"])
    temps = np.array(temps)  # (150, 8)
    mean = temps.mean()
    # N = 32: relative std of T is sqrt(2 / (3N - 3)) = 0.147 in the canonical ensemble.
    assert abs(mean - target) < 0.05 * target, mean
    assert 0.10 < temps.std() / mean < 0.20
    if thermostat == "nose-hoover":  # the extended energy is conserved
        assert np.ptp(np.array(conserved), axis=0).max() < 2e-3 * len(atoms)


def test_writes_trajectory_and_log_and_stops_cleanly_when_atoms_collide(tmp_path, argon):
    model, _ = argon
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [3.3, 0, 0]], cell=[20, 20, 20], pbc=False)
    dimer.set_velocities(np.array([[0.005, 0, 0], [-0.005, 0, 0]]) / units.fs)  # 0.1 eV
    calm = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]], pbc=False)
    md = MD(model, [calm, dimer], VelocityVerlet(1.0), trajectory=tmp_path / "t.extxyz",
            log=tmp_path / "log.csv", write_every=5, min_distance_A=3.2, progress=False)
    result = md.run(2000)
    assert result.stopped is not None and "system 1" in result.stopped
    assert "apart" in result.stopped and result.steps < 2000
    frames = ase.io.read(tmp_path / "t_001.extxyz", ":")
    assert len(frames) == result.steps // 5 + 1
    assert frames[-1].get_potential_energy() == pytest.approx(float(md.state.energy[1]))
    log = np.genfromtxt(tmp_path / "log.csv", delimiter=",", names=True)
    assert set(log["system"]) == {0, 1} and log["step"][-1] == result.steps
    assert np.isnan(log["pressure_GPa"]).all()  # no cell
    # which systems broke down: only the dimer; the calm one can go on
    failing = md.failing_systems()
    assert list(failing) == [1] and "apart" in failing[1]
    md.state.positions.data[0, 0] = float("nan")
    assert set(md.failing_systems()) == {0, 1}


@pytest.mark.parametrize("anisotropic", [False, True])
def test_npt_reaches_the_target_pressure(argon, anisotropic):
    """Stochastic cell rescaling: mean pressure = target (the std of one sample is
    ~0.03 GPa for 32 atoms); isotropic and per-axis cells agree on the mean volume."""
    model, atoms = argon
    target = 0.1  # GPa
    integrator = LangevinNPT(4.0, 40.0, pressure_GPa=target, friction_per_fs=0.02,
                             tau_p_fs=400.0, compressibility_per_GPa=0.3,
                             anisotropic=anisotropic, seed=1)
    md = MD(model, [atoms] * 8, integrator, temperature_K=40.0, progress=False)
    md.run(400)
    pressure, volume = [], []
    for _ in range(120):
        md.run(10)
        thermo = md.thermo()
        pressure.append(thermo["pressure_GPa"])
        volume.append(thermo["volume_A3"] / len(atoms))
    assert abs(np.mean(pressure) - target) < 0.012
    assert 37.0 < np.mean(volume) < 37.9  # Å³/atom; 39.3 at 0 GPa (B ~ 2 GPa)
    cell = md.state.cell[0]
    assert torch.count_nonzero(cell - torch.diag(torch.diagonal(cell))) == 0  # still cubic axes
    if not anisotropic:
        assert torch.allclose(cell.diagonal(), cell[0, 0].expand(3))


def test_npt_refuses_a_molecule(argon):
    model, _ = argon
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])
    with pytest.raises(DataError, match="periodic"):
        MD(model, dimer, LangevinNPT(2.0, 50.0), progress=False)


def test_ase_traj_output_keeps_every_frame(tmp_path, argon):
    model, atoms = argon
    md = MD(model, _hot(atoms, 40.0, seed=8), VelocityVerlet(2.0), write_every=5,
            trajectory=tmp_path / "t.traj", progress=False)
    md.run(20)
    frames = ase.io.read(tmp_path / "t.traj", ":")
    assert len(frames) == 5  # steps 0, 5, ..., 20
    np.testing.assert_allclose(frames[-1].positions, md.atoms()[0].positions)
    np.testing.assert_allclose(frames[-1].get_velocities(), md.atoms()[0].get_velocities())


def test_stops_on_overheating_and_on_nan(argon, tmp_path):
    model, atoms = argon
    hot = MD(model, _hot(atoms, 300.0, seed=9), VelocityVerlet(2.0), max_temperature_K=100.0,
             write_every=1, progress=False)
    result = hot.run(50)
    assert result.steps == 0 and "temperature" in result.stopped
    broken = _hot(atoms, 40.0, seed=10)
    broken.positions[3] = np.nan
    with pytest.raises(DataError, match="non-finite position of atom 3"):
        MD(model, broken, VelocityVerlet(2.0), progress=False)
    md = MD(model, _hot(atoms, 40.0, seed=11), VelocityVerlet(2.0), write_every=2,
            trajectory=tmp_path / "t.extxyz", progress=False)
    md.run(4)
    md.state.velocities[5, 0] = float("nan")  # e.g. a force blew up
    result = md.run(10)
    assert "non-finite" in result.stopped and result.steps == 0
    assert len(ase.io.read(tmp_path / "t.extxyz", ":")) == 3  # what was written stays
    assert md.state.step == 4


def test_nve_with_ewald_electrostatics_conserves_energy():
    """Rigid-ion rock salt (LJ + Coulomb of ±1 e, PME): the drift scales as dt^2."""
    from nnip.models.potential import Potential
    from nnip.nn.embedding import TypeMap
    from nnip.physics.electrostatics import Electrostatics, FixedCharges
    from nnip.physics.pair import LennardJones

    types = TypeMap(["Na", "Cl"])
    coulomb = Electrostatics(FixedCharges(types, {"Na": 1.0, "Cl": -1.0}), types)
    model = Potential({"lj": LennardJones(0.05, 2.8, 6.0), "electrostatics": coulomb},
                      types, 6.0).double()  # E(a) has its minimum near a = 5.6 Å
    atoms = _hot(bulk("NaCl", "rocksalt", a=5.6, cubic=True).repeat(2), 600.0, seed=4)
    coarse = _nve_spread(model, atoms, 2.0, total_fs=300.0)
    fine = _nve_spread(model, atoms, 1.0, total_fs=300.0)
    assert coarse < 2e-4 * len(atoms)  # measured 0.08 meV/atom over 1 ps
    assert 3.0 < coarse / fine < 5.0

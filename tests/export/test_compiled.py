"""Compiled export (AOTInductor .pt2): parity with the eager model, dynamic sizes, errors."""

from __future__ import annotations

import copy
import json

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from nnip.cli.main import main as cli
from nnip.errors import ModelError, ModelFileError
from nnip.export.compiled import _graph_inputs, export_compiled, load_compiled, parity
from nnip.export.model_file import save_model
from nnip.models import Committee, build

from .conftest import CHARGE_ENERGY_CASES, COMMITTEE_CHARGE_CASES, qeq_model


def _triclinic_alloy(repeat=(3, 2, 2)):
    atoms = bulk("Cu", "fcc", a=3.6).repeat(repeat)
    atoms.symbols[[1, 4]] = "Ni"
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.1], [0.02, 0, 1]]),
                   scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def test_compiled_package_matches_the_model_at_any_size(tmp_path):
    model = build("painn", ["Cu", "Ni"], 4.0, n_features=16, n_interactions=2, zbl=True,
                  seed=3)
    path = export_compiled(save_model(model, tmp_path / "m.nnip"), tmp_path / "m.pt2",
                           progress=False)
    compiled = load_compiled(path)
    assert compiled.elements == ["Ni", "Cu"] and compiled.cutoff == 4.0
    assert float(compiled.metadata["ghost_cutoff"]) == 8.0
    assert compiled.metadata["committee"] == "0"
    # the package was traced on a small random cell: other sizes, shapes, a molecule
    for atoms in (_triclinic_alloy(), _triclinic_alloy((4, 4, 3)), molecule("CH4")):
        if "C" in atoms.get_chemical_symbols():
            with pytest.raises(ModelError, match="not known"):
                compiled(atoms)
            continue
        diff = parity(model, path, atoms)
        assert diff["energy"] < 1e-10 and diff["forces"] < 1e-10
        assert diff["energies"] < 1e-10 and diff["virial"] < 1e-10
    out = compiled(_triclinic_alloy())
    assert out["stress"].shape == (6,)


def test_committee_spread_is_compiled_too(tmp_path):
    committee = Committee([build("schnet", ["Cu", "Ni"], 4.0, n_features=8,
                                 n_interactions=2, seed=k) for k in range(3)],
                          calibration=1.7)
    path = export_compiled(committee, tmp_path / "c.pt2", progress=False)
    assert load_compiled(path).metadata["committee"] == "3"
    diff = parity(committee, path, _triclinic_alloy())
    assert max(diff.values()) < 1e-10 and "forces_uncertainty" in diff


def test_cli_export_and_clear_errors(tmp_path, capsys):
    model = build("mace", ["Cu", "Ni"], 4.0, n_features=8, n_interactions=2, l_max=1)
    save_model(model, tmp_path / "mace.nnip")
    ase.io.write(tmp_path / "alloy.xyz", _triclinic_alloy())
    assert cli(["export", str(tmp_path / "mace.nnip"), "--check",
                str(tmp_path / "alloy.xyz")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    diffs = [float(part.split()[1]) for part in line.split(": ", 1)[1].split(", ")]
    assert line.startswith("compiled vs model") and max(diffs) < 1e-10
    assert (tmp_path / "mace.pt2").is_file()
    # a committee's members share one Ewald setting (each solves its own charges)
    charged = Committee([build("painn", ["Na", "Cl"], 4.0, n_features=8, seed=k,
                               electrostatics={"smearing": 1.0 + k, "method": "ewald"})
                         for k in range(2)])
    with pytest.raises(ModelError, match="members' electrostatics differ.*smearing"):
        export_compiled(charged, tmp_path / "x.pt2", progress=False)
    (tmp_path / "junk.pt2").write_text("not a package")
    with pytest.raises(ModelFileError, match="junk.pt2"):
        load_compiled(tmp_path / "junk.pt2")


def test_d3_is_carried_as_metadata_and_added_back(tmp_path):
    pytest.importorskip("torch_dftd")
    from nnip.export.compiled import lammps_lines

    model = build("painn", ["Cu", "Ni"], 4.0, n_features=8, n_interactions=2, d3="pbe",
                  seed=2)
    path = export_compiled(save_model(model, tmp_path / "d3.nnip"), tmp_path / "d3.pt2",
                           progress=False)
    compiled = load_compiled(path)
    assert compiled.metadata["lammps_d3"] == "dispersion/d3 bj pbe 15 15"
    assert json.loads(compiled.metadata["d3"])["smoothing"] == "poly"
    atoms = _triclinic_alloy()
    diff = parity(model, path, atoms)  # the package plus the D3 term = the whole model
    assert max(diff.values()) < 1e-10
    # and the D3 term is a real part of it: not zero, not in the compiled graph
    without = compiled.runner(*_graph_inputs(atoms, 4.0))[0].item()
    assert abs(compiled(atoms)["energy"] - without) > 0.1
    lines = lammps_lines(compiled.metadata, "d3.pt2", ["Cu", "Ni"])
    assert lines.splitlines() == ["pair_style hybrid/overlay nnip dispersion/d3 bj pbe 15 15",
                                  "pair_coeff * * nnip d3.pt2 Cu Ni",
                                  "pair_coeff * * dispersion/d3 Cu Ni"]


def test_float32_models_compile_and_agree_to_float32_precision(tmp_path):
    model = build("painn", ["Cu", "Ni"], 4.0, n_features=16, n_interactions=2,
                  dtype=torch.float32)
    path = export_compiled(model, tmp_path / "f32.pt2", progress=False)
    assert load_compiled(path).metadata["dtype"] == "float32"
    diff = parity(model, path, _triclinic_alloy())
    assert diff["forces"] < 1e-4 and diff["energy"] < 1e-4


def ionic_model(arch: str = "painn", **electrostatics):
    """A small Na-Cl model with electrostatics whose charges are ~0.1-0.5 e."""
    model = build(arch, ["Na", "Cl"], 4.0, n_features=8, n_interactions=2, seed=2,
                  electrostatics={"smearing": 1.0, "method": "ewald", **electrostatics})
    term = model.terms["electrostatics"]
    last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)
        last.bias.mul_(30.0)
        term.log_weight.copy_(torch.tensor([-0.4, 0.3]))
    return model


def triclinic_salt(repeat=(2, 2, 3), seed=1):
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat(repeat)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.1], [0.02, 0, 1.05]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def test_electrostatics_is_summed_outside_the_package_and_agrees(tmp_path):
    """Learned charges: the package gives q̃, w and the response; Python sums Ewald."""
    from nnip.export._ewald import ewald

    model = ionic_model()
    path = export_compiled(save_model(model, tmp_path / "q.nnip"), tmp_path / "q.pt2",
                           progress=False)
    compiled = load_compiled(path)
    assert compiled.metadata["format"] == "nnip-aoti-2"
    assert compiled.metadata["electrostatics"] == "ewald" and compiled.smearing == 1.0
    for repeat, total in (((2, 2, 3), 0.0), ((2, 2, 3), 1.5), ((3, 2, 2), -0.7)):
        atoms = triclinic_salt(repeat)
        atoms.info["total_charge"] = total
        out = model.predict(atoms, compute_stress=True)
        diff = parity(model, path, atoms)
        assert diff["energy"] < 1e-8 * abs(float(out.energy[0]))
        assert diff["forces"] < 1e-8 * float(out.forces.abs().max())
        assert diff["virial"] < 1e-8 * float(out.virial.abs().max())
        assert diff["charges"] < 1e-12 and diff["energies"] < 1e-9
        assert float(out.charges.sum()) == pytest.approx(total, abs=1e-12)
        stress = out.stress[0].numpy()[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        assert np.abs(compiled(atoms)["stress"] - stress).max() < 1e-8 * np.abs(stress).max()
    # the response term (charges move with the atoms) is a real part of the forces
    result = compiled(atoms)
    inputs = _graph_inputs(atoms, 4.0)
    no_response = compiled.runner(*inputs, torch.zeros(len(atoms), dtype=torch.float64))
    fixed = ewald(atoms.positions, result["charges"], atoms.cell.array, 1.0)[2]
    assert np.abs(result["forces"] - no_response[2].numpy() - fixed).max() > 0.1
    with pytest.raises(ModelError, match="3D-periodic"):
        compiled(Atoms("NaCl", positions=[[0, 0, 0], [2.5, 0, 0]]))


@pytest.mark.parametrize("energy", ["coulomb", "full"])
def test_charge_equilibration_is_solved_outside_the_package_and_agrees(tmp_path, energy):
    """qeq: the package gives q̃ and J; Python solves, sums Ewald and the adjoint."""
    model = qeq_model(energy)
    path = export_compiled(save_model(model, tmp_path / "qeq.nnip"), tmp_path / "qeq.pt2",
                           progress=False)
    compiled = load_compiled(path)
    assert compiled.metadata["format"] == "nnip-aoti-3" and compiled.qeq
    assert compiled.metadata["qeq_energy"] == energy
    for repeat, total in (((2, 2, 3), 0.0), ((3, 2, 2), 1.5)):
        atoms = triclinic_salt(repeat)
        atoms.info["total_charge"] = total
        out = model.predict(atoms, compute_stress=True)
        assert float(out.charges.std()) > 0.05  # real charges, not a trivial case
        diff = parity(model, path, atoms)
        assert diff["energy"] < 1e-8 * abs(float(out.energy[0]))
        assert diff["forces"] < 1e-8 * float(out.forces.abs().max())
        assert diff["virial"] < 1e-8 * float(out.virial.abs().max())
        assert diff["charges"] < 1e-9 and diff["energies"] < 1e-9
    # the charges' response to the positions is a real part of the forces
    result = compiled(atoms)
    no_response = compiled.runner(*_graph_inputs(atoms, 4.0),
                                  torch.zeros(len(atoms), dtype=torch.float64))
    assert np.abs(result["forces"] - no_response[2].numpy()).max() > 0.05


@pytest.mark.parametrize("case", CHARGE_ENERGY_CASES, ids="-".join)
def test_charge_energy_is_carried_by_the_package(charge_energy_packages, case):
    """A charge-dependent local energy: the package's charge_energy entry gives ∂f/∂q to
    the outside solve, pass 2 adds f and its derivatives; all agree with the model."""
    form, charge_model, _ = case
    model, path = charge_energy_packages[case]
    compiled = load_compiled(path)
    assert compiled.metadata["format"] == "nnip-aoti-4"
    assert compiled.metadata["charge_energy"] == form
    assert compiled.metadata["charge_model"] == charge_model
    assert compiled.qeq == (charge_model == "qeq")
    without = copy.deepcopy(model)  # the same model without its charge energy
    term = without.terms["electrostatics"]
    with torch.no_grad():
        for weight in ([term.charge_curvature] if form == "linear" else
                       [term.charge_energy_net[-1].weight, term.charge_energy_net[-1].bias]):
            weight.zero_()
    for repeat, total in (((2, 2, 3), 0.0), ((3, 2, 2), 1.5)):
        atoms = triclinic_salt(repeat)
        atoms.info["total_charge"] = total
        out = model.predict(atoms, compute_stress=True)
        plain = without.predict(atoms, compute_stress=True)
        # the charge energy is a real part of the energy and of the forces
        assert abs(float(out.energy[0] - plain.energy[0])) > 0.05
        assert float((out.forces - plain.forces).abs().max()) > 0.05
        diff = parity(model, path, atoms)
        assert diff["energy"] < 1e-8 * abs(float(out.energy[0]))
        assert diff["forces"] < 1e-8 * float(out.forces.abs().max())
        assert diff["virial"] < 1e-8 * float(out.virial.abs().max())
        assert diff["charges"] < 1e-9 and diff["energies"] < 1e-9


@pytest.mark.parametrize("case", COMMITTEE_CHARGE_CASES, ids="-".join)
def test_committee_with_electrostatics_solves_each_members_charges(
        committee_charge_packages, case):
    """A committee whose members predict their own charges: one charge solve and Ewald
    sum per member outside the package; means, charges and the spread (each member's
    Ewald forces included) agree with the committee's single autograd call."""
    committee, path = committee_charge_packages[case]
    compiled = load_compiled(path)
    assert compiled.metadata["format"] == "nnip-aoti-5"
    assert compiled.metadata["committee"] == "3" and compiled.stacked
    assert compiled.qeq == (case[1] == "qeq")
    for repeat, total in (((2, 2, 3), 0.0), ((3, 2, 2), 1.5)):
        atoms = triclinic_salt(repeat)
        atoms.info["total_charge"] = total
        out = committee.predict(atoms, compute_stress=True)
        members = [m.predict(atoms) for m in committee.members]
        # the members' charges differ, and so do their Coulomb forces
        spread_q = np.ptp([m.charges.numpy() for m in members], axis=0).max()
        assert spread_q > 1e-3 and float(out.forces_uncertainty.max()) > 1e-2
        diff = parity(committee, path, atoms)
        assert diff["energy"] < 1e-8 * abs(float(out.energy[0]))
        assert diff["forces"] < 1e-8 * float(out.forces.abs().max())
        assert diff["virial"] < 1e-8 * float(out.virial.abs().max())
        assert diff["forces_uncertainty"] < 1e-8 * float(out.forces_uncertainty.max())
        assert diff["charges"] < 1e-9 and diff["energies"] < 1e-9

"""Committee: one pass gives each member's result, the mean, and the spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from nnip.calculators.ase import NNIPCalculator
from nnip.export.model_file import load_model, save_model
from nnip.md import MD, VelocityVerlet
from nnip.models import Committee, build
from nnip.testing import run_all_checks


def _members(k=3, arch="painn", **params):
    params = params or {"n_features": 8, "n_interactions": 2}
    return [build(arch, elements=["Cu", "Ni"], cutoff=4.0, e0={"Cu": -3.0, "Ni": -4.0},
                  scale=0.5, seed=s, **params) for s in range(k)]


def _structure():
    atoms = bulk("Cu", cubic=True).repeat((2, 1, 1))
    atoms.symbols[[1, 4]] = "Ni"
    atoms.rattle(0.1, seed=3)
    return atoms


def test_committee_equals_its_members_and_reports_their_spread():
    members = _members()
    committee = Committee(members)
    atoms = _structure()
    out = committee.predict(atoms, compute_stress=True)
    single = [m.predict(atoms, compute_stress=True) for m in members]
    energies = torch.stack([o.energy for o in single])
    forces = torch.stack([o.forces for o in single])
    torch.testing.assert_close(out.energy, energies.mean(0))
    torch.testing.assert_close(out.forces, forces.mean(0))
    torch.testing.assert_close(out.stress, torch.stack([o.stress for o in single]).mean(0))
    torch.testing.assert_close(out.energy_uncertainty, energies.std(0))
    expected = ((forces - forces.mean(0)) ** 2).sum(-1).sum(0).div(2).sqrt()  # K - 1 = 2
    torch.testing.assert_close(out.forces_uncertainty, expected)
    assert float(out.forces_uncertainty.min()) > 0  # different seeds disagree
    committee.set_calibration(2.5)
    scaled = committee.predict(atoms)
    torch.testing.assert_close(scaled.forces_uncertainty, 2.5 * expected)
    torch.testing.assert_close(scaled.forces, out.forces)


def test_committee_passes_the_physics_suite():
    run_all_checks(Committee(_members(2, n_features=8, n_interactions=1)))


def test_committee_model_file_calculator_and_md(tmp_path):
    committee = Committee(_members())
    committee.set_calibration(1.7)
    path = save_model(committee, tmp_path / "c.nnip")
    loaded = load_model(path)
    assert isinstance(loaded, Committee) and len(loaded.members) == 3
    atoms = _structure()
    a, b = committee.predict(atoms), loaded.predict(atoms)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.forces_uncertainty,
                                                            b.forces_uncertainty)
    atoms.calc = NNIPCalculator(loaded)
    atoms.get_forces()
    np.testing.assert_allclose(atoms.calc.results["forces_uncertainty"],
                               a.forces_uncertainty.numpy())
    assert atoms.calc.results["energy_uncertainty"] == pytest.approx(
        float(a.energy_uncertainty[0]))
    # MD logs the largest per-atom spread and stops (or flags) above a threshold.
    md = MD(loaded, _structure(), VelocityVerlet(1.0), write_every=2, log=tmp_path / "l.csv",
            max_uncertainty_eV_per_A=1e-9, progress=False)
    result = md.run(10)
    assert "force uncertainty" in result.stopped and result.steps == 0
    flag = MD(loaded, _structure(), VelocityVerlet(1.0), write_every=2,
              trajectory=tmp_path / "t.extxyz", max_uncertainty_eV_per_A=1e-9,
              stop_on_uncertain=False, progress=False)
    assert flag.run(10).stopped is None and flag.uncertain_frames == 6
    frame = flag.atoms()[0]
    assert frame.info["uncertain"] and frame.arrays["forces_uncertainty"].shape == (8,)
    log = np.genfromtxt(tmp_path / "l.csv", delimiter=",", names=True)
    assert "max_force_uncertainty_eV_per_A" in log.dtype.names


def test_committee_needs_matching_members():
    other = build("painn", elements=["Cu"], cutoff=4.0, n_features=8, n_interactions=1)
    with pytest.raises(ValueError, match="member 1"):
        Committee([_members(1)[0], other])


def test_eval_reports_uncertainty_calibration(tmp_path):
    from ase.calculators.emt import EMT

    from nnip.validate.errors import evaluate
    from nnip.validate.uncertainty import calibration_metrics

    committee = Committee(_members())
    frames = []
    for k in range(4):
        atoms = _structure()
        atoms.rattle(0.05, seed=20 + k)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    table = evaluate(committee, frames, tmp_path, name="val", progress=False)
    u = table["uncertainty"]
    assert u["n_atoms"] == 32 and -1 <= u["spearman"] <= 1 and 0 <= u["miscalibration_area"] <= 0.5
    assert (tmp_path / "val_calibration.png").stat().st_size > 10_000
    # Known answers: errors drawn with exactly the predicted spread are calibrated and
    # rank-correlated; errors unrelated to the spread are not.
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.01, 1.0, 20000)
    error = rng.standard_normal((20000, 3)) * (sigma / np.sqrt(3))[:, None]
    good = calibration_metrics(error, sigma)
    assert good["miscalibration_area"] < 0.01 and good["spearman"] > 0.6
    assert abs(good["rms_error_over_rms_sigma"] - 1) < 0.02
    bad = calibration_metrics(error, rng.permutation(sigma) * 5)
    assert bad["miscalibration_area"] > 0.2 and abs(bad["spearman"]) < 0.05

"""Physical validation against known answers: Lennard-Jones argon."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from nnip.cli.main import main
from nnip.export.model_file import save_model
from nnip.models import build
from nnip.physics.pair import pair_potential
from nnip.validate import physical
from nnip.validate.report import validate

SIGMA, EPSILON = 3.4, 0.0104


@pytest.fixture(scope="module")
def argon():
    return pair_potential("lj", ["Ar"], cutoff=8.0, epsilon=EPSILON, sigma=SIGMA)


def test_dimer_curve_has_the_lj_minimum_and_is_repulsive(argon):
    d = physical.dimer_curves(argon)
    pair = d["pairs"]["Ar-Ar"]
    r, e = np.array(d["r_A"]), np.array(pair["energy_eV"])
    assert abs(r[np.argmin(e)] - 2 ** (1 / 6) * SIGMA) < 0.1  # envelope shifts it slightly
    assert -EPSILON < e.min() < -0.8 * EPSILON
    assert pair["repulsive"] and pair["n_force_sign_changes"] == 1


def test_eos_and_phonons_of_fcc_argon(argon):
    crystal = bulk("Ar", "fcc", a=5.26)
    eos = physical.equation_of_state(argon, crystal)
    assert 35.5 < eos["v0_A3_per_atom"] < 38.0  # 0.917 sigma³ = 36.0 without the cutoff
    assert 2.0 < eos["bulk_modulus_GPa"] < 3.5
    ph = physical.phonons(argon, crystal, supercell=(3, 3, 3), mesh=(8, 8, 8))
    assert ph["stable"] and ph["n_imaginary"] == 0
    assert 1.5 < ph["max_frequency_THz"] < 2.3  # solid argon: ~2 THz


def test_volume_scans_are_found_among_other_frames(argon):
    scan = [bulk("Ar", "fcc", a=a, cubic=True) for a in np.linspace(5.0, 5.6, 7)]
    other = [bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2) for _ in range(3)]
    for k, atoms in enumerate(other):
        atoms.rattle(0.05, seed=k)
    frames = []
    for atoms in other[:2] + scan + other[2:]:
        atoms.calc = SinglePointCalculator(atoms, energy=0.0)
        frames.append(atoms)
    assert physical.find_volume_scans(frames) == [[2, 3, 4, 5, 6, 7, 8]]


def test_validate_report_on_lj_argon(argon, tmp_path):
    crystal = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    # Reference frames: a DFT-like volume scan and snapshots of an independent MD run.
    scan = [bulk("Ar", "fcc", a=a, cubic=True).repeat(2) for a in np.linspace(5.1, 5.5, 6)]
    snaps = physical.nvt_stability(argon, crystal, temperature_K=40.0, timestep_fs=4.0,
                                   duration_fs=2000.0, seed=7)["frames"][-40:]
    data = scan + [a.copy() for a in snaps]
    out = argon.predict(data)
    start = 0
    for k, atoms in enumerate(data):
        forces = out.forces[start:start + len(atoms)].numpy()
        start += len(atoms)
        atoms.calc = SinglePointCalculator(atoms, energy=float(out.energy[k]), forces=forces)
    report = validate(argon, crystal, tmp_path, data=data, temperature_K=40.0,
                      timestep_fs=4.0, nvt_duration_fs=2000.0, nve_duration_fs=800.0,
                      say=lambda _: None)
    summary = report["summary"]
    assert set(summary) == {"dimers", "eos", "phonons", "nve", "nvt", "rdf", "diffusion",
                            "errors"}
    assert all(summary[k]["ok"] for k in ("dimers", "eos", "phonons", "nve", "nvt", "rdf"))
    assert 3.5 < report["nve"]["fluctuation_ratio"] < 4.5
    (dft,) = report["eos"]["dft_scans"]
    assert dft["energy_mae_meV_per_atom"] < 1e-9  # labelled by the same potential
    assert dft["model"]["bulk_modulus_GPa"] == pytest.approx(dft["dft"]["bulk_modulus_GPa"])
    assert report["rdf"]["difference"] < 0.2  # two independent 40 K runs: the same g(r)
    assert report["rdf"]["reference"]["n_frames"] == 43  # + 3 scan frames within 5 % density
    assert report["errors"]["overall"]["forces"]["mae"] < 1e-12
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(summary))
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(report["figures"]) == 8
    assert "&#10008;" not in page  # no failed check


def test_nnip_validate_cli(tmp_path, capsys):
    model = build("painn", elements=["Cu"], cutoff=4.0, n_features=8, n_interactions=1,
                  e0={"Cu": -3.0}, scale=0.3)
    path = save_model(model, tmp_path / "m.nnip")
    structure = tmp_path / "cu.xyz"
    bulk("Cu", "fcc", a=3.6, cubic=True).write(structure)
    status = main(["validate", str(path), "--structure", str(structure), "--checks", "dimers",
                   "nve", "--nve-ps", "0.1", "--timestep-fs", "2", "--out", str(tmp_path / "v")])
    printed = capsys.readouterr().out
    assert "dimers" in printed and "nve" in printed
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert status == (1 if any(v["ok"] is False for v in report["summary"].values()) else 0)
    assert (tmp_path / "v" / "report.html").stat().st_size > 10_000

"""`nnip demo`, the README's main job: EMT data -> SchNet -> errors -> MD."""

from __future__ import annotations

import json

import pytest

from nnip.cli.main import main


def test_demo_small_through_the_cli(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--minutes", "0.15",
                 "--structures", "40", "--md-steps", "100"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_structures"] >= 40
    for name in ("emt_data.extxyz", "md.extxyz", "run/model.nnip", "run/log.csv",
                 "run/test_parity.png", "run/learning_curves.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
    assert summary["test_errors"]["forces"]["mae"] < 1.0  # eV/Å: trained, if only briefly
    assert abs(summary["md"]["nve_drift_meV_per_atom_per_ps"]) < 5.0


@pytest.mark.slow
def test_full_demo_learns_and_finishes_within_five_minutes(tmp_path):
    from nnip.demo import run_demo

    summary = run_demo(tmp_path / "demo", progress=False)
    assert summary["seconds"] < 300, "the demo must finish in under 5 minutes on 2 cores"
    test = summary["test_errors"]
    assert test["energy_per_atom"]["mae"] < 0.03  # eV/atom
    # a fixed training time: the error depends on the CPU (0.045 eV/Å after 2 min on the
    # Intel Xeon of 2026-12-05, below 0.03 on the earlier AMD EPYC); untrained: ~0.5
    assert test["forces"]["mae"] < 0.05  # eV/Å
    md = summary["md"]
    assert abs(md["nve_drift_meV_per_atom_per_ps"]) < 0.5
    assert md["emt_energy_mae_meV_per_atom_along_md"] < 30

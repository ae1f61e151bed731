"""Error tables, parity plots, prediction files and the ``nnip eval`` command."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron

from nnip.calculators import NNIPCalculator
from nnip.errors import DataError
from nnip.models import build
from nnip.validate import (
    compare_frames,
    error_table,
    evaluate,
    format_error_table,
    parity_plots,
    plot_learning_curves,
    predict_frames,
    write_predictions,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _label(atoms, config_type, stress=True, energy=True):
    """Freeze EMT labels in a single-point calculator, as `nnip.data.read` leaves them."""
    atoms.calc = EMT()
    results = {"forces": atoms.get_forces()}
    if energy:
        results["energy"] = atoms.get_potential_energy()
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return atoms


@pytest.fixture(scope="module")
def frames():
    out = []
    for seed in range(3):  # Cu bulk with stress
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True) * (2, 1, 1)
        atoms.rattle(0.08, seed=seed)
        out.append(_label(atoms, "Cu_bulk"))
    for seed in range(2):  # Al bulk without stress, one Cu substituted
        atoms = bulk("Al", "fcc", a=4.05, cubic=True)
        atoms.symbols[0] = "Cu"
        atoms.rattle(0.05, seed=10 + seed)
        out.append(_label(atoms, "Al_bulk", stress=False))
    out.append(_label(Icosahedron("Cu", 2), "cluster", stress=False))  # non-periodic
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=4.0)  # periodic in x, y only
    slab.rattle(0.05, seed=3)
    del slab.info["adsorbate_info"]  # a dict extxyz cannot write
    slab = _label(slab, "slab", stress=False)
    # a (fake) stress label on a slab must not enter the stress errors
    slab.calc.results["stress"] = np.full(6, 0.01)
    out.append(slab)
    out.append(_label(bulk("Cu", "fcc", a=3.7) * (2, 2, 2), "Cu_bulk", energy=False))
    return out


@pytest.fixture(scope="module")
def model():
    return build("schnet", elements=["Al", "Cu"], cutoff=4.0, n_features=16, n_basis=8,
                 e0={"Al": -0.1, "Cu": 0.2})


def _direct(model, frames):
    """Per-frame predictions with model.predict, one frame at a time (the reference)."""
    rows = []
    for atoms in frames:
        periodic = bool(np.all(atoms.pbc))
        out = model.predict(atoms, compute_stress=periodic)
        rows.append({"energy": float(out.energy[0]), "forces": out.forces.numpy(),
                     "stress": out.stress[0].numpy() if periodic else None})
    return rows


def _mae_rmse(err):
    err = np.concatenate([np.ravel(e) for e in err])
    return np.mean(np.abs(err)), np.sqrt(np.mean(err**2)), err.size


def _check(stats, expected):
    mae, rmse, n = expected
    assert stats["n"] == n
    np.testing.assert_allclose([stats["mae"], stats["rmse"]], [mae, rmse], rtol=1e-10)


def test_table_equals_direct_numpy_computation(model, frames):
    pred = predict_frames(model, frames, batch_size=2)
    table = error_table(pred)
    direct = _direct(model, frames)
    energy = [(d["energy"] - a.calc.results["energy"]) / len(a)
              for d, a in zip(direct, frames) if "energy" in a.calc.results]
    forces = [d["forces"] - a.calc.results["forces"] for d, a in zip(direct, frames)]
    stress = [d["stress"] - a.get_stress(voigt=False) for d, a in zip(direct, frames)
              if d["stress"] is not None and "stress" in a.calc.results]
    _check(table["overall"]["energy_per_atom"], _mae_rmse([energy]))
    _check(table["overall"]["forces"], _mae_rmse(forces))
    _check(table["overall"]["stress"], _mae_rmse(stress))
    # per config_type: the Al bulk frames only
    idx = [k for k, a in enumerate(frames) if a.info["config_type"] == "Al_bulk"]
    _check(table["per_config_type"]["Al_bulk"]["forces"], _mae_rmse([forces[k] for k in idx]))
    _check(table["per_config_type"]["Al_bulk"]["energy_per_atom"],
           _mae_rmse([[energy[k] for k in idx]]))
    # predictions are in frame order despite batches grouped by periodicity
    np.testing.assert_allclose(pred.energy_pred, [d["energy"] for d in direct], rtol=1e-12)
    np.testing.assert_allclose(pred.forces_pred, np.concatenate([d["forces"] for d in direct]),
                               atol=1e-12)


def test_per_element_partitions_overall(model, frames):
    table = error_table(predict_frames(model, frames, batch_size=3))
    per_el = table["per_element"]
    assert list(per_el) == ["Al", "Cu"]
    assert all(set(row) == {"forces"} for row in per_el.values())
    n = np.array([row["forces"]["n"] for row in per_el.values()])
    mae = np.array([row["forces"]["mae"] for row in per_el.values()])
    rmse = np.array([row["forces"]["rmse"] for row in per_el.values()])
    overall = table["overall"]["forces"]
    assert n.sum() == overall["n"]
    np.testing.assert_allclose((n * mae).sum() / n.sum(), overall["mae"], rtol=1e-12)
    np.testing.assert_allclose(np.sqrt((n * rmse**2).sum() / n.sum()), overall["rmse"],
                               rtol=1e-12)


def test_stress_only_for_labelled_fully_periodic_frames(model, frames):
    pred = predict_frames(model, frames, batch_size=8)
    periodic = np.array([bool(np.all(a.pbc)) for a in frames])
    np.testing.assert_array_equal(pred.stress_computed, periodic)
    assert np.isnan(pred.stress_pred[~periodic]).all()
    assert np.isfinite(pred.stress_pred[periodic]).all()
    table = error_table(pred)
    n_stress = sum(1 for a in frames if np.all(a.pbc) and "stress" in a.calc.results)
    assert n_stress == 4  # 3 Cu bulk + the unlabelled-energy bulk; not the slab
    assert table["overall"]["stress"]["n"] == 9 * n_stress
    for name in ("Al_bulk", "cluster", "slab"):
        assert "stress" not in table["per_config_type"][name]
    # the Cu bulk frame without an energy label enters stress and forces, not energy
    assert table["per_config_type"]["Cu_bulk"]["energy_per_atom"]["n"] == 3
    assert table["per_config_type"]["Cu_bulk"]["stress"]["n"] == 9 * 4


def test_non_periodic_only_and_unlabelled(model, frames):
    cluster = [frames[5]]
    table = error_table(predict_frames(model, cluster))
    assert set(table["overall"]) == {"energy_per_atom", "forces"}
    bare = [a.copy() for a in frames[:2]]  # copies have no calculator: no labels
    pred = predict_frames(model, bare)
    assert error_table(pred)["overall"] == {}
    assert "no labelled" in format_error_table(error_table(pred))


def test_unlabelled_parity_plot(model, frames, tmp_path):
    pred = predict_frames(model, [a.copy() for a in frames[:2]])
    assert parity_plots(pred, tmp_path / "empty.png").stat().st_size > 0


def test_format_error_table(model, frames):
    table = error_table(predict_frames(model, frames))
    text = format_error_table(table)
    for word in ("meV/atom", "meV/Å", "meV/Å^3", "overall", "per element", "per config_type",
                 "Al_bulk", "cluster", "slab", "Cu"):
        assert word in text
    assert text.index("overall") < text.index("per element") < text.index("per config_type")
    assert f"{1000 * table['overall']['forces']['mae']:.3f}" in text


def test_evaluate_writes_files(model, frames, tmp_path):
    table = evaluate(model, frames, tmp_path / "out", batch_size=4, name="test",
                     progress=False)
    files = {p.name: p for p in (tmp_path / "out").iterdir()}
    assert set(files) == {"test_errors.json", "test_parity.png", "test_predictions.extxyz"}
    assert all(p.stat().st_size > 0 for p in files.values())
    saved = json.loads(files["test_errors.json"].read_text(encoding="utf-8"))
    assert saved["overall"] == table["overall"]
    assert saved["units"]["forces"] == "eV/Å"
    back = ase.io.read(files["test_predictions.extxyz"], ":")
    pred = predict_frames(model, frames)
    assert len(back) == len(frames)
    for k, (atoms, orig) in enumerate(zip(back, frames)):
        np.testing.assert_allclose(atoms.arrays["forces_pred"], pred.forces_pred[
            pred.atom_slice(k)], atol=1e-8)
        np.testing.assert_allclose(atoms.arrays["forces_ref"], orig.calc.results["forces"],
                                   atol=1e-8)
        np.testing.assert_allclose(atoms.get_forces(), orig.calc.results["forces"], atol=1e-8)
        assert atoms.arrays["energies_pred"].shape == (len(orig),)
        assert np.isclose(atoms.info["energy_pred"], pred.energy_pred[k])
        assert ("energy_ref" in atoms.info) == ("energy" in orig.calc.results)
        assert ("stress_pred" in atoms.info) == bool(np.all(orig.pbc))
        assert atoms.info["config_type"] == orig.info["config_type"]


def test_write_predictions_rejects_mismatched_frames(model, frames, tmp_path):
    pred = predict_frames(model, frames[:3])
    with pytest.raises(DataError, match="do not match"):
        write_predictions(frames[:2], pred, tmp_path / "x.extxyz")


def test_learning_curves_with_missing_keys(tmp_path):
    history = [
        {"epoch": 0, "train_loss": 1.0, "val_loss": 1.2, "lr": 1e-3},
        {"epoch": 1, "train_loss": 0.5, "val_loss": None, "val_forces_mae": 0.3, "lr": 1e-3},
        {"epoch": 2, "train_loss": 0.2, "val_energy_mae": 0.01, "val_stress_mae": None},
        {"epoch": 3},
    ]
    path = plot_learning_curves(history, tmp_path / "curves" / "lc.png")
    assert path.stat().st_size > 0
    assert plot_learning_curves([{"epoch": 0}], tmp_path / "empty.png").stat().st_size > 0


def test_real_data_mlearn_si(tmp_path):
    path = SHARED_DATA / "mlearn" / "Si" / "test.xyz"
    if not path.is_file():
        pytest.skip(f"real DFT data not found at {path.resolve()} (clone beside ../shared)")
    from nnip.data import read

    frames = read(path, "0:10")
    model = build("schnet", elements=["Si"], cutoff=4.0, n_features=16, n_basis=8,
                  e0={"Si": -5.4})
    table = evaluate(model, frames, tmp_path, batch_size=4, progress=False)
    direct = _direct(model, frames)
    energy = [(d["energy"] - a.get_potential_energy()) / len(a) for d, a in zip(direct, frames)]
    forces = [d["forces"] - a.get_forces() for d, a in zip(direct, frames)]
    stress = [d["stress"] - a.get_stress(voigt=False) for d, a in zip(direct, frames)
              if "stress" in a.calc.results]
    _check(table["overall"]["energy_per_atom"], _mae_rmse([energy]))
    _check(table["overall"]["forces"], _mae_rmse(forces))
    if stress:
        _check(table["overall"]["stress"], _mae_rmse(stress))
    assert set(table["per_config_type"]) == {a.info["config_type"] for a in frames}
    assert (tmp_path / "eval_parity.png").stat().st_size > 0


def test_cli_arguments():
    import argparse

    from nnip.cli.eval import CLICommand

    parser = argparse.ArgumentParser()
    CLICommand.add_arguments(parser)
    args = parser.parse_args(["m.nnip", "a.xyz", "b.xyz", "--batch-size", "4",
                              "--dtype", "float32"])
    assert args.data == ["a.xyz", "b.xyz"] and args.batch_size == 4 and args.out is None


def test_cli_run(model, frames, tmp_path, capsys, monkeypatch):
    model_file = pytest.importorskip("nnip.export.model_file")
    from nnip.cli.main import main

    model_file.save_model(model, tmp_path / "m.nnip")
    data = tmp_path / "data.xyz"
    ase.io.write(data, frames, format="extxyz")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path / "m.nnip"), str(data), "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "meV/atom" in out and "Al_bulk" in out
    written = tmp_path / "eval_data"
    assert (written / "eval_errors.json").stat().st_size > 0
    assert (written / "eval_predictions.extxyz").stat().st_size > 0
    table = json.loads((written / "eval_errors.json").read_text(encoding="utf-8"))
    expected = error_table(predict_frames(model, frames))
    np.testing.assert_allclose(table["overall"]["forces"]["mae"],
                               expected["overall"]["forces"]["mae"], rtol=1e-8)


def test_compare_frames_matches_predict_frames(model, frames):
    """Another calculator's results, scored by compare_frames, give the same table."""
    predicted = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = NNIPCalculator(model)
        props = ["energy", "forces"] + (["stress"] if np.all(atoms.pbc) else [])
        copy.calc.calculate(copy, properties=props)
        copy.calc = SinglePointCalculator(copy, **{k: copy.calc.results[k] for k in props})
        predicted.append(copy)
    direct, compared = error_table(predict_frames(model, frames)), error_table(
        compare_frames(frames, predicted))
    for prop, stats in direct["overall"].items():
        np.testing.assert_allclose(compared["overall"][prop]["mae"], stats["mae"], rtol=1e-8)
        assert compared["overall"][prop]["n"] == stats["n"]
    with pytest.raises(DataError, match="2 predicted"):
        compare_frames(frames, predicted[:2])
    swapped = predicted[0].copy()
    swapped.calc = SinglePointCalculator(swapped, energy=1.0)
    with pytest.raises(DataError, match="forces"):
        compare_frames(frames[:1], [swapped])

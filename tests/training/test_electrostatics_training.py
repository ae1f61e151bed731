"""Training a long-range model on real charged data (n2p2 4G C10H2 / C10H3+)."""

from __future__ import annotations

import ase.io
import pytest
import yaml

from nnip.cli.main import main as cli
from nnip.export.model_file import load_model, read_metadata
from nnip.validate.errors import error_table, format_error_table, predict_frames


def test_charges_learned_from_reference_charges(shared_data, tmp_path, capsys):
    frames = ase.io.read(shared_data / "n2p2_4G_examples" / "C10H2_C10H3plus.xyz", ":")
    assert {f.info["total_charge"] for f in frames} == {0.0, 1.0}
    ase.io.write(tmp_path / "train.xyz", frames[::3])
    ase.io.write(tmp_path / "test.xyz", frames[1::6])
    config = {
        "data": {"train": [str(tmp_path / "train.xyz")], "validation_fraction": 0.1},
        "model": {"arch": "painn", "cutoff": 4.0, "electrostatics": True,
                  "params": {"n_features": 16, "n_interactions": 1}},
        "train": {"epochs": 20, "batch_size": 4, "lr": 0.01, "seed": 0},
        "output": {"run_dir": str(tmp_path / "run"), "plots": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert cli(["train", str(tmp_path / "config.yaml")]) == 0
    model_path = tmp_path / "run" / "model.nnip"
    spec = read_metadata(model_path)["spec"]["electrostatics"]
    assert spec["method"] == "auto" and spec["arch"] == "shared"
    model = load_model(model_path)
    test = ase.io.read(tmp_path / "test.xyz", ":")
    pred = predict_frames(model, test)
    table = error_table(pred)["overall"]
    # The untrained charge readout predicts ~0 everywhere (R^2 <= 0); 20 epochs on 39
    # frames reach R^2 ~ 0.79, a charge MAE of ~23 me (mean |reference charge| 49 me)
    # with the default charges read from the model's own features.
    assert table["charges"]["r2"] > 0.5
    for k, atoms in enumerate(test):  # every structure keeps its total charge
        q = pred.charges_pred[pred.atom_slice(k)]
        assert abs(q.sum() - atoms.info["total_charge"]) < 1e-9
    assert "charges [me]" in format_error_table(error_table(pred))



@pytest.mark.parametrize("charge_energy", [True, "mlp"])
def test_charges_first_stage_fits_charges_before_energies(shared_data, tmp_path,
                                                          charge_energy):
    """``loss.charges_first_fraction``: the first epochs fit the charges alone, then the
    usual loss takes over; clear errors without an electrostatics term or without
    reference charges."""
    from nnip import train
    from nnip.errors import ConfigError

    frames = ase.io.read(shared_data / "n2p2_4G_examples" / "C10H2_C10H3plus.xyz", ":")
    ase.io.write(tmp_path / "train.xyz", frames[::4])
    config = {
        "data": {"train": [str(tmp_path / "train.xyz")], "validation_fraction": 0.1},
        "model": {"arch": "painn", "cutoff": 4.0, "params": {"n_features": 16,
                                                             "n_interactions": 1},
                  "electrostatics": {"charge_model": "qeq", "charge_energy": charge_energy}},
        "loss": {"charges_first_fraction": 0.5},
        "train": {"epochs": 4, "batch_size": 4, "lr": 0.01, "seed": 0},
        "output": {"run_dir": str(tmp_path / "run"), "plots": False},
    }
    history = train(config, progress=False).history
    assert [row["stage"] for row in history] == [0, 0, 1, 1]  # charges first, half the run
    first = [row["val_charges_mae"] for row in history if row["stage"] == 0]
    assert first[1] < first[0]  # the charges are being fitted
    assert all(row.get("val_energy_mae") is not None for row in history)  # still reported

    bad = {**config, "model": {**config["model"], "electrostatics": False}}
    with pytest.raises(ConfigError, match="electrostatics"):
        train(bad, progress=False)
    plain = frames[::8]  # the same frames, their reference charges dropped
    for atoms in plain:
        del atoms.arrays["ref_charges"]
    ase.io.write(tmp_path / "nocharges.xyz", plain)
    bad = {**config, "data": {**config["data"], "train": [str(tmp_path / "nocharges.xyz")]}}
    with pytest.raises(ConfigError, match="ref_charges"):
        train(bad, progress=False)

"""Model file: exact round trip, weights-only loading, atomic writes, errors, provenance."""

from __future__ import annotations

import argparse
import os
import re

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from nnip.errors import ModelError
from nnip.export import (
    FORMAT_VERSION,
    data_fingerprint,
    format_metadata,
    load_model,
    read_metadata,
    save_model,
)
from nnip.models import build

E0 = {"Cu": -3.7123456789012345, "Ni": -5.5}


def _model(dtype: torch.dtype = torch.float64):
    model = build("schnet", elements=["Cu", "Ni"], cutoff=4.0, n_features=16, n_basis=8,
                  e0=E0, scale=0.3, dtype=dtype)
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():  # weights unlike a fresh build(seed=0): the round trip must carry them
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return model


def _structure():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[[1, 2]] = "Ni"
    atoms.rattle(0.05, seed=3)
    return atoms


def _frames(n: int = 3):
    frames = []
    for k in range(n):
        atoms = _structure()
        atoms.rattle(0.02, seed=10 + k)
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0 - k,
                                           forces=np.full((len(atoms), 3), 0.1 * k),
                                           stress=np.arange(6.0) * 1e-3)
        frames.append(atoms)
    return frames


def _same(a, b) -> None:
    assert torch.equal(a.energy, b.energy)
    assert torch.equal(a.forces, b.forces)
    assert torch.equal(a.stress, b.stress)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_round_trip_exact(tmp_path, dtype):
    model = _model(dtype)
    atoms = _structure()
    before = model.predict(atoms, compute_stress=True)
    fresh = build("schnet", elements=["Cu", "Ni"], cutoff=4.0, n_features=16, n_basis=8,
                  e0=E0, scale=0.3, dtype=dtype).predict(atoms, compute_stress=True)
    assert not torch.equal(fresh.energy, before.energy)  # so the comparison below can fail

    path = save_model(model, tmp_path / "m.nnip")
    rng = torch.get_rng_state()
    loaded = load_model(path)
    assert torch.equal(rng, torch.get_rng_state())  # loading leaves the global RNG alone
    assert loaded.model_dtype == dtype
    assert not loaded.training
    assert loaded.spec == model.spec
    _same(loaded.predict(atoms, compute_stress=True), before)
    e0 = loaded.terms["reference"].e0
    assert e0.dtype == torch.float64  # float64 even in float32 models
    assert torch.equal(e0, model.terms["reference"].e0)
    assert loaded.terms["reference"].as_dict() == E0  # exact, also for float32 models
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_dtype_override(tmp_path):
    model = _model(torch.float64)
    atoms = _structure()
    path = save_model(model, tmp_path / "m.nnip")
    as32 = load_model(path, dtype=torch.float32)
    assert as32.model_dtype == torch.float32
    assert as32.terms["reference"].as_dict() == E0
    ref = model.predict(atoms, compute_stress=True)
    out = as32.predict(atoms, compute_stress=True)
    assert torch.allclose(out.energy, ref.energy, atol=1e-4, rtol=0)
    assert torch.allclose(out.forces, ref.forces, atol=1e-4, rtol=0)
    assert load_model(path, dtype="float64", device="cpu").model_dtype == torch.float64
    path32 = save_model(as32, tmp_path / "m32.nnip")
    as64 = load_model(path32, dtype=torch.float64)
    assert as64.model_dtype == torch.float64
    assert as64.terms["reference"].as_dict() == E0
    assert torch.allclose(as64.predict(atoms).energy, ref.energy, atol=1e-4, rtol=0)


def test_file_is_plain_data_with_metadata(tmp_path):
    model = _model()
    fingerprint = data_fingerprint(_frames())
    path = save_model(model, tmp_path / "m.nnip", license="CC-BY-4.0",
                      provenance={"training_data": fingerprint, "train_steps": 7},
                      training_config={"train": {"lr": 1e-3, "epochs": 2}, "seed": (1, 2)})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "nnip-model" and raw["format_version"] == FORMAT_VERSION
    assert raw["type_map"] == [28, 29] and raw["spec"]["elements"] == ["Ni", "Cu"]
    assert raw["model_dtype"] == "float64" and raw["units"]["energy"] == "eV"
    assert raw["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())

    meta = read_metadata(path)
    assert "state_dict" not in meta and meta["path"] == str(path)
    prov = meta["provenance"]
    assert prov["torch_version"] == torch.__version__
    assert prov["nnip_version"] and prov["python_version"]
    assert "e3nn_version" in prov and "git_commit" in prov and "git_dirty" in prov
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", prov["date"])
    assert prov["training_data"] == fingerprint and prov["train_steps"] == 7
    assert meta["license"] == "CC-BY-4.0"
    assert meta["training_config"] == {"train": {"lr": 1e-3, "epochs": 2}, "seed": [1, 2]}
    assert meta["e0"] == E0
    text = repr(meta)
    for private in (os.environ.get("USER"), os.uname().nodename):
        if private and len(private) > 3:
            assert private not in text


def test_unstorable_metadata_is_rejected(tmp_path):
    with pytest.raises(ModelError, match=r"provenance\.bad"):
        save_model(_model(), tmp_path / "m.nnip", provenance={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_and_overwrite(tmp_path):
    path = tmp_path / "m.nnip"
    save_model(_model(), path, license="first")
    save_model(_model(), path, license="second")
    assert read_metadata(path)["license"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nnip"]  # no temp files left


@pytest.fixture
def saved(tmp_path):
    return save_model(_model(), tmp_path / "good.nnip")


def _raises(path, *words):
    with pytest.raises(ModelError, match=re.escape(path.name)) as info:
        load_model(path)
    for word in words:
        assert word in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    _raises(tmp_path / "absent.nnip", "no such model file")
    with pytest.raises(ModelError, match="absent.nnip"):
        read_metadata(tmp_path / "absent.nnip")


def test_truncated_and_random_files(saved, tmp_path):
    data = saved.read_bytes()
    truncated = tmp_path / "truncated.nnip"
    truncated.write_bytes(data[: len(data) // 2])
    _raises(truncated, "not a readable")
    noise = tmp_path / "noise.nnip"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    _raises(noise, "not a readable")
    empty = tmp_path / "empty.nnip"
    empty.write_bytes(b"")
    _raises(empty)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, path)
    _raises(path, "not an nnip model file", "format")
    path2 = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path2)
    _raises(path2, "not an nnip model file")


def _patched(saved, tmp_path, name, edit):
    raw = torch.load(saved, weights_only=True)
    edit(raw)
    path = tmp_path / name
    torch.save(raw, path)
    return path


def test_newer_format(saved, tmp_path):
    path = _patched(saved, tmp_path, "future.nnip",
                    lambda raw: raw.update(format_version=FORMAT_VERSION + 1))
    err = _raises(path, f"format {FORMAT_VERSION + 1}", f"<= {FORMAT_VERSION}", "upgrade nnip")
    assert "newer nnip" in str(err)
    with pytest.raises(ModelError, match="upgrade nnip"):
        read_metadata(path)


def test_unknown_architecture(saved, tmp_path):
    path = _patched(saved, tmp_path, "arch.nnip",
                    lambda raw: raw["spec"].update(arch="transformer9000"))
    _raises(path, "transformer9000", "spec.arch")


def test_unknown_option(saved, tmp_path):
    path = _patched(saved, tmp_path, "option.nnip",
                    lambda raw: raw["spec"]["config"].update(n_widgets=3))
    _raises(path, "n_widgets")


def test_state_dict_mismatch(saved, tmp_path):
    def edit(raw):
        state = raw["state_dict"]
        state.pop("terms.schnet.term.readout.0.bias")
        state["terms.schnet.extra"] = torch.zeros(2)
        state["terms.schnet.term.embedding.weight"] = torch.zeros(2, 5, dtype=torch.float64)

    path = _patched(saved, tmp_path, "mismatch.nnip", edit)
    _raises(path, "terms.schnet.term.readout.0.bias", "terms.schnet.extra",
            "terms.schnet.term.embedding.weight (2, 5)")


def test_data_fingerprint():
    frames = _frames()
    fp = data_fingerprint(frames)
    assert fp == data_fingerprint(_frames())  # same data -> same hash
    assert len(fp["sha256"]) == 64
    assert fp["n_structures"] == 3 and fp["n_atoms"] == 12
    assert fp["counts_per_element"] == {"Ni": 6, "Cu": 6}
    assert list(fp["counts_per_element"]) == ["Ni", "Cu"]  # by atomic number
    assert fp["labels"] == {"energy": 3, "forces": 3, "stress": 3}

    changed = _frames()
    changed[1].calc.results["energy"] += 1e-6
    assert data_fingerprint(changed)["sha256"] != fp["sha256"]
    moved = _frames()
    moved[2].positions[0, 0] += 1e-6
    assert data_fingerprint(moved)["sha256"] != fp["sha256"]
    assert data_fingerprint(frames[::-1])["sha256"] != fp["sha256"]  # order-dependent
    noise = _frames()
    noise[0].positions[0, 0] += 1e-13  # below the 1e-8 rounding
    assert data_fingerprint(noise)["sha256"] == fp["sha256"]

    unlabelled = _frames()
    unlabelled[0].calc = None
    fp2 = data_fingerprint(unlabelled)
    assert fp2["labels"] == {"energy": 2, "forces": 2, "stress": 2}
    assert fp2["sha256"] != fp["sha256"]
    full = _frames()  # a 3x3 stress hashes as its Voigt form
    for atoms in full:
        s = atoms.calc.results["stress"]
        atoms.calc.results["stress"] = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]],
                                                 [s[4], s[3], s[2]]])
    assert data_fingerprint(full)["sha256"] == fp["sha256"]
    assert data_fingerprint([])["n_structures"] == 0


def test_format_metadata(tmp_path):
    path = save_model(_model(), tmp_path / "m.nnip", license="CC-BY-4.0",
                      provenance={"training_data": data_fingerprint(_frames())},
                      training_config={"train": {"lr": 0.001}})
    text = format_metadata(read_metadata(path))
    for needle in ("schnet", "Ni, Cu", "4 Å", "float64", "CC-BY-4.0", "n_features", "16",
                   "Cu -3.712345679", "Ni -5.5", "training data", "Ni 6, Cu 6",
                   "energy 3", "torch_version", "train.lr", "0.001", str(path)):
        assert needle in text, needle
    n_params = read_metadata(path)["n_parameters"]
    assert f"{n_params:,}" in text


def test_cli_info(saved, capsys):
    from nnip.cli.info import CLICommand

    parser = argparse.ArgumentParser()
    CLICommand.add_arguments(parser)
    args = parser.parse_args([str(saved)])
    assert CLICommand.run(args) == 0
    out = capsys.readouterr().out
    assert "schnet" in out and "Ni, Cu" in out and "(none given)" in out
    assert "training data  (not recorded)" in out


@pytest.mark.parametrize("arch,params", [
    ("painn", {"n_features": 8, "n_basis": 6, "n_interactions": 1}),
    ("nequip", {"n_features": 4, "l_max": 1, "n_interactions": 1, "radial_hidden": 8}),
    ("mace", {"n_features": 4, "l_max": 1, "correlation": 2, "radial_hidden": 8}),
])
def test_every_architecture_round_trips(tmp_path, arch, params):
    model = build(arch, elements=["Cu", "Ni"], cutoff=4.0, e0=E0, scale=0.3, seed=5, **params)
    atoms = _structure()
    before = model.predict(atoms, compute_stress=True)
    loaded = load_model(save_model(model, tmp_path / f"{arch}.nnip"))
    _same(loaded.predict(atoms, compute_stress=True), before)

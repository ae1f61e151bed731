"""Compiled export (AOTInductor .pt2): parity with the eager model, dynamic sizes, errors."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from nnip.cli.main import main as cli
from nnip.errors import ModelError, ModelFileError
from nnip.export.compiled import _graph_inputs, export_compiled, load_compiled, parity
from nnip.export.model_file import save_model
from nnip.models import Committee, build


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
    with pytest.raises(ModelError, match="long-range"):
        export_compiled(build("painn", ["C", "H"], 4.0, n_features=8,
                              electrostatics=True), tmp_path / "x.pt2", progress=False)
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

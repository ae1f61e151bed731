"""Tests of nnip.data.io: the real data sets, DeePMD and n2p2 round trips, bad input."""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from nnip import units
from nnip.data import io
from nnip.errors import DataError

DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
NO_DATA = f"shared data sets not found at {DATA} (see DESIGN.md, 'Tests and benchmarks')"
LABELS = ("energy", "forces", "stress")


def _data(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{NO_DATA}: {relative} is missing")
    return path


def _xyz_files() -> list:
    if not DATA.is_dir():
        return [pytest.param("none", marks=pytest.mark.skip(reason=NO_DATA))]
    return sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.xyz"))


def _labelled(atoms: ase.Atoms, **results) -> ase.Atoms:
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _with_fake_stress(frames: list[ase.Atoms], seed: int = 0) -> list[ase.Atoms]:
    """Copies of ``frames`` with a random stress (eV/Å^3) added to energy and forces."""
    rng = np.random.default_rng(seed)
    return [
        _labelled(
            a,
            energy=a.get_potential_energy(),
            forces=a.get_forces(),
            stress=rng.normal(scale=0.01, size=6),
        )
        for a in frames
    ]


def _assert_same_frames(got: list[ase.Atoms], expected: list[ase.Atoms], rtol=1e-12) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_allclose(a.positions, b.positions, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(a.cell.array, b.cell.array, rtol=rtol, atol=1e-12)
        np.testing.assert_array_equal(a.pbc, b.pbc)
        assert set(a.calc.results) == set(b.calc.results) & set(LABELS)
        for name in a.calc.results:
            np.testing.assert_allclose(
                a.calc.results[name], b.calc.results[name], rtol=rtol, atol=1e-12, err_msg=name
            )


def _write_frames(path: Path, frames: list[ase.Atoms]) -> Path:
    ase.io.write(path, frames, format="extxyz")
    return path


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("relative", _xyz_files())
def test_real_xyz_matches_plain_ase(relative):
    path = _data(relative)
    ours, reference = io.read(path), ase.io.read(path, ":")
    assert len(ours) == len(reference) > 0
    for i, (a, b) in enumerate(zip(ours, reference)):
        results = b.calc.results if b.calc is not None else {}
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        np.testing.assert_array_equal(a.pbc, b.pbc)
        assert set(a.calc.results) == set(results) & set(LABELS)
        if "energy" in results:
            assert a.get_potential_energy() == b.get_potential_energy()
        if "forces" in results:
            np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        if "stress" in results:
            np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=1e-12, atol=1e-15)
        assert a.info["config_type"] == b.info["config_type"]
        assert (a.info["source"], a.info["frame_index"]) == (str(path), i)
        assert a.info["source_index"] == b.info.get("source_index", i)
        assert a.info["weight"] == 1.0
        assert a.info["total_charge"] == b.info.get("total_charge", 0.0)
        for key, value in b.info.items():
            np.testing.assert_equal(a.info[key], value)
        for key, value in b.arrays.items():
            np.testing.assert_array_equal(a.arrays[key], value)


# file: (frames, frames with stress, frames with forces), from the folder READMEs
README_COUNTS = {
    "si_gap18_tiny/all.xyz": (53, 52, 53),
    "snap_WBe/subset.xyz": (5839, 1618, 5839),
    "mlearn/Ge/train.xyz": (228, 217, 228),
    "mlearn/Cu/train.xyz": (262, 0, 262),
    "deepmd_water/test.xyz": (80, 0, 80),
    "rmd17_ethanol/test_dimers.xyz": (429, 0, 0),
}


@pytest.mark.parametrize("relative", sorted(README_COUNTS))
def test_label_counts_match_data_readmes(relative):
    frames = io.read(_data(relative))
    n_stress = sum("stress" in a.calc.results for a in frames)
    n_forces = sum("forces" in a.calc.results for a in frames)
    assert (len(frames), n_stress, n_forces) == README_COUNTS[relative]
    assert all("energy" in a.calc.results for a in frames)


def test_n2p2_example_charges_sum_to_total_charge():
    frames = io.read(_data("n2p2_4G_examples/C10H2_C10H3plus.xyz"))
    totals = np.array([a.info["total_charge"] for a in frames])
    sums = np.array([a.arrays["ref_charges"].sum() for a in frames])
    np.testing.assert_allclose(sums, totals, atol=1e-5)
    assert (np.sum(totals == 1.0), np.sum(totals == 0.0)) == (62, 66)


def test_index_selects_frames_and_records_their_file_index():
    path = _data("mlearn_NbMoTaW/train.xyz")
    reference = ase.io.read(path, ":20")
    first = io.read(path, ":20")
    _assert_same_frames(first, reference)
    assert [a.info["frame_index"] for a in io.read(path, "3:12:4")] == [3, 7, 11]
    assert [a.info["frame_index"] for a in io.read(path, slice(2, 4))] == [2, 3]
    small = _data("mlearn/Si/train.xyz")  # 214 frames; negative indices read the whole file
    assert [a.info["frame_index"] for a in io.read(small, -1)] == [213]
    assert [a.info["frame_index"] for a in io.read(small, "-2:")] == [212, 213]
    assert [a.info["frame_index"] for a in io.read(small, "::-100")] == [213, 113, 13]


def test_require_labels_names_first_real_frame_without_stress():
    path = _data("mlearn/Si/train.xyz")
    frames = io.read(path)
    first = next(i for i, a in enumerate(ase.io.read(path, ":")) if "stress" not in a.calc.results)
    io.require_labels(frames, ["energy", "forces"])
    with pytest.raises(DataError) as info:
        io.require_labels(frames, ["energy", "stress"])
    assert (info.value.source, info.value.index, info.value.field) == (str(path), first, "stress")
    assert "12 of 214 frames" in str(info.value)


def test_write_then_read_round_trips(tmp_path):
    frames = io.read(_data("si_gap18_tiny/all.xyz"))
    frames[3].info["weight"] = 2.5
    io.write(tmp_path / "out.xyz", frames)
    back = io.read(tmp_path / "out.xyz")
    _assert_same_frames(back, frames)
    assert [a.info["config_type"] for a in back] == [a.info["config_type"] for a in frames]
    assert back[3].info["weight"] == 2.5 and back[0].info["weight"] == 1.0
    assert back[5].info["source"] == str(tmp_path / "out.xyz")
    assert back[5].info["source_index"] == frames[5].info["source_index"]


# --------------------------------------------------------------------------- DeePMD


def test_deepmd_round_trip_with_virial(tmp_path):
    frames = _with_fake_stress(io.read(_data("deepmd_water/train.xyz"), ":10"))
    system = tmp_path / "water"
    assert io.write_deepmd(system, frames, set_size=4) == [system]
    assert sorted(p.name for p in system.glob("set.*")) == ["set.000", "set.001", "set.002"]
    assert (system / "type_map.raw").read_text().split() == ["H", "O"]
    virial = np.load(system / "set.001" / "virial.npy")
    assert virial.shape == (4, 9)
    expected = -frames[4].get_volume() * frames[4].get_stress(voigt=False)
    np.testing.assert_allclose(virial[0].reshape(3, 3), expected, rtol=1e-12)
    back = io.read(system)
    _assert_same_frames(back, frames)
    assert [a.info["deepmd_set"] for a in back[3:5]] == ["set.000", "set.001"]
    assert [a.info["frame_index"] for a in io.read(system, "3:6")] == [3, 4, 5]
    _assert_same_frames(io.read(system, "3:6"), frames[3:6])


def test_deepmd_handwritten_system_units_and_virial_sign(tmp_path):
    system = tmp_path / "handwritten"
    (system / "set.000").mkdir(parents=True)
    (system / "type.raw").write_text("1\n0\n0\n")
    (system / "type_map.raw").write_text("O\nH\n")
    coord = np.array([[0, 0, 0, 0.96, 0, 0, -0.24, 0.93, 0]] * 2, dtype=np.float32)
    coord[1] += 0.5
    virial = np.array([[1.0, 0.5, 0, 0.5, 2.0, 0, 0, 0, 3.0]] * 2)
    np.save(system / "set.000" / "coord.npy", coord)
    np.save(system / "set.000" / "box.npy", np.array([np.diag([10.0, 11.0, 12.0]).ravel()] * 2))
    np.save(system / "set.000" / "energy.npy", np.array([-10.0, -11.0]))
    np.save(system / "set.000" / "force.npy", np.arange(18.0).reshape(2, 9))
    np.save(system / "set.000" / "virial.npy", virial)
    frames = io.read(system)
    assert frames[0].get_chemical_symbols() == ["H", "O", "O"]
    assert frames[1].pbc.all() and frames[1].get_potential_energy() == -11.0
    np.testing.assert_allclose(frames[1].positions[1], [1.46, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(frames[1].get_forces()[2], [15.0, 16.0, 17.0])
    stress = frames[0].get_stress(voigt=False)
    np.testing.assert_allclose(stress, -virial[0].reshape(3, 3) / 1320.0, rtol=1e-12)
    assert frames[0].get_stress()[5] == pytest.approx(-0.5 / 1320.0)  # Voigt xy
    assert frames[0].positions.dtype == np.float64


def test_deepmd_non_periodic_molecules(tmp_path):
    frames = io.read(_data("rmd17_ethanol/train.xyz"), ":5")
    system = tmp_path / "ethanol"
    io.write_deepmd(system, frames)
    assert (system / "nopbc").exists() and not (system / "set.000" / "virial.npy").exists()
    back = io.read(system)
    _assert_same_frames(back, frames)
    assert not any(a.pbc.any() for a in back)


def test_deepmd_multi_system_folder(tmp_path):
    water = io.read(_data("deepmd_water/test.xyz"), ":3")
    ethanol = io.read(_data("rmd17_ethanol/test.xyz"), ":5")
    io.write_deepmd(tmp_path / "multi" / "a_water", water)
    io.write_deepmd(tmp_path / "multi" / "b" / "ethanol", ethanol)
    frames = io.read(tmp_path / "multi")
    _assert_same_frames(frames, water + ethanol)
    assert [a.info["deepmd_system"] for a in frames[2:4]] == ["a_water", "b/ethanol"]
    _assert_same_frames(io.read(tmp_path / "multi", "2:4"), [water[2], ethanol[0]])
    _assert_same_frames(io.read(tmp_path / "multi", -1), [ethanol[4]])
    mixed = io.write_deepmd(tmp_path / "mixed", water + ethanol)
    assert [p.name for p in mixed] == ["000_H128O64", "001_C2H6O"]
    _assert_same_frames(io.read(tmp_path / "mixed"), water + ethanol)


def test_deepmd_without_type_map(tmp_path):
    frames = [_labelled(molecule("H2O"), energy=-1.0)]
    io.write_deepmd(tmp_path / "h2o", frames)
    (tmp_path / "h2o" / "type_map.raw").unlink()
    with pytest.raises(DataError, match="type_map.raw"):
        io.read(tmp_path / "h2o")
    back = io.read(tmp_path / "h2o", type_map=["H", "O"])
    assert back[0].get_chemical_symbols() == ["O", "H", "H"]
    with pytest.raises(DataError, match="no DeePMD system"):
        io.read(tmp_path / "h2o" / "set.000")


# --------------------------------------------------------------------------- n2p2


def _write_input_data(path: Path, frames: list[ase.Atoms], length=1.0, energy=1.0) -> Path:
    """Hand-written n2p2 input.data; values divided by the length/energy units (Å, eV)."""
    lines = []
    for atoms in frames:
        lines += ["begin", f"comment {atoms.info['config_type']}"]
        if atoms.pbc.any():
            lines += ["lattice " + " ".join(f"{x / length:.17g}" for x in v) for v in atoms.cell]
        forces = atoms.get_forces() / (energy / length)
        for pos, sym, q, f in zip(
            atoms.positions / length,
            atoms.get_chemical_symbols(),
            atoms.arrays["ref_charges"],
            forces,
        ):
            xyz, fxyz = " ".join(f"{x:.17g}" for x in pos), " ".join(f"{x:.17g}" for x in f)
            lines.append(f"atom {xyz} {sym} {q:.17g} 0.0 {fxyz}")
        lines += [
            f"energy {atoms.get_potential_energy() / energy:.17g}",
            f"charge {atoms.info['total_charge']:.17g}",
            "end",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("unit_name", [None, "atomic"])
@pytest.mark.parametrize(
    "relative, index",
    [("n2p2_4G_examples/C10H2_C10H3plus.xyz", "::16"), ("n2p2_4G_examples/Au2_MgO.xyz", ":3")],
)
def test_n2p2_round_trip(tmp_path, relative, index, unit_name):
    frames = io.read(_data(relative), index)
    length, energy = (units.Bohr, units.Hartree) if unit_name else (1.0, 1.0)
    path = _write_input_data(tmp_path / "input.data", frames, length, energy)
    back = io.read(path, units=unit_name)
    _assert_same_frames(back, frames)
    for a, b in zip(back, frames):
        np.testing.assert_allclose(a.arrays["ref_charges"], b.arrays["ref_charges"], rtol=1e-14)
        assert a.info["total_charge"] == b.info["total_charge"]
        assert a.info["comment"] == b.info["config_type"]
    assert all(a.pbc.all() == ("Au" in relative) for a in back)


def test_n2p2_handwritten_columns_in_atomic_units(tmp_path):
    path = tmp_path / "h2.data"
    path.write_text(
        "begin\ncomment H2 test\n"
        "atom 0.0 0.0 0.0 H 0.1 0.0 1.0 2.0 3.0\n"
        "atom 0.0 0.0 1.4 H -0.1 0.0 -1.0 -2.0 -3.0\n"
        "energy -1.5\ncharge 0.0\nend\n"
    )
    (sniffed,) = io.read(path)  # ASE detects 'runnerdata'; nnip reads it, as is
    assert sniffed.positions[1, 2] == 1.4 and sniffed.get_potential_energy() == -1.5
    (atoms,) = io.read(path, format="n2p2", units="atomic")
    assert atoms.positions[1, 2] == pytest.approx(1.4 * units.Bohr)
    hartree_per_bohr = units.Hartree / units.Bohr
    np.testing.assert_allclose(atoms.get_forces()[0], np.array([1, 2, 3]) * hartree_per_bohr)
    assert atoms.get_potential_energy() == pytest.approx(-1.5 * units.Hartree)
    np.testing.assert_array_equal(atoms.arrays["ref_charges"], [0.1, -0.1])
    assert not atoms.pbc.any() and atoms.info["comment"] == "H2 test"


def test_n2p2_malformed_blocks_name_line_and_structure(tmp_path):
    block = "begin\natom 0 0 0 H 0 0 0 0 0\nenergy 1\nend\n"
    path = tmp_path / "input.data"
    path.write_text(block + "begin\natom 0 0 0 H 0 0 0 0 0\nenergy 1\n")
    with pytest.raises(DataError, match=r"structure 1: line 7: block from line 5 has no 'end'"):
        io.read(path)
    path.write_text(block + "begin\natom 0 0 0 H 0 0 0 0\nend\n")
    with pytest.raises(DataError, match=r"structure 1, field 'atom': line 6: atom line needs 9"):
        io.read(path)
    path.write_text(block + "begin\natom 0 0 0 Xx 0 0 0 0 0\nend\n")
    with pytest.raises(DataError, match=r"structure 1, field 'element'"):
        io.read(path)


# --------------------------------------------------------------------------- labels, keys


def test_custom_keys_units_and_info_defaults(tmp_path):
    atoms = _labelled(bulk("Cu", cubic=True), energy=99.0)  # ASE 'energy' is not the label
    atoms.info.update(REF_energy=-3.0, REF_stress=np.arange(6.0), w=2.0, q=-1.0)
    atoms.new_array("REF_forces", np.ones((4, 3)))
    atoms.new_array("spins", np.arange(4.0))
    path = _write_frames(tmp_path / "custom.xyz", [atoms])
    (got,) = io.read(
        path,
        energy_key="REF_energy",
        forces_key="REF_forces",
        stress_key="REF_stress",
        weight_key="w",
        charge_key="q",
    )
    assert got.get_potential_energy() == -3.0 and got.info["energy"] == 99.0
    np.testing.assert_array_equal(got.get_forces(), np.ones((4, 3)))
    np.testing.assert_array_equal(got.get_stress(), np.arange(6.0))
    info = got.info
    assert (info["weight"], info["total_charge"], info["config_type"]) == (2.0, -1.0, "default")
    assert "REF_energy" not in got.info and "REF_forces" not in got.arrays
    np.testing.assert_array_equal(got.arrays["spins"], np.arange(4.0))
    (atomic,) = io.read(
        path,
        energy_key="REF_energy",
        forces_key="REF_forces",
        stress_key="REF_stress",
        units="atomic",
    )
    assert atomic.get_potential_energy() == pytest.approx(-3.0 * units.Hartree)
    np.testing.assert_allclose(atomic.cell.array, atoms.cell.array * units.Bohr)
    np.testing.assert_allclose(atomic.get_stress(), np.arange(6.0) * units.Hartree / units.Bohr**3)
    (plain,) = io.read(path)
    assert plain.get_potential_energy() == 99.0 and "forces" not in plain.calc.results


def test_virial_becomes_stress_when_no_stress(tmp_path):
    atoms = _labelled(bulk("Cu", cubic=True), energy=-1.0)
    virial = np.array([[1.0, 0.2, 0.0], [0.2, 2.0, 0.0], [0.0, 0.0, 3.0]])
    atoms.info["virial"] = virial
    (got,) = io.read(_write_frames(tmp_path / "virial.xyz", [atoms]))
    np.testing.assert_allclose(got.get_stress(voigt=False), -virial / atoms.get_volume())
    assert "virial" not in got.info


def test_require_labels_names_file_frame_and_field(tmp_path):
    frames = [
        _labelled(bulk("Cu", cubic=True), energy=-1.0, forces=np.zeros((4, 3))) for _ in range(3)
    ]
    frames[1] = _labelled(frames[1], energy=-1.0)
    path = _write_frames(tmp_path / "labels.xyz", frames)
    got = io.read(path)
    io.require_labels(got, ["energy"])
    with pytest.raises(DataError) as info:
        io.require_labels(got, ["forces"])
    assert f"{path}, structure 1, field 'forces'" in str(info.value)
    with pytest.raises(DataError, match=r"^my list, structure 0, field 'stress'"):
        io.require_labels(got, ["stress"], source="my list")


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    path = tmp_path / "nope.xyz"
    with pytest.raises(DataError, match="no such file") as info:
        io.read(path)
    assert info.value.source == str(path) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "name, fmt", [("notes.txt", None), ("bad.xyz", "extxyz"), ("noext", "unknown")]
)
def test_not_a_structure_file(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_text("hello world\nthis is not a structure\n")
    with pytest.raises(DataError, match="cannot read as a structure file") as info:
        io.read(path)
    assert str(path) in str(info.value)
    if fmt is not None:
        assert f"format '{fmt}'" in str(info.value)


def _bad_frames(tmp_path: Path, index: int, **changes) -> Path:
    frames = [
        _labelled(bulk("Cu", cubic=True), energy=-1.0, forces=np.zeros((4, 3))) for _ in range(4)
    ]
    bad = frames[index]
    if "position" in changes:
        bad.positions[1, 0] = changes["position"]
    if "cell" in changes:
        bad.set_cell(changes["cell"], scale_atoms=False)
    if "energy" in changes:
        bad.calc.results["energy"] = changes["energy"]
    if "stress" in changes:  # not the key 'stress': ASE would make it Voigt on reading
        bad.info["my_stress"] = changes["stress"]
    return _write_frames(tmp_path / "bad_frames.xyz", frames)


@pytest.mark.parametrize(
    "index, changes, field, message",
    [
        (2, {"position": np.nan}, "positions", "non-finite"),
        (1, {"energy": np.inf}, "energy", "non-finite"),
        (1, {"cell": [[1.0, 0, 0], [2.0, 0, 0], [0, 0, 3.0]]}, "cell", "singular periodic cell"),
        (3, {"cell": [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 0]]}, "cell", "cell vector 2 is zero"),
        (0, {"stress": np.arange(9.0)}, "stress", "not symmetric"),
    ],
)
def test_bad_frames_name_file_frame_and_field(tmp_path, index, changes, field, message):
    path = _bad_frames(tmp_path, index, **changes)
    with pytest.raises(DataError, match=message) as info:
        io.read(path, stress_key="my_stress")
    assert f"{path}, structure {index}, field '{field}'" in str(info.value)


def test_forces_of_wrong_shape(tmp_path):
    atoms = _labelled(bulk("Cu", cubic=True), energy=-1.0)
    atoms.info["my_forces"] = np.arange(9.0)
    path = _write_frames(tmp_path / "shape.xyz", [atoms])
    with pytest.raises(DataError, match=r"expected shape \(4, 3\), found \(9,\)") as info:
        io.read(path, forces_key="my_forces")
    assert f"{path}, structure 0, field 'forces'" in str(info.value)


def test_no_frames_selected(tmp_path):
    path = _write_frames(tmp_path / "three.xyz", [bulk("Cu")] * 3)
    with pytest.raises(DataError, match="no structures read"):
        io.read(path, "5:")
    with pytest.raises(DataError, match="out of range"):
        io.read(path, -4)


def test_bad_arguments(tmp_path):
    path = _write_frames(tmp_path / "one.xyz", [bulk("Cu")])
    with pytest.raises(ValueError, match="units"):
        io.read(path, units="kcal")
    with pytest.raises(ValueError, match="unknown format"):
        io.read(path, format="not-a-format")
    with pytest.raises(ValueError, match="index"):
        io.read(path, index="a:b")

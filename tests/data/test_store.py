"""On-disk store: lossless round trip on real data, lazy views, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from nnip.data import read
from nnip.data.stats import energy_scale
from nnip.data.store import FrameStore, StoreWriter, is_store, write_store
from nnip.errors import DataError
from nnip.export.model_file import data_fingerprint
from nnip.physics.reference import fit_reference_energies


def _same(a, b):
    assert (a.numbers == b.numbers).all()
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.cell.array, b.cell.array)
    assert (a.pbc == b.pbc).all()
    for key in ("energy", "forces", "stress"):
        assert (key in a.calc.results) == (key in b.calc.results), key
        if key in a.calc.results:
            np.testing.assert_array_equal(a.calc.results[key], b.calc.results[key])
    for key in ("config_type", "weight", "total_charge", "source", "frame_index"):
        assert a.info[key] == b.info[key], key
    assert ("ref_charges" in a.arrays) == ("ref_charges" in b.arrays)
    if "ref_charges" in a.arrays:
        np.testing.assert_array_equal(a.arrays["ref_charges"], b.arrays["ref_charges"])


@pytest.mark.data
@pytest.mark.parametrize("name", ["mlearn/Si/train.xyz", "n2p2_4G_examples/C10H2_C10H3plus.xyz"])
def test_round_trip_is_exact_on_real_data(shared_data, tmp_path, name):
    frames = read(shared_data / name)
    path = write_store([shared_data / name], tmp_path / "s.h5")
    assert is_store(path) and not is_store(shared_data / name)
    store = FrameStore(path)
    assert len(store) == len(frames)
    for k in (0, len(frames) // 2, len(frames) - 1, -1):
        _same(store[k], frames[k])
    # whole-set statistics stream the file and agree with the in-memory versions
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    e0 = fit_reference_energies(frames, elements)
    e0_store = fit_reference_energies(store, elements)
    assert e0_store == pytest.approx(e0, rel=1e-10)
    assert energy_scale(store, e0) == pytest.approx(energy_scale(frames, e0), rel=1e-10)
    fp = data_fingerprint(store)
    assert fp["n_structures"] == len(frames)
    assert fp["n_atoms"] == sum(len(a) for a in frames)
    assert fp["labels"] == data_fingerprint(frames)["labels"]
    assert fp["counts_per_element"] == data_fingerprint(frames)["counts_per_element"]


def test_views_subsets_and_pickling(tmp_path):
    import pickle

    from nnip.demo import make_emt_dataset

    frames = make_emt_dataset(12, seed=0)
    store = FrameStore(write_store(frames, tmp_path / "s.h5"))
    sub = store[np.array([7, 2, 2])]
    assert isinstance(sub, FrameStore) and len(sub) == 3
    _same(sub[0], store[7])
    _same(sub[-1], store[2])
    assert list(sub.n_atoms_each) == [len(frames[7]), len(frames[2]), len(frames[2])]
    assert len(store[3:6]) == 3 and len(store[:0]) == 0
    symbols, counts = sub.composition()
    assert counts.sum() == sum(len(frames[i]) for i in (7, 2, 2))
    assert data_fingerprint(sub)["sha256"] != data_fingerprint(store)["sha256"]
    _same(pickle.loads(pickle.dumps(sub))[0], store[7])
    with pytest.raises(IndexError, match="out of range"):
        store[len(frames)]


def test_bad_input_names_the_file_and_frame(tmp_path):
    from nnip.demo import make_emt_dataset

    frames = make_emt_dataset(3, seed=0)
    frames[1].calc.results["forces"][0, 0] = np.nan
    frames[1].info.update(source="bad.xyz", frame_index=1)
    with pytest.raises(DataError, match=r"bad.xyz.*1.*forces|forces.*bad.xyz"):
        write_store(frames, tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "s.h5.partial").exists()
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not an nnip store"):
        FrameStore(tmp_path / "x.h5")
    with pytest.raises(DataError, match="no structures"):
        with StoreWriter(tmp_path / "empty.h5"):
            pass


def test_cli_convert_and_info(tmp_path, capsys):
    import ase.io

    from nnip.cli.main import main
    from nnip.demo import make_emt_dataset

    a, b = make_emt_dataset(5, seed=0), make_emt_dataset(4, seed=1)
    ase.io.write(tmp_path / "a.xyz", a)
    ase.io.write(tmp_path / "b.xyz", b)
    assert main(["data", "convert", str(tmp_path / "a.xyz"), str(tmp_path / "b.xyz"),
                 "-o", str(tmp_path / "ab.h5")]) == 0
    n = len(a) + len(b)
    assert f"{n} structures" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "ab.h5")]) == 0
    assert f'"n_structures": {n}' in capsys.readouterr().out
    store = FrameStore(tmp_path / "ab.h5")
    assert store[len(a) + 1].info["source"].endswith("b.xyz")
    assert store[len(a) + 1].info["frame_index"] == 1

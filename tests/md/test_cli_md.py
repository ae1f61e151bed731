"""``nnip md`` end to end with a model file: NPT replicas, continuing a finished run."""

from __future__ import annotations

import ase.io
import numpy as np
from ase.build import bulk

from nnip.cli.main import main
from nnip.export.model_file import save_model
from nnip.models import build


def test_nnip_md_runs_replicas_and_continues(tmp_path):
    model = build("painn", elements=["Cu"], cutoff=4.0, n_features=8, n_interactions=1,
                  e0={"Cu": -3.0}, scale=0.3)
    model_path = save_model(model, tmp_path / "m.nnip")
    structure = tmp_path / "cu.xyz"
    ase.io.write(structure, bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2))
    out = tmp_path / "md"
    args = [str(model_path), str(structure), "--ensemble", "npt", "--temperature-K", "300",
            "--timestep-fs", "2", "--steps", "20", "--replicas", "2", "--write-every", "5",
            "--out", str(out)]
    assert main(["md", *args]) == 0
    first = [ase.io.read(out / f"trajectory_{k:03d}.extxyz", ":") for k in range(2)]
    assert [len(f) for f in first] == [5, 5]  # steps 0, 5, ..., 20
    assert first[1][-1].info["step"] == 20
    assert not np.allclose(first[0][-1].positions, first[1][-1].positions)  # independent
    # A rerun with more steps continues from the last frames, writing no duplicate.
    args[args.index("--steps") + 1] = "30"
    assert main(["md", *args]) == 0
    again = ase.io.read(out / "trajectory_000.extxyz", ":")
    assert [a.info["step"] for a in again] == [0, 5, 10, 15, 20, 25, 30]
    log = np.genfromtxt(out / "thermo.csv", delimiter=",", names=True)
    assert list(log["step"][log["system"] == 0]) == [0, 5, 10, 15, 20, 25, 30]
    assert np.isfinite(log["pressure_GPa"]).all() and (log["temperature_K"] > 0).all()
    assert np.ptp(log["volume_A3"]) > 0  # NPT: the cell moves, and continues from the frame
    np.testing.assert_allclose(again[-3].cell.volume, log["volume_A3"][log["step"] == 20][0])
    # Already complete: nothing more to do.
    assert main(["md", *args]) == 0
    assert len(ase.io.read(out / "trajectory_000.extxyz", ":")) == 7

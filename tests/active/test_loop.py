"""``nnip al``: the loop runs with EMT, and SIGKILL at any moment loses no labelled frame."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from nnip.active import load_al_config, run_active_learning
from nnip.active.loop import (
    ExploreConfig,
    SelectConfig,
    _explore,
    _quotas,
    _restart_points,
    _select,
    _temperatures,
    uncertainty_measure,
)
from nnip.errors import ConfigError


def _setup(folder: Path, iterations: int = 2, slow_oracle: bool = False) -> Path:
    frames = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                  "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    ase.io.write(folder / "init.xyz", frames)
    ase.io.write(folder / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2))
    config = {
        "oracle": "tests.active.slow_emt:make" if slow_oracle else "emt",
        "iterations": iterations, "target_uncertain_fraction": 0.0, "state_dir": "state",
        "test": ["init.xyz"],
        "explore": {"structures": ["start.xyz"], "temperatures_K": [600, 1200],
                    "steps": 100, "timestep_fs": 2, "replicas": 2, "sample_every": 20},
        "select": {"threshold_eV_per_A": 0.0, "upper_eV_per_A": 1e3, "max_per_iteration": 4},
        "train": {"data": {"train": ["init.xyz"], "validation_fraction": 0.2},
                  "model": {"arch": "schnet", "cutoff": 4.0,
                            "params": {"n_features": 16, "n_interactions": 2, "n_basis": 10}},
                  "train": {"epochs": 5, "batch_size": 2, "lr": 0.003, "committee": 2}},
    }
    path = folder / "al.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_loop_labels_retrains_and_summarises(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = run_active_learning(_setup(tmp_path), progress=False, say=lambda _: None)
    assert state["phase"] == "done" and len(state["history"]) == 3
    first, second = state["history"][:2]
    assert first["n_train_frames"] == 10 and second["n_train_frames"] == 14
    assert first["n_labelled"] == 4 and first["n_failed"] == 0
    labelled = ase.io.read(tmp_path / "state" / "labelled" / "iter_000.extxyz", ":")
    assert len(labelled) == 4
    for atoms in labelled:  # provenance and real EMT labels
        assert atoms.info["al_oracle"] == "emt" and "K replica" in atoms.info["al_source"]
        reference = atoms.copy()
        reference.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy())
    assert "test_forces_mae_meV_per_A" in first
    assert (tmp_path / "state" / "summary.png").stat().st_size > 10_000
    assert "| 1 | 14 |" in (tmp_path / "state" / "summary.md").read_text()
    # Warm start: iteration 1 was initialised from iteration 0's committee.
    config = yaml.safe_load((tmp_path / "state" / "iter_001" / "train" / "member0" /
                             "config.yaml").read_text())
    assert config["train"]["init_from"].endswith("iter_000/train/model.nnip")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("iter_*/labels/frame_*.extxyz"))}


def test_sigkill_anywhere_then_resume_loses_no_labelled_frame(tmp_path):
    config = _setup(tmp_path, iterations=2, slow_oracle=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "nnip", "al", str(config)]
    state_dir = tmp_path / "state"
    # Kill points: during labelling of iteration 0 (after its first frame), during
    # the training of iteration 1, and during the exploration of iteration 1.
    waits = [lambda: (state_dir / "iter_000" / "labels" / "frame_0000.extxyz").exists(),
             lambda: (state_dir / "iter_001" / "train" / "member0" / "checkpoint.pt").exists(),
             lambda: (state_dir / "iter_001" / "train" / "model.nnip").exists()]
    seen: dict[str, str] = {}
    for ready in waits:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 240
        while not ready() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        now = _digest(state_dir)
        assert all(now.get(name) == digest for name, digest in seen.items())  # none lost
        seen = now
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    final = _digest(state_dir)
    assert all(final[name] == digest for name, digest in seen.items())
    assert len([n for n in final if n.startswith("iter_000")]) == 4
    assert len(ase.io.read(state_dir / "labelled" / "iter_001.extxyz", ":")) == 4
    assert "final model" in finished.stdout


def test_bad_al_configs_are_clear(tmp_path):
    path = _setup(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["train"]["train"]["committee"] = 1
    with pytest.raises(ConfigError, match="committee must be >= 2"):
        load_al_config(raw)
    raw["train"]["train"]["committee"] = 2
    raw["explore"]["temperature"] = 300
    with pytest.raises(ConfigError, match="unknown key.*temperature"):
        load_al_config(raw)
    raw["explore"].pop("temperature")
    raw["select"]["upper_eV_per_A"] = 0.0
    with pytest.raises(ConfigError, match="upper_eV_per_A"):
        load_al_config(raw)


def _frames_with_spreads(spreads, lost=()):
    frames = []
    for k, spread in enumerate(spreads):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.01 * (k + 1), seed=k)
        atoms.info["max_force_uncertainty"] = spread
        if k in lost:
            atoms.info["al_lost_samples"] = 3
        frames.append(atoms)
    return frames


def test_selection_keeps_to_the_trust_window():
    window = SelectConfig(threshold_eV_per_A=0.1, upper_eV_per_A=0.5, max_per_iteration=2)
    frames = _frames_with_spreads([0.05, 0.2, 0.3, 0.9, 0.45, 0.02], lost=(3,))
    chosen, counts = _select(frames, window)
    assert chosen == [2, 4] or chosen == [1, 4]  # starts from the most uncertain candidate
    assert 3 not in chosen and counts["n_candidates"] == 3 and counts["n_past_upper"] == 1
    # uncertain: 3 candidates + 1 past the upper level + 3 samples its trajectory lost
    assert counts["uncertain_fraction"] == pytest.approx(7 / 9)
    # nothing inside the window: the least broken frames past the upper level are taken
    chosen, counts = _select(_frames_with_spreads([0.05, 2.0, 0.7, 0.01]), window)
    assert chosen == [1, 2] and counts["n_candidates"] == 0
    assert _select(_frames_with_spreads([0.05, 0.01]), window)[0] == []


def test_random_selection_draws_uniformly_inside_the_window():
    window = SelectConfig(threshold_eV_per_A=0.1, upper_eV_per_A=0.5, max_per_iteration=3,
                          method="random")
    spreads = [0.2, 0.05, 0.3, 0.9, 0.45, 0.15, 0.25, 0.35, 0.02]
    inside = {0, 2, 4, 5, 6, 7}
    frames = _frames_with_spreads(spreads)
    draws = [tuple(_select(frames, window, seed=s)[0]) for s in range(40)]
    assert all(len(d) == 3 and set(d) <= inside for d in draws)
    assert _select(frames, window, seed=7)[0] == list(draws[7])  # seeded
    # uniform: over 40 draws every candidate is picked, each about half the time
    counts = {i: sum(i in d for d in draws) for i in inside}
    assert all(8 <= c <= 32 for c in counts.values()), counts
    # nothing inside the window: the frames nearest to it
    chosen, _ = _select(_frames_with_spreads([0.05, 2.0, 0.7, 0.6, 0.01]),
                        dataclasses.replace(window, max_per_iteration=2))
    assert chosen == [2, 3]


def test_per_condition_selection_shares_the_labels_among_conditions():
    # 8 candidates from the cold condition (larger measure), 2 from the hot one
    spreads = [0.40, 0.41, 0.42, 0.43, 0.44, 0.45, 0.46, 0.47, 0.15, 0.2]
    frames = _frames_with_spreads(spreads)
    for k, atoms in enumerate(frames):
        atoms.info["al_condition"] = "start[0] 300 K" if k < 8 else "start[0] 800 K"
    for method in ("fps", "random"):
        window = SelectConfig(threshold_eV_per_A=0.1, upper_eV_per_A=0.5,
                              max_per_iteration=4, method=method)
        chosen, _ = _select(frames, dataclasses.replace(window, per_condition=True))
        assert len(chosen) == 4 and {8, 9} <= set(chosen)  # two slots each
        # 6 slots: the hot condition fills only 2, the cold one takes the other 4
        chosen, _ = _select(frames, dataclasses.replace(window, per_condition=True,
                                                        max_per_iteration=6))
        assert len(chosen) == 6 and {8, 9} <= set(chosen)
    assert _quotas([5, 1, 3], 7) == [3, 1, 3] and _quotas([2, 2], 9) == [2, 2]
    assert _quotas([4, 4, 4], 5) == [2, 2, 1]


def test_select_method_is_checked(tmp_path):
    ase.io.write(tmp_path / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    with pytest.raises(ConfigError, match="select.method"):
        load_al_config({"train": {"train": {"committee": 2}},
                        "explore": {"structures": [str(tmp_path / "start.xyz")]},
                        "select": {"method": "top"}})


def _tiny_committee(folder: Path):
    """A two-member SchNet committee for Cu and ``folder/start.xyz`` (4-atom fcc cell)."""
    from nnip.models import Committee, build

    ase.io.write(folder / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    return Committee([build("schnet", ["Cu"], 4.0, n_features=8, n_interactions=1, seed=k)
                      for k in range(2)])


def test_exploration_cuts_trajectories_past_the_upper_level_and_ramps(tmp_path):
    model = _tiny_committee(tmp_path)
    explore = ExploreConfig(structures=[str(tmp_path / "start.xyz")],
                            temperatures_K=[900, 300], steps=40, timestep_fs=1.0,
                            replicas=2, sample_every=10, ramp=True)
    assert _temperatures(explore, 0) == [300] and _temperatures(explore, 5) == [300, 900]
    frames = _explore(model, explore, upper=1e-12, iteration=0, seed=0)
    # every trajectory stops at its first sample (the spread is > 1e-12 at once)
    assert len(frames) == 2 and all(f.info["al_lost_samples"] == 3 for f in frames)
    assert all(" 300 K " in f.info["al_source"] for f in frames)
    frames = _explore(model, explore, upper=1e3, iteration=1, seed=0)
    assert len(frames) == 2 * 2 * 4 and not any("al_lost_samples" in f.info for f in frames)
    # relative measure: spread / (|F| + 1 eV/Å) <= the absolute spread, and it is what
    # the trust window was applied to
    frames = _explore(model, explore, upper=1e3, iteration=1, seed=0, level=1.0)
    assert all(0 < f.info["al_uncertainty"] <= f.info["max_force_uncertainty"]
               for f in frames)
    # the compiled committee explores the same trajectories
    compiled = _explore(model, dataclasses.replace(explore, compile=True), upper=1e3,
                        iteration=1, seed=0, level=1.0)
    assert len(compiled) == len(frames)
    for a, b in zip(frames, compiled):
        assert np.abs(a.positions - b.positions).max() < 1e-8
        assert a.info["al_uncertainty"] == pytest.approx(b.info["al_uncertainty"], rel=1e-6)


def test_restart_last_continues_each_replica_from_its_last_frame_inside_the_window(
        tmp_path, monkeypatch):
    import nnip.md

    model = _tiny_committee(tmp_path)
    explore = ExploreConfig(structures=[str(tmp_path / "start.xyz")], temperatures_K=[900],
                            steps=40, timestep_fs=1.0, replicas=2, sample_every=10,
                            restart="last")
    first = _explore(model, explore, upper=1e3, iteration=0, seed=0)
    assert len(first) == 2 * 4
    # replica 1's last frame is past a (pretend) upper level: it restarts from its
    # frame before; replica 0 from its last one
    level = sorted(f.info["al_uncertainty"] for f in first)[-1]
    last = {r: [f for f in first if f" replica {r} " in f.info["al_source"]] for r in (0, 1)}
    last[1][-1].info["al_uncertainty"] = 2 * level
    points = _restart_points(first, "start[0] 900 K", 2, upper=1.5 * level)
    assert points[0] is last[0][-1] and points[1] is last[1][-2]
    assert _restart_points(first, "start[0] 300 K", 2, upper=1e3) == [None, None]

    built = []
    real = nnip.md.MD

    def recording(model, structures, *args, **kwargs):
        built.append([s.copy() for s in structures])
        return real(model, structures, *args, **kwargs)

    monkeypatch.setattr(nnip.md, "MD", recording)
    frames = _explore(model, explore, upper=1.5 * level, iteration=1, seed=1, previous=first)
    assert len(frames) == 2 * 4 and len(built) == 1
    for start, point in zip(built[0], points):
        assert np.allclose(start.positions, point.positions)
        assert np.allclose(start.get_momenta(), point.get_momenta())
        assert "al_uncertainty" not in start.info  # the frame's selection info stays behind
    # "start": every iteration from the starting structure
    built.clear()
    _explore(model, dataclasses.replace(explore, restart="start"), upper=1e3, iteration=1,
             seed=1, previous=first)
    assert all(np.allclose(s.positions, bulk("Cu", "fcc", a=3.61, cubic=True).positions)
               for s in built[0])
    with pytest.raises(ConfigError, match="explore.restart"):
        load_al_config({"train": {"train": {"committee": 2}},
                        "explore": {"structures": [str(tmp_path / "start.xyz")],
                                    "restart": "first"}})


def test_relative_measure_discounts_atoms_with_large_forces():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.arrays["forces_uncertainty"] = np.array([0.2, 0.05, 0.0, 0.0])
    forces = np.zeros((4, 3))
    forces[0, 0], forces[1, 1] = 4.0, 0.1
    atoms.calc = SinglePointCalculator(atoms, forces=forces)
    assert uncertainty_measure(atoms) == pytest.approx(0.2)
    # atom 0: 0.2 / 5 = 0.04; atom 1: 0.05 / 1.1 = 0.045 -> the small-force atom decides
    assert uncertainty_measure(atoms, level=1.0) == pytest.approx(0.05 / 1.1)


def test_readme_example_makes_its_data_and_takes_overrides(tmp_path):
    """``examples/al_cu``: make_data.py writes EMT-labelled starting files, and al.yaml
    loads with ``--set`` overrides, its paths resolved beside the file."""
    example = Path(__file__).resolve().parents[2] / "examples" / "al_cu"
    (tmp_path / "al.yaml").write_text((example / "al.yaml").read_text())
    subprocess.run([sys.executable, str(example / "make_data.py")], check=True, cwd=tmp_path,
                   env={**os.environ, "NNIP_EXAMPLE_OUT": str(tmp_path)})
    init = ase.io.read(tmp_path / "init.xyz", ":")
    test = ase.io.read(tmp_path / "independent_md.xyz", ":")
    assert len(init) == 10 and len(test) == 40
    for atoms in (init[0], test[-1]):  # EMT labels (extxyz keeps 8 decimals)
        reference = atoms.copy()
        reference.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy())
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-6)
    config = load_al_config(tmp_path / "al.yaml", ["iterations=2", "explore.steps=100",
                                                   "train.train.time_limit_min=1"])
    assert (config.iterations, config.explore.steps) == (2, 100)
    assert config.train["train"]["time_limit_min"] == 1
    assert config.explore.structures == [str(tmp_path / "start.xyz")]
    assert config.train["data"]["train"] == [str(tmp_path / "init.xyz")]
    with pytest.raises(ConfigError, match="section.key=value"):
        load_al_config(tmp_path / "al.yaml", ["iterations"])


def test_a_replica_that_breaks_down_ends_alone_and_is_never_selected_or_restarted_from(
        tmp_path):
    """One replica restarting from atoms 0.3 Å apart (its last frame was inside the trust
    window) stops the batched MD at once: only that replica ends, marked broken, and the
    others run their steps; the broken frame is not a candidate, not a fallback and not a
    restart point (before, the whole batch ended and the replica restarted from the same
    frame every iteration)."""
    model = _tiny_committee(tmp_path)
    explore = ExploreConfig(structures=[str(tmp_path / "start.xyz")], temperatures_K=[300],
                            steps=40, timestep_fs=1.0, replicas=3, sample_every=10,
                            restart="last")
    first = _explore(model, explore, upper=1e3, iteration=0, seed=0)
    assert len(first) == 3 * 4
    bad = [f for f in first if " replica 1 " in f.info["al_source"]][-1]
    bad.positions[1] = bad.positions[0] + [0.3, 0.0, 0.0]
    frames = _explore(model, explore, upper=1e3, iteration=1, seed=1, previous=first)
    broken = [f for f in frames if "al_broken" in f.info]
    assert len(broken) == 1 and " replica 1 " in broken[0].info["al_source"]
    assert "apart" in broken[0].info["al_broken"]
    assert broken[0].info["al_lost_samples"] == 3
    for r in (0, 2):  # the others ran all their steps, from their own last frames
        own = [f for f in frames if f" replica {r} " in f.info["al_source"]]
        assert [f.info["al_source"].split()[-1] for f in own] == ["10", "20", "30", "40"]
    ase.io.write(tmp_path / "explored.extxyz", frames)  # as the loop stores them
    frames = ase.io.read(tmp_path / "explored.extxyz", ":")
    points = _restart_points(frames, "start[0] 300 K", 3, upper=1e3)
    assert points[1] is None and points[0] is not None and points[2] is not None
    chosen, counts = _select(frames, SelectConfig(threshold_eV_per_A=0.0,
                                                  upper_eV_per_A=1e3, max_per_iteration=20))
    assert counts["n_broken_down"] == 1 and counts["n_past_upper"] == 1
    assert not any("al_broken" in frames[i].info for i in chosen) and len(chosen) == 8
    # no frame inside the window: the fallback takes frames past the upper level, never
    # the broken one
    chosen, _ = _select(frames, SelectConfig(threshold_eV_per_A=0.0, upper_eV_per_A=1e-12,
                                             max_per_iteration=20))
    assert len(chosen) == 8 and not any("al_broken" in frames[i].info for i in chosen)

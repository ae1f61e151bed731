"""Active-learning demonstrations: active learning against random sampling.

Systems (``--system``):

- ``cu-emt``: Cu with ASE's EMT as the oracle, from 10 rattled (0.05 Å) copies of one
  fcc cell, exploring at 300 to 1200 K (one more temperature per iteration:
  ``explore.ramp``), trust window 0.1-0.4 eV/Å; stability test 1200 K;
- ``ethanol-xtb``: ethanol with GFN2-xTB (tblite) as the oracle, from 10 rattled (0.1 Å)
  copies of one geometry, exploring at 300, 500 and 800 K (ramped), *relative* trust
  window 0.05-0.3 of ``spread / (|F| + 1 eV/Å)`` (the absolute windows of earlier runs,
  0.1-0.4 and 0.2-0.8 eV/Å, labelled mostly the hottest frames: a molecule's forces
  span 0-10 eV/Å within one trajectory; ``--absolute`` restores 0.2-0.8 eV/Å);
  stability test 500 K. ``--upper`` sets the window's upper level; the loop that beat
  random sampling on ethanol (2026-12-07) ran ``--select random --restart-last --no-ramp
  --upper 1.0``.

Selection uses the committee's calibrated force spread within the trust window.

Recorded per iteration: training-set size, uncertain fraction and errors on an
independent test set (oracle Langevin MD frames that the loop never sees; ASE's
``Langevin`` with ``fixcm=False``, friction 0.02/fs as in the loop's explorations: its
default ``fixcm=True`` over-heats a small molecule, ethanol at 500 K by ~27 % in kinetic
temperature, so the test sets and random pools of the ethanol runs before 2026-12-07 were
hotter than the loop's explorations at the same nominal temperatures). Baseline:
the same number of frames sampled at random from plain oracle MD at the exploration
temperatures, trained with the same settings; the loop's labelled frames are also
retrained from scratch with those settings, so that the two data sets are compared
without the loop's warm starts. Finally each model runs NVT for ``--stability-ps`` (no
stop = stable) and the last frame's energy is compared with the oracle.

Usage (repository root, project environment)::

    python benchmarks/active_learning/al_demo.py --system cu-emt --out runs/al_cu
    # then, on the finished run: error per labelled frame, loop vs random (curve.png)
    python benchmarks/active_learning/al_demo.py --system cu-emt --out runs/al_cu --curve
    # a run whose test set and random pools were made by an older oracle MD: new ones,
    # the loop's committees rescored on the new test set, the random baseline redone
    python benchmarks/active_learning/al_demo.py --system ethanol-xtb --out <run> --retest
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
import yaml
from ase import units
from ase.build import bulk, molecule
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from nnip._files import atomic_write
from nnip.active import make_oracle, run_active_learning
from nnip.export.model_file import load_model
from nnip.md import MD
from nnip.md import Langevin as LangevinBAOAB
from nnip.training import train
from nnip.validate.errors import error_table, predict_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import markdown_table, run_meta, update_json  # noqa: E402

SYSTEMS = {
    "cu-emt": {"oracle": "emt", "explore_K": [300, 600, 900, 1200],
               "test_K": [300, 600, 900, 1200], "stability_K": 1200.0, "threshold": 0.1,
               "upper": 0.4, "cutoff": 4.5, "rattle": 0.05, "iterations": 6},
    "ethanol-xtb": {"oracle": "tblite:GFN2-xTB", "explore_K": [300, 500, 800],
                    "test_K": [300, 500, 800], "stability_K": 500.0, "threshold": 0.05,
                    "upper": 0.3, "relative_level": 1.0, "cutoff": 5.0, "rattle": 0.1,
                    "iterations": 12},
}
TRAIN = {"epochs": 150, "batch_size": 4, "lr": 0.005, "scheduler": "cosine",
         "committee": 3, "time_limit_min": 3.0, "threads": 2}


def _start(system: str):
    if system == "cu-emt":
        return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    return molecule("CH3CH2OH")


def _oracle_md(system, temperatures, n_per_t, every, seed, runs=5):
    """Frames of plain Langevin MD driven by the oracle itself, labelled: ``n_per_t`` per
    temperature, ``every`` steps apart, from ``runs`` independent trajectories (one
    trajectory of a molecule can stay in one conformer: the single-trajectory test sets
    before 2026-12-07 held ethanol 76 % trans at 300 and 500 K, where GFN2-xTB's
    equilibrium is mostly gauche)."""
    oracle = make_oracle(SYSTEMS[system]["oracle"])
    frames = []
    for t in temperatures:
        for r, n in enumerate(np.diff(np.linspace(0, n_per_t, runs + 1).round()).astype(int)):
            atoms = _start(system)
            atoms.calc = oracle.factory(atoms)
            MaxwellBoltzmannDistribution(atoms, temperature_K=t,
                                         rng=np.random.default_rng(seed + 2 * r))
            # fixcm=False: ASE's fixcm=True (deprecated since 3.28) does not sample NVT
            # for small systems of unequal masses (ethanol ran ~27 % too hot at 500 K)
            dyn = Langevin(atoms, 1 * units.fs, temperature_K=t, friction=0.02 / units.fs,
                           fixcm=False, rng=np.random.default_rng(seed + 2 * r + 1))
            dyn.run(200)
            for _ in range(n):
                dyn.run(every)
                frames.append(oracle.label([atoms]).frames[0])
    return frames


def _errors(model, frames):
    table = error_table(predict_frames(model, frames))["overall"]
    return {"energy_mae_meV_per_atom": table["energy_per_atom"]["mae"] * 1e3,
            "forces_mae_meV_per_A": table["forces"]["mae"] * 1e3}


def _stability(system, model, ps):
    temperature = SYSTEMS[system]["stability_K"]
    atoms = _start(system)
    if atoms.pbc.all():
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)  # 108 atoms
    md = MD(model, atoms, LangevinBAOAB(1.0, temperature, 0.02, seed=3),
            temperature_K=temperature, write_every=500, progress=False)
    start = time.perf_counter()
    result = md.run(int(ps * 1000))
    frame = md.atoms()[0]
    predicted = frame.get_potential_energy()
    reference = make_oracle(SYSTEMS[system]["oracle"]).label([frame])
    error = (abs(reference.frames[0].get_potential_energy() - predicted) / len(frame) * 1e3
             if reference.frames else None)
    return {"stable": result.stopped is None, "stopped": result.stopped,
            "simulated_ps": md.state.time_fs / 1000, "final_oracle_error_meV_per_atom": error,
            "seconds": time.perf_counter() - start}


def main() -> None:
    """Run one demonstration and write results.json and results.md into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=list(SYSTEMS), default="cu-emt")
    parser.add_argument("--out", default=None)
    parser.add_argument("--iterations", type=int, default=None,
                        help="default: 6 for cu-emt, 12 for ethanol-xtb")
    parser.add_argument("--stability-ps", type=float, default=50.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="explore with the committee compiled (explore.compile)")
    parser.add_argument("--train-minutes", type=float, default=TRAIN["time_limit_min"],
                        help="training budget per iteration and for each baseline")
    parser.add_argument("--absolute", action="store_true",
                        help="ethanol-xtb: the absolute window 0.2-0.8 eV/Å of the first runs")
    parser.add_argument("--upper", type=float, default=None,
                        help="select.upper_eV_per_A, the trust window's upper level (where "
                             "a trajectory is cut; default 0.4 cu-emt, 0.3 ethanol-xtb)")
    parser.add_argument("--no-ramp", action="store_true",
                        help="explore every temperature from the first iteration "
                             "(explore.ramp: false)")
    parser.add_argument("--select", choices=["fps", "random"], default="fps",
                        help="select.method: farthest-point sampling among the candidates "
                             "(default, the runs recorded before 2026-12-06) or a uniform draw")
    parser.add_argument("--restart-last", action="store_true",
                        help="explore.restart: last: each iteration's trajectories continue "
                             "from the previous iteration's last frames inside the window")
    parser.add_argument("--per-condition", action="store_true",
                        help="select.per_condition: share each iteration's labels evenly "
                             "among the exploration temperatures")
    parser.add_argument("--curve", type=int, nargs="*", default=None, metavar="ITERATION",
                        help="after a finished run in --out: learning curves. At the loop's "
                             "label counts after these iterations (default every third), "
                             "train on the loop's frames from scratch and on as many random "
                             "frames (nested subsets of one pool, --curve-seeds draws)")
    parser.add_argument("--curve-seeds", type=int, default=2)
    parser.add_argument("--random-loop", type=int, nargs="*", default=None, metavar="SEED",
                        help="after a finished run in --out: replay the loop's training with "
                             "random frames of oracle MD in place of its selections (same "
                             "label count per iteration, same warm starts and budget; one "
                             "replay per seed, default seed 0); added to curve.json/png")
    parser.add_argument("--retest", action="store_true",
                        help="after a finished run in --out: a new test set and curve pool "
                             "from the current oracle MD (the old files and results kept "
                             "with the suffix _before), every iteration's committee and the "
                             "from-scratch model rescored on it, the random baseline redone")
    parser.add_argument("--redo-random", action="store_true",
                        help="after a finished run in --out: redo only the random baseline "
                             "(new pool, same number of frames as the loop labelled)")
    args = parser.parse_args()
    TRAIN["time_limit_min"] = args.train_minutes
    torch.set_num_threads(args.threads)
    TRAIN["threads"] = args.threads
    spec = dict(SYSTEMS[args.system])
    if args.absolute:
        spec.update(threshold=0.2, upper=0.8, relative_level=0.0)
    if args.upper is not None:
        spec["upper"] = args.upper
    out = Path(args.out or f"benchmarks/active_learning/runs/{args.system}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    oracle = make_oracle(spec["oracle"])
    initial = []
    iterations = args.iterations or spec["iterations"]
    for k in range(10):  # the start geometry and 9 rattled copies of it
        atoms = _start(args.system)
        atoms.rattle(spec["rattle"] if k else 0.0, seed=k)
        initial.append(oracle.label([atoms]).frames[0])
    ase.io.write(out / "init.xyz", initial)
    ase.io.write(out / "start.xyz", _start(args.system))
    if args.retest:
        # run folders too: a training resumes from a checkpoint left in its folder
        _set_aside(out, ["test.xyz", "curve_pool.xyz", "curve.json", "curve.png",
                         "results.json", "results.md", "random.xyz", "random_run", "curve",
                         "random_loop"])
    if not (out / "test.xyz").exists():
        ase.io.write(out / "test.xyz", _oracle_md(args.system, spec["test_K"], 25, 100, 100))
    model = {"arch": "painn", "cutoff": spec["cutoff"],
             "params": {"n_features": 32, "n_interactions": 2}}
    config = {
        "oracle": spec["oracle"], "iterations": iterations,
        "target_uncertain_fraction": 0.02, "state_dir": str(out / "al"),
        "test": [str(out / "test.xyz")],
        "explore": {"structures": [str(out / "start.xyz")], "temperatures_K": spec["explore_K"],
                    "steps": 1000, "timestep_fs": 1, "replicas": 4, "sample_every": 20,
                    "ramp": not args.no_ramp, "compile": args.compile,
                    "restart": "last" if args.restart_last else "start"},
        "select": {"threshold_eV_per_A": spec["threshold"], "upper_eV_per_A": spec["upper"],
                   "relative_level_eV_per_A": spec.get("relative_level", 0.0),
                   "max_per_iteration": 20, "method": args.select,
                   "per_condition": args.per_condition},
        "train": {"data": {"train": [str(out / "init.xyz")], "validation_fraction": 0.1},
                  "model": model, "train": TRAIN},
    }
    config_path = out / "al.yaml"
    if not config_path.exists():  # a later call (resume, --curve, ...) keeps the run's own
        config_path.write_text(yaml.safe_dump(config))
    elif yaml.safe_load(config_path.read_text()) != config:
        print(f"note: {config_path} differs from this call's flags; the run keeps its own",
              flush=True)
        config = yaml.safe_load(config_path.read_text())
    state = run_active_learning(config_path, progress=False)
    n_labelled = sum(r.get("n_labelled", 0) for r in state["history"])
    if args.curve is not None:
        _learning_curves(args, spec, out, state, model)
        return
    if args.random_loop is not None:
        for seed in args.random_loop or [0]:
            _random_loop(args, spec, out, state, model, seed)
        return
    if args.retest:
        curve = {"points": [], "loop": _rescore_loop(out, state["history"]),
                 "meta_rescore": run_meta(args.threads)}
        (out / "curve.json").write_text(json.dumps(curve, indent=1))
    baseline = _random_baseline(args.system, spec, out, n_labelled, model)
    if args.redo_random:  # keep the loop's rows, replace the random one
        results = json.loads((out / "results.json").read_text())
        results["random"] = {**_errors(baseline.model, ase.io.read(out / "test.xyz", ":")),
                             **_stability(args.system, baseline.model, args.stability_ps),
                             "n_frames": n_labelled, "redone": run_meta(args.threads)}
        _write_results(out, results, args.system, spec, args.stability_ps, n_labelled)
        return
    # The loop's data retrained from scratch exactly as the baseline: compares the data.
    labelled = sorted((out / "al" / "labelled").glob("iter_*.extxyz"))
    scratch_model = out / "active_scratch_run" / "model.nnip"
    rescratch = load_model(scratch_model) if args.retest and scratch_model.exists() else \
        _train_with_start(out, labelled, out / "active_scratch_run", model).model
    final = load_model(state["model"])
    test = ase.io.read(out / "test.xyz", ":")
    meta = run_meta(args.threads)
    results = {"meta": meta, "system": args.system, "select": config["select"],
               "explore": config["explore"], "train": TRAIN, "history": state["history"],
               "n_labelled": n_labelled,
               "active": {**_errors(final, test),
                          **_stability(args.system, final, args.stability_ps)},
               "active, retrained from scratch": {
                   **_errors(rescratch, test),
                   **_stability(args.system, rescratch, args.stability_ps)},
               "random": {**_errors(baseline.model, test),
                          **_stability(args.system, baseline.model, args.stability_ps)}}
    _write_results(out, results, args.system, spec, args.stability_ps, n_labelled)


def _set_aside(out, names):
    """Rename each existing file or folder ``out/<name>`` to ``<stem>_before<suffix>``
    (once: a rerun of ``--retest`` keeps the first set-aside ones)."""
    for name in names:
        path = out / name
        kept = path.with_name(f"{path.stem}_before{path.suffix}")
        if path.exists() and not kept.exists():
            path.rename(kept)


def _rescore_loop(out, history):
    """`_loop_points` with every iteration's committee (its saved model file) evaluated
    again on ``out/test.xyz``."""
    test = ase.io.read(out / "test.xyz", ":")
    points = _loop_points(history)
    for point in points:
        path = out / "al" / f"iter_{point['iteration']:03d}" / "train" / "model.nnip"
        point.update(_errors(load_model(path), test))
        print(json.dumps(point), flush=True)
    return points


def _train_with_start(out, files, run_dir, model, init_from=None):
    """Train (`TRAIN` settings) on the start frames plus ``files``, from the weights of
    the model file ``init_from`` when given."""
    settings = {**TRAIN, "init_from": str(init_from)} if init_from else TRAIN
    return train({"data": {"train": [str(out / "init.xyz"), *map(str, files)],
                           "validation_fraction": 0.1},
                  "model": model, "train": settings,
                  "output": {"run_dir": str(run_dir), "plots": False}},
                 progress=False)


def _random_pool(system, spec, n_labelled):
    """Frames of plain oracle MD at the exploration temperatures, about twice
    ``n_labelled`` (at least 60 per temperature)."""
    per_t = max(60, -(-2 * n_labelled // len(spec["explore_K"])))
    pool = _oracle_md(system, spec["explore_K"], per_t, 20, seed=7)
    if len(pool) < n_labelled:  # the oracle failed on frames: never compare fewer frames
        raise SystemExit(f"random pool has {len(pool)} frames, fewer than the loop's "
                         f"{n_labelled} labels")
    return pool


def _random_baseline(system, spec, out, n_labelled, model):
    """Train on the start frames plus ``n_labelled`` frames drawn at random from
    `_random_pool`."""
    pool = _random_pool(system, spec, n_labelled)
    pick = np.random.default_rng(0).choice(len(pool), size=n_labelled, replace=False)
    ase.io.write(out / "random.xyz", [pool[i] for i in sorted(pick)])
    return _train_with_start(out, [out / "random.xyz"], out / "random_run", model)


def _curve_pool(args, spec, out, n_labelled):
    """The frames of ``out/curve_pool.xyz``, shared by the learning curves and the
    random replays; made by `_random_pool` for ``n_labelled`` labels when missing."""
    path = out / "curve_pool.xyz"
    if not path.exists():  # atomic: replays of several seeds may start at once
        pool = _random_pool(args.system, spec, n_labelled)
        atomic_write(path, lambda handle: ase.io.write(handle, pool, format="extxyz"),
                     binary=False)
    return ase.io.read(path, ":")


def _update_curve(path, change):
    """Apply ``change(curve)`` to ``curve.json`` under a file lock, reading it afresh, so
    that replays of different seeds running at the same time keep each other's rows;
    returns the updated curve."""
    return update_json(path, change, {"points": []})


def _learning_curves(args, spec, out, state, model):
    """Test errors against the number of labelled frames: the loop's committee at each
    iteration (its own history), the loop's frames up to that iteration retrained from
    scratch, and the same number of random frames of plain oracle MD (``--curve-seeds``
    nested draws from one pool); written to ``curve.json`` and ``curve.png`` in ``out``."""
    history = state["history"]
    labelled = sorted((out / "al" / "labelled").glob("iter_*.extxyz"))
    counts = np.cumsum([r.get("n_labelled", 0) for r in history])  # after iteration k
    iterations = args.curve or list(range(2, len(history), 3))
    test = ase.io.read(out / "test.xyz", ":")
    pool = _curve_pool(args, spec, out, int(max(counts[k] for k in iterations)))
    path = out / "curve.json"
    curve = _update_curve(path, lambda c: None)
    done = {(p["kind"], p["n_labelled"], p.get("seed")) for p in curve["points"]}

    def fit(name, files, kind, n, seed=None):
        if (kind, n, seed) in done:  # resumable: finished points are kept
            return
        result = _train_with_start(out, files, out / "curve" / name, model)
        point = {"kind": kind, "n_labelled": n, "seed": seed, **_errors(result.model, test)}
        _update_curve(path, lambda c: c["points"].append(point))
        print(json.dumps(point), flush=True)

    for k in iterations:
        n = int(counts[k])
        files = [p for p in labelled if int(p.stem.split("_")[1]) <= k]
        fit(f"active_{n}", files, "active, retrained from scratch", n)
        for seed in range(args.curve_seeds):
            pick = np.random.default_rng(seed).permutation(len(pool))[:n]  # nested in n
            subset = out / "curve" / f"random_{n}_s{seed}.xyz"
            subset.parent.mkdir(parents=True, exist_ok=True)
            ase.io.write(subset, [pool[i] for i in sorted(pick)])
            fit(f"random_{n}_s{seed}", [subset], "random", n, seed)

    def finish(c):
        c["loop"] = _loop_points(history)
        c["meta"], c["train"] = run_meta(args.threads), TRAIN

    _plot_curve(_update_curve(path, finish), out / "curve.png", args.system)


def _random_loop(args, spec, out, state, model, seed):
    """The loop's training replayed with random frames: before iteration k's training
    the committee has as many random frames of plain oracle MD (nested draws from the
    curve pool) as the loop had labelled by then, starts from iteration k-1's weights and
    trains with the same budget. Only the choice of frames differs from the loop, so its
    per-iteration test errors are the fair baseline of the loop committee's. Resumable:
    finished iterations are kept in ``curve.json``; a killed training resumes from its
    checkpoint."""
    history = state["history"]
    counts = [r.get("n_labelled", 0) for r in history]
    before = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)  # labels before k
    test = ase.io.read(out / "test.xyz", ":")
    pool = _curve_pool(args, spec, out, int(before[-1]))
    if len(pool) < before[-1]:
        raise SystemExit(f"{out / 'curve_pool.xyz'} has {len(pool)} frames, fewer than "
                         f"the loop's {before[-1]} labels")
    order = np.random.default_rng(seed).permutation(len(pool))
    path = out / "curve.json"
    curve = _update_curve(path, lambda c: None)
    rows = curve.get("random_loop", {}).get(str(seed), [])
    root = out / "random_loop" / f"s{seed}"
    for k, n in enumerate(before):
        run_dir = root / f"iter_{k:03d}"
        if any(r["iteration"] == k for r in rows):
            continue
        files = []
        if n:
            files = [run_dir.parent / f"frames_{k:03d}.xyz"]
            files[0].parent.mkdir(parents=True, exist_ok=True)
            ase.io.write(files[0], [pool[i] for i in sorted(order[:n])])
        result = _train_with_start(out, files, run_dir, model,
                                   root / f"iter_{k - 1:03d}" / "model.nnip" if k else None)
        rows.append({"iteration": k, "n_labelled": int(n), **_errors(result.model, test)})

        def add(c, rows=rows):
            c.setdefault("random_loop", {})[str(seed)] = rows
            c["meta_random_loop"], c["train"] = run_meta(args.threads), TRAIN

        curve = _update_curve(path, add)
        print(json.dumps({"seed": seed, **rows[-1]}), flush=True)
    curve = _update_curve(path, lambda c: c.setdefault("loop", _loop_points(history)))
    _plot_curve(curve, out / "curve.png", args.system)


def _loop_points(history):
    """Test errors of the loop's committee per iteration, against the labels it had."""
    counts = np.cumsum([r.get("n_labelled", 0) for r in history])
    return [{"iteration": r["iteration"], "n_labelled": int(c) - r.get("n_labelled", 0),
             "energy_mae_meV_per_atom": r.get("test_energy_mae_meV_per_atom"),
             "forces_mae_meV_per_A": r.get("test_forces_mae_meV_per_A")}
            for r, c in zip(history, counts)]  # the committee trained before labelling


def _plot_curve(curve, path, system):
    from nnip.validate.errors import _figure

    fig, axes = _figure(2)
    for ax, key, unit in zip(axes, ("energy_mae_meV_per_atom", "forces_mae_meV_per_A"),
                             ("meV/atom", "meV/Å")):
        loop = [p for p in curve.get("loop", []) if p[key] is not None]
        ax.plot([p["n_labelled"] for p in loop], [p[key] for p in loop], "o-",
                label="active learning (loop committee)")
        for seed, rows in sorted(curve.get("random_loop", {}).items()):
            ax.plot([r["n_labelled"] for r in rows], [r[key] for r in rows], "v-", alpha=0.8,
                    label=f"random frames, same loop and warm starts (seed {seed})")
        for kind, marker in (("active, retrained from scratch", "s"), ("random", "^")):
            points = [p for p in curve["points"] if p["kind"] == kind]
            if not points:  # a replay-only run has no from-scratch curve
                continue
            ns = sorted({p["n_labelled"] for p in points})
            mean = [np.mean([p[key] for p in points if p["n_labelled"] == n]) for n in ns]
            ax.plot(ns, mean, marker + "--", label=kind if kind != "random" else
                    "random frames of oracle MD (mean of draws)")
            if kind == "random":
                ax.plot([p["n_labelled"] for p in points], [p[key] for p in points], marker,
                        alpha=0.3, color=ax.lines[-1].get_color())
        ax.set_xlabel("labelled frames")
        ax.set_ylabel(f"test MAE ({unit})")
        ax.set_yscale("log")
        ax.set_title(f"{system}: {key.split('_')[0]}")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def _write_results(out, results, system, spec, stability_ps, n_labelled):
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    meta = results["meta"]
    lines = [f"{system}, {meta['machine']}, {meta['date']}, nnip {meta['nnip']}, "
             f"torch {meta['torch']}", "",
             *markdown_table(
                 ["model", "labelled frames", "test E MAE (meV/atom)", "test F MAE (meV/Å)",
                  f"{stability_ps:g} ps NVT at {spec['stability_K']:g} K"],
                 ([name, str(r.get("n_frames", n_labelled)),
                   f"{r['energy_mae_meV_per_atom']:.2f}", f"{r['forces_mae_meV_per_A']:.1f}",
                   "stable" if r["stable"] else f"stopped: {r['stopped']}"]
                  for name, r in results.items() if name in (
                      "active", "active, retrained from scratch", "random")))]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

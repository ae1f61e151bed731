"""Accuracy benchmark: nnip's architectures and mace-torch, side by side, on real DFT data.

Every (task, model) pair is trained on the same split (written once per task under
``runs/splits/``) with the same wall-time budget on this machine, then scored on the
task's test set by the same code (`nnip.validate.compare_frames` / `error_table`).
mace-torch is installed from PyPI into its own environment (``benchmarks/.venvs/mace``,
``torch==2.13.0`` first) on first use; it has no time limit option, so it is stopped at
the budget and finalised from its best checkpoint.

Usage (repository root, project environment)::

    python benchmarks/accuracy/bench.py --tasks mlearn-Si rmd17-ethanol \\
        --models nnip-mace mace-torch --minutes 10
    python benchmarks/accuracy/bench.py --list
    python benchmarks/accuracy/bench.py --tasks mlearn-Ni mlearn-Cu mlearn-Li mlearn-Mo \
        mlearn-Si mlearn-Ge --models nnip-painn nnip-mace mace-torch --minutes 60 --skip-done

Results (Markdown + JSON, one row per task and model, earlier rows kept) go to
``benchmarks/accuracy/results/accuracy.{md,json}``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import torch
from ase.stress import voigt_6_to_full_3x3_stress

import nnip
from nnip.data import read
from nnip.training import train
from nnip.validate import compare_frames, error_table, predict_frames

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import cpu_name, ensure_peer, peer_env  # noqa: E402

DATA = (ROOT / ".." / "shared" / "data").resolve()


@dataclass
class Task:
    """A benchmark data set: files, split, cutoff and the published numbers to beat."""

    train: str
    test: str
    validation: float | int = 0.1  # fraction, or a number of structures
    cutoff: float = 5.0
    per_structure: bool = False  # molecules: report energy per structure (meV)
    published: dict[str, tuple[float, float]] = field(default_factory=dict)
    note: str = ""


_MLEARN_BEST = {"Ni": (0.42, 0.01), "Cu": (0.41, 0.01), "Li": (0.49, 0.01),
                "Mo": (2.24, 0.09), "Si": (2.21, 0.06), "Ge": (1.79, 0.05)}
TASKS: dict[str, Task] = {
    **{f"mlearn-{el}": Task(f"mlearn/{el}/train.xyz", f"mlearn/{el}/test.xyz",
                            published={"best GAP/MTP (Zuo 2020)": (e, f * 1e3)})
       for el, (e, f) in _MLEARN_BEST.items()},
    # MACE paper (Batatia et al. 2022), rMD17 ethanol, 1000 training structures, 950/50.
    "rmd17-ethanol": Task("rmd17_ethanol/train.xyz", "rmd17_ethanol/test.xyz", validation=50,
                          per_structure=True,
                          published={"MACE (paper, other rMD17 sample)": (0.4, 2.1)}),
    "nbmotaw": Task("mlearn_NbMoTaW/train.xyz", "mlearn_NbMoTaW/test.xyz", validation=0.05),
    "water": Task("deepmd_water/train.xyz", "deepmd_water/test.xyz", cutoff=6.0),
}

# nnip architectures at benchmark settings; "nnip-mace" and "mace-torch" share sizes.
NNIP_MODELS: dict[str, dict] = {
    "nnip-schnet": {"arch": "schnet", "params": {"n_features": 64, "n_interactions": 3,
                                                  "n_basis": 32}},
    "nnip-painn": {"arch": "painn", "params": {"n_features": 64, "n_interactions": 3}},
    "nnip-nequip": {"arch": "nequip", "params": {"n_features": 32, "l_max": 2,
                                                  "n_interactions": 3}},
    "nnip-mace": {"arch": "mace", "params": {"n_features": 32, "l_max": 2, "hidden_l_max": 1,
                                              "correlation": 3, "n_interactions": 2}},
}
MACE_TORCH_ARGS = ["--model", "MACE", "--num_channels", "32", "--max_ell", "2", "--max_L", "1",
                   "--correlation", "3", "--num_interactions", "2", "--num_radial_basis", "8",
                   "--radial_MLP", "[64, 64, 64]"]
MODELS = [*NNIP_MODELS, "mace-torch"]

# Shared optimisation settings (both packages): loss weights E:F:S = 10:1:10 on
# per-atom energy, forces and stress, then E weight 100 over the last 30 % of the budget
# (MACE's "stage two"); lr 1e-2 (mace-torch's default); EMA 0.99; float64. The schedule
# and lr were chosen by a sweep of 7-minute runs recorded in README.md.
BATCH, LR = 4, 1e-2
FINAL_ENERGY_WEIGHT, FINAL_FRACTION = 100.0, 0.3
SCHEDULE = f"lr {LR:g}, E×{FINAL_ENERGY_WEIGHT:g} last {FINAL_FRACTION:.0%}"
OLD_SCHEDULE = "lr 0.003 plateau"  # rows measured before 2026-11-24 15:00 UTC




def _cutoff_override(task_name: str, task: Task) -> float | None:
    """``task``'s cutoff where ``--cutoff`` changed it from the task's own, else None."""
    return None if task.cutoff == TASKS[task_name].cutoff else task.cutoff


def _cutoff_tag(task_name: str, task: Task) -> str:
    """Run-folder suffix of a task whose cutoff was overridden (``--cutoff``)."""
    cutoff = _cutoff_override(task_name, task)
    return "" if cutoff is None else f"-r{cutoff:g}"


def make_split(name: str, task: Task, out: Path) -> dict[str, Path]:
    """Write the task's train/validation/test files once (seed 0) and return their paths.

    Safe when several benchmark processes start together (one per model): the first
    writes the split under a lock, each file to a temporary name then renamed, and the
    others wait for it. (Without the lock, a run of 2026-12-06 read a half-written train
    file: its mace-torch model trained on 1 419 of 5 018 NbMoTaW frames, none with Nb.)
    """
    folder = out / "splits" / name
    paths = {k: folder / f"{k}.xyz" for k in ("train", "valid", "test")}
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(p.is_file() for p in paths.values()):
            return paths
        frames = read(DATA / task.train)
        n_valid = (task.validation if isinstance(task.validation, int)
                   else max(1, round(task.validation * len(frames))))
        order = np.random.default_rng(0).permutation(len(frames))
        valid = set(order[:n_valid].tolist())
        parts = {"valid": [frames[i] for i in sorted(valid)],
                 "train": [f for i, f in enumerate(frames) if i not in valid],
                 "test": read(DATA / task.test)}
        for key, part in parts.items():
            tmp = paths[key].with_name(paths[key].name + ".tmp")
            ase.io.write(tmp, part, format="extxyz")
            os.replace(tmp, paths[key])
    return paths


def _row(task_name: str, task: Task, model: str, pred, wall: float, epochs: int,
         details: dict) -> dict:
    table = error_table(pred)["overall"]
    per_frame = np.abs(pred.energy_pred - pred.energy_ref)[pred.has_energy]
    row = {"task": task_name, "model": model, "epochs": epochs, "wall_time_s": wall,
           "energy_mae_meV_per_atom": table["energy_per_atom"]["mae"] * 1e3,
           "energy_mae_meV": float(per_frame.mean()) * 1e3,
           "forces_mae_meV_per_A": table["forces"]["mae"] * 1e3,
           "forces_rmse_meV_per_A": table["forces"]["rmse"] * 1e3,
           "stress_mae_GPa": (table["stress"]["mae"] / nnip.units.GPa
                              if "stress" in table else None),
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), **details}
    return row


def _variant_value(value: Any) -> str:
    """A variant's value as the schedule column shows it."""
    if isinstance(value, dict):
        return json.dumps(value)
    return value if isinstance(value, str) else f"{value:g}"


def run_nnip(name: str, task_name: str, task: Task, split: dict[str, Path], out: Path,
             minutes: float, threads: int, compile_: bool = False,
             final_energy_weight: float = FINAL_ENERGY_WEIGHT,
             variant: dict | None = None) -> dict:
    """Train one nnip architecture within the budget and score it on the test set.

    ``variant`` overrides the shared recipe (keys ``energy_weight``, ``weight_decay``,
    ``dtype``: the model's float type, ``params``: model hyperparameters merged into the
    architecture's defaults, ``huber_delta``: Huber instead of squared errors, with this
    threshold in each property's unit).
    """
    spec = NNIP_MODELS[name]
    variant = variant or {}
    suffix = (("-compiled" if compile_ else "")
              + ("" if final_energy_weight == FINAL_ENERGY_WEIGHT
                 else f"-final{final_energy_weight:g}")
              + "".join(f"-{k}{json.dumps(v, separators=(',', ':'))}"
                        for k, v in sorted(variant.items())))
    suffix = re.sub(r"[^A-Za-z0-9_.,:=+-]", "", suffix)
    config = {
        "data": {"train": [str(split["train"])], "validation": [str(split["valid"])],
                 "test": [str(split["test"])]},
        "model": {"arch": spec["arch"], "cutoff": task.cutoff,
                  "dtype": variant.get("dtype", "float64"),
                  "params": {**spec["params"], **variant.get("params", {})}},
        "loss": {"energy_weight": variant.get("energy_weight", 10.0), "forces_weight": 1.0,
                 "stress_weight": 10.0,
                 "final_energy_weight": final_energy_weight, "final_fraction": FINAL_FRACTION,
                 **({"kind": "huber", "huber_delta": variant["huber_delta"]}
                    if "huber_delta" in variant else {})},
        "train": {"epochs": 100000, "batch_size": BATCH, "lr": LR, "scheduler": "cosine",
                  "min_lr": 1e-5, "weight_decay": variant.get("weight_decay", 0.0),
                  "ema_decay": 0.99, "time_limit_min": minutes, "seed": 0,
                  "checkpoint_every": 1000, "threads": threads, "compile": compile_},
        "output": {"run_dir": str(out / name / (task_name + _cutoff_tag(task_name, task) + suffix)),
                   "license": "benchmark"},
    }
    if Path(config["output"]["run_dir"]).exists():  # a benchmark run starts afresh
        shutil.rmtree(config["output"]["run_dir"])
    start = time.perf_counter()
    result = train(config, progress=True)
    wall = time.perf_counter() - start
    pred = predict_frames(result.model, read(split["test"]), batch_size=8)
    return _row(task_name, task, name, pred, wall, len(result.history),
                {"params": result.config.model.params})


def _mace_best_epoch(checkpoints: Path, suffix: str = "") -> int | None:
    """Epoch of mace-torch's kept checkpoint (stage two: ``suffix="_swa"``)."""
    epochs = [int(m.group(1)) for p in checkpoints.glob("*.pt")
              if (m := re.search(rf"_epoch-(\d+){suffix}\.pt$", p.name))]
    return max(epochs) if epochs else None


def _mace_files(split: dict[str, Path], folder: Path) -> dict[str, Path]:
    """The split with labels under REF_* keys (mace-torch's recommended names)."""
    out = {}
    for key, path in split.items():
        frames = []
        for atoms in read(path):
            results = atoms.calc.results
            copy = atoms.copy()
            copy.calc = None
            copy.info["REF_energy"] = float(results["energy"])
            copy.arrays["REF_forces"] = np.asarray(results["forces"])
            if "stress" in results:
                stress = np.asarray(results["stress"])
                copy.info["REF_stress"] = (stress if stress.shape == (3, 3) else
                                           voigt_6_to_full_3x3_stress(stress))
            frames.append(copy)
        out[key] = folder / f"{key}_mace.xyz"
        ase.io.write(out[key], frames, format="extxyz")
    return out


def run_mace_torch(task_name: str, task: Task, split: dict[str, Path], out: Path,
                   minutes: float, threads: int) -> dict:
    """Train mace-torch within the budget (stopped, then finalised) and score it.

    The same wall-time schedule as nnip's: stage one for ``1 - FINAL_FRACTION`` of the
    budget, then mace-torch restarts from its kept (best) checkpoint of epoch k with
    ``--start_swa k``, so that its stage two (energy weight ``FINAL_ENERGY_WEIGHT``, lower
    lr) runs for the rest. mace-torch counts stage two in epochs; restarting is how its
    start is set by time.
    """
    python = ensure_peer("mace")
    folder = out / "mace-torch" / (task_name + _cutoff_tag(task_name, task))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = _mace_files(split, folder)
    has_stress = any("REF_stress" in a.info for a in ase.io.read(files["train"], ":"))
    env = peer_env("mace")
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    train_script = Path(python).parent / "mace_run_train"
    base = [str(train_script), "--name", "mace", "--work_dir", str(folder), "--seed", "0",
            "--train_file", str(files["train"]), "--valid_file", str(files["valid"]),
            "--E0s", "average", "--r_max", str(task.cutoff), *MACE_TORCH_ARGS,
            "--energy_key", "REF_energy", "--forces_key", "REF_forces",
            "--stress_key", "REF_stress", "--loss", "stress" if has_stress else "weighted",
            "--energy_weight", "10", "--forces_weight", "1", "--stress_weight", "10",
            "--batch_size", str(BATCH), "--valid_batch_size", "8", "--lr", str(LR),
            "--ema", "--ema_decay", "0.99", "--amsgrad", "--scheduler_patience", "15",
            "--lr_factor", "0.5", "--device", "cpu", "--default_dtype", "float64",
            "--eval_interval", "1", "--restart_latest", "--save_cpu"]
    log = (folder / "train.log").open("w")
    start = time.perf_counter()

    def train(extra: list[str], seconds: float) -> None:
        try:
            subprocess.run([*base, *extra, "--max_num_epochs", "100000"], env=env,
                           stdout=log, stderr=subprocess.STDOUT, timeout=max(seconds, 1.0),
                           check=True)
        except subprocess.TimeoutExpired:
            pass  # this stage's time is spent
        log.flush()

    swa = ["--swa", "--start_swa", "99999", "--swa_lr", str(LR / 10),
           "--swa_energy_weight", str(FINAL_ENERGY_WEIGHT), "--swa_forces_weight", "1",
           "--swa_stress_weight", "10"]
    # stage one with stage two configured but out of reach: its checkpoints then carry
    # the optimizer's stage-two learning rate, which a restart into stage two needs
    # (mace-torch 0.3.16 fails with KeyError 'swa_lr' after a plain stage-one checkpoint)
    train(swa, (1 - FINAL_FRACTION) * minutes * 60)
    start_two = _mace_best_epoch(folder / "checkpoints")
    if start_two is None:
        raise RuntimeError(f"mace-torch wrote no checkpoint in stage one; "
                           f"see {folder / 'train.log'}")
    # restarted at epoch k, mace-torch lowers the lr to swa_lr only from an epoch > k:
    # stage two from k + 1, as an uninterrupted run has it (from k, its first stage-two
    # epoch runs at the stage-one lr with the new weights: Si forces 155 -> 561 meV/Å RMSE)
    start_two += 1
    swa[swa.index("--start_swa") + 1] = str(start_two)
    train(swa, minutes * 60 - (time.perf_counter() - start))
    wall = time.perf_counter() - start
    epochs_run = len(re.findall(r"Epoch \d+:", (folder / "train.log").read_text()))
    epoch = _mace_best_epoch(folder / "checkpoints")
    stage_two = _mace_best_epoch(folder / "checkpoints", "_swa")
    if stage_two:  # mace-torch wants start_swa < max_num_epochs; loading ignores it
        swa[swa.index("--start_swa") + 1] = str(min(start_two, stage_two - 1))
    final = base + swa
    # Rerun with max_num_epochs at the checkpoint: loads it and only saves the model.
    subprocess.run([*final, "--max_num_epochs", str(stage_two or epoch)], env=env,
                   stdout=log, stderr=subprocess.STDOUT, check=True)
    model = folder / ("mace_stagetwo.model" if stage_two else "mace.model")
    predicted = folder / "test_predicted.xyz"
    subprocess.run([str(python), str(HERE / "peers" / "mace_predict.py"), str(model),
                    str(files["test"]), str(predicted)], env=env, check=True)
    pred = compare_frames(read(split["test"]), read(predicted))
    return _row(task_name, task, "mace-torch", pred, wall, epochs_run,
                {"params": " ".join(MACE_TORCH_ARGS), "best_epoch": stage_two or epoch,
                 "stage_two_from_epoch": start_two})


def markdown(rows: list[dict], meta: dict) -> str:
    """Results tables, one per task."""
    machines = sorted({r.get("machine", meta["machine"]) for r in rows})
    lines = [f"Accuracy benchmark, nnip {meta['nnip']}, torch {meta['torch']}; CPUs: "
             f"{', '.join(f'{chr(65 + k)} = {m}' for k, m in enumerate(machines))} "
             "(column 'CPU'). Test-set mean absolute errors; all models of a task share "
             "the split; compare rows with the same budget, threads, schedule and CPU "
             "(epochs per minute differ between CPUs; rows run with 1 thread ran two at a "
             "time, one per core).", ""]
    cpu = {m: chr(65 + k) for k, m in enumerate(machines)}
    for name in TASKS:
        task_rows = [r for r in rows if r["task"] == name]
        if not task_rows:
            continue
        task = TASKS[name]
        e_unit = "meV" if task.per_structure else "meV/atom"
        lines += [f"### {name}", "",
                  f"| model | budget (min) | threads | schedule | epochs | E MAE ({e_unit}) | "
                  "F MAE (meV/Å) | stress MAE (GPa) | wall time (s) | date | CPU |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, (e, f) in task.published.items():
            lines.append(f"| {label} | – | – | – | – | {e} | {f:g} | – | – | published | – |")
        for r in task_rows:
            e = r["energy_mae_meV"] if task.per_structure else r["energy_mae_meV_per_atom"]
            s = f"{r['stress_mae_GPa']:.3f}" if r["stress_mae_GPa"] is not None else "–"
            lines.append(f"| {r['model']} | {r['minutes']:g} | {r['threads']} | "
                         f"{r.get('schedule', OLD_SCHEDULE)} | {r['epochs']} | {e:.2f} | "
                         f"{r['forces_mae_meV_per_A']:.1f} | {s} | {r['wall_time_s']:.0f} | "
                         f"{r['date']} | {cpu[r.get('machine', meta['machine'])]} |")
        lines.append("")
    return "\n".join(lines)


def _merge_row(results: Path, row: dict, meta: dict) -> list[dict]:
    """Replace the (task, model, budget, settings, CPU, date) row in
    results/accuracy.{json,md}; returns all rows.

    Safe when several benchmark processes share the results folder (``--threads 1`` runs
    side by side): the file is re-read and rewritten under an exclusive lock.
    """
    json_path = results / "accuracy.json"
    with open(results / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(json_path.read_text())["rows"] if json_path.is_file() else []
        key = lambda r: (r["task"], r["model"], r["minutes"],  # noqa: E731
                         r.get("compiled", False), r.get("final_energy_weight"),
                         json.dumps(r.get("variant"), sort_keys=True), r.get("cutoff"),
                         r.get("machine"), r.get("date"))  # a rerun on another day is kept
        rows = [r for r in rows if key(r) != key(row)] + [row]
        rows.sort(key=lambda r: (list(TASKS).index(r["task"]), r["minutes"],
                                 MODELS.index(r["model"])))
        json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (results / "accuracy.md").write_text(markdown(rows, meta))
    return rows


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mlearn-Si", "rmd17-ethanol"],
                        choices=list(TASKS))
    parser.add_argument("--models", nargs="+", default=["nnip-mace", "mace-torch"],
                        choices=MODELS)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="training wall-time budget per task and model")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(HERE / "runs"))
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--skip-done", action="store_true",
                        help="skip (task, model) pairs that already have a row with this "
                        "budget, so that a long grid can be run in several sittings")
    parser.add_argument("--list", action="store_true", help="list tasks and models")
    parser.add_argument("--compile", action="store_true",
                        help="nnip models train with train.compile (fused steps)")
    parser.add_argument("--final-energy-weight", type=float, default=FINAL_ENERGY_WEIGHT,
                        help="nnip models: energy weight of the final stage (shared "
                             f"schedule: {FINAL_ENERGY_WEIGHT:g})")
    parser.add_argument("--energy-weight", type=float, default=None,
                        help="nnip models: energy weight before the final stage (shared: 10)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="nnip models: AdamW weight decay (shared: 0)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="nnip models: the float type they train in (shared: float64; "
                             "float32 trains about twice as many epochs per minute on CPU)")
    parser.add_argument("--cutoff", type=float, default=None,
                        help="cutoff radius in Å for every model of the run, nnip and "
                             "mace-torch alike (default: the task's, 5 Å; water 6 Å)")
    parser.add_argument("--huber-delta", type=float, default=None,
                        help="nnip models: Huber loss with this threshold (eV/atom, eV/Å, "
                             "eV/Å³) instead of squared errors (shared: squared errors)")
    parser.add_argument("--params", type=json.loads, default=None,
                        help="nnip models: JSON of model hyperparameters to override, "
                             "e.g. '{\"n_interactions\": 2}'")
    args = parser.parse_args()
    if args.list:
        for name, task in TASKS.items():
            print(f"{name:16s} {task.train} / {task.test}")
        print("models:", " ".join(MODELS))
        return
    if not DATA.is_dir():
        raise SystemExit(f"data not found at {DATA}")
    torch.set_num_threads(args.threads)  # training and the test predictions
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    json_path = results / "accuracy.json"
    rows = json.loads(json_path.read_text())["rows"] if json_path.is_file() else []
    meta = {"machine": cpu_name(), "nnip": nnip.__version__,
            "torch": torch.__version__}
    variant = {k: v for k, v in (("energy_weight", args.energy_weight),
                                 ("weight_decay", args.weight_decay),
                                 ("dtype", args.dtype),
                                 ("huber_delta", args.huber_delta),
                                 ("params", args.params)) if v is not None}
    for task_name in args.tasks:
        task = TASKS[task_name]
        if args.cutoff is not None:
            task = replace(task, cutoff=args.cutoff)
        split = make_split(task_name, task, out)
        for model in args.models:
            if args.skip_done and any(
                    (r["task"], r["model"], r["minutes"], r.get("compiled", False),
                     r.get("cutoff")) ==
                    (task_name, model, args.minutes, args.compile,
                     _cutoff_override(task_name, task)) for r in rows):
                print(f"=== {task_name} / {model}: done, skipped", flush=True)
                continue
            print(f"=== {task_name} / {model} ({args.minutes:g} min)", flush=True)
            try:
                if model == "mace-torch":
                    row = run_mace_torch(task_name, task, split, out, args.minutes,
                                         args.threads)
                else:
                    row = run_nnip(model, task_name, task, split, out, args.minutes,
                                   args.threads, args.compile, args.final_energy_weight,
                                   variant)
            except (RuntimeError, subprocess.CalledProcessError, nnip.errors.NNIPError) as err:
                print(f"!!! {task_name} / {model} failed, no row written: {err}", flush=True)
                continue
            row["minutes"] = args.minutes
            row["threads"] = args.threads
            row["machine"] = meta["machine"]  # epochs per minute depend on the CPU
            row["schedule"] = SCHEDULE
            if model != "mace-torch" and args.final_energy_weight != FINAL_ENERGY_WEIGHT:
                row["final_energy_weight"] = args.final_energy_weight
                row["schedule"] = SCHEDULE.replace(f"E×{FINAL_ENERGY_WEIGHT:g}",
                                                   f"E×{args.final_energy_weight:g}")
            if variant and model != "mace-torch":
                row["variant"] = variant
                row["schedule"] += "".join(
                    f", {k.replace('_', ' ')} {_variant_value(v)}" for k, v in variant.items())
            if _cutoff_override(task_name, task) is not None:
                row["cutoff"] = task.cutoff
                row["schedule"] += f", cutoff {task.cutoff:g} Å"
            if args.compile and model != "mace-torch":
                row["compiled"] = True
                row["schedule"] += ", compiled"
            rows = _merge_row(results, row, meta)
            print(markdown([row], meta), flush=True)


if __name__ == "__main__":
    main()

"""Long-range electrostatics on real data: the same model with and without the Coulomb term.

Tasks (``--tasks``):

- ``c10h2``: ``n2p2_4G_examples/C10H2_C10H3plus.xyz`` (neutral C10H2 and protonated
  C10H3+, total charge in the frame info), random 75/25 % split (seed 0), reference
  Hirshfeld charges used as charge targets;
- ``au2mgo``: ``n2p2_4G_examples/Au2_MgO.xyz`` (Au2 on MgO(001), with and without Al
  dopants; 18 frames), random 14/4 split (seed 0), charge targets;
- ``water``: ``deepmd_water`` (64 H2O, periodic; no reference charges, so the charges
  are learned from energies and forces alone), its train/test files.

For each task two PaiNN models train for the same wall time with the same settings;
``+coulomb`` adds `nnip.physics.electrostatics.Electrostatics` (charges read from the
PaiNN's own features, ``--charges shared``, or predicted by a second PaiNN of the same
size, ``--charges separate``; Gaussian-damped Coulomb, Ewald/PME for periodic cells,
total-charge constraint).
Reported: test energy MAE (meV/atom), force MAE (meV/Å), and for the Coulomb model the
charge MAE (me) and R^2 of predicted against reference charges.

``--epochs N`` trains every model N epochs (equal epochs) instead of for ``--minutes``
of wall time (equal time: the Coulomb model, slower per epoch, runs fewer epochs).

``--folds K`` (c10h2, au2mgo) replaces the single split by K-fold cross-validation
(each finished fold is kept in its folder, so an interrupted run resumes):
both models train on every fold's K-1 parts and are tested on the held-out one, so every
frame is a test frame once; the table gives the mean and standard error of the fold MAEs
(meV/atom, meV/Å) and on how many folds the Coulomb model wins
(``results/electrostatics_cv.json``). On ``au2mgo`` it also reports the dopants' effect
on the Au2 geometry's energy from the out-of-fold predictions (`au2_energetics`).

Usage (repository root, project environment)::

    python benchmarks/accuracy/electrostatics.py --tasks c10h2 au2mgo --minutes 6
    python benchmarks/accuracy/electrostatics.py --tasks au2mgo --folds 6 --minutes 2 \
        --params '{"n_features": 64, "n_interactions": 1}' --smearing 2 --charge-model qeq
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

from nnip.export.model_file import load_model
from nnip.training import train
from nnip.validate.errors import error_table, predict_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import markdown_table, run_meta, update_json  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HERE = Path(__file__).resolve().parent

TASKS = {
    "c10h2": {"file": "n2p2_4G_examples/C10H2_C10H3plus.xyz", "train_fraction": 0.75,
              "cutoff": 4.0},
    "au2mgo": {"file": "n2p2_4G_examples/Au2_MgO.xyz", "n_train": 14, "cutoff": 5.0},
    "water": {"train": "deepmd_water/train.xyz", "test": "deepmd_water/test.xyz",
              "cutoff": 5.0},
}


def _split(task: str, out: Path) -> tuple[Path, Path]:
    spec = TASKS[task]
    if "train" in spec:
        return DATA / spec["train"], DATA / spec["test"]
    frames = ase.io.read(DATA / spec["file"], ":")
    order = np.random.default_rng(0).permutation(len(frames))
    n_train = spec.get("n_train") or int(round(spec["train_fraction"] * len(frames)))
    train_path, test_path = out / "train.xyz", out / "test.xyz"
    ase.io.write(train_path, [frames[i] for i in sorted(order[:n_train])])
    ase.io.write(test_path, [frames[i] for i in sorted(order[n_train:])])
    return train_path, test_path


def _weights_tag(element_weights: dict[str, float] | None) -> str:
    """``_wAu20`` for ``{"Au": 20}``: the folder-name part of ``--element-weights``."""
    return "_w" + "".join(f"{k}{v:g}" for k, v in sorted(element_weights.items())) \
        if element_weights else ""


CHARGES_FIRST = 0.3
"""``loss.charges_first_fraction`` of the ``-cf`` charge models."""

ENERGY_WEIGHTS = (10.0, 100.0)
"""``loss.energy_weight`` and ``loss.final_energy_weight`` of every model (per-atom energy
in eV against forces in eV/Å); ``--energy-weights`` sets them."""

BATCH_SIZE = 4
"""``train.batch_size`` of every model (structures per optimiser step); ``--batch-size``."""

SEED = 0
"""``train.seed`` of every model (initial weights, validation split, batches); ``--seed``."""


def run(task: str, coulomb: bool, minutes: float, threads: int, out: Path,
        train_path: Path, test_path: Path, params: dict, smearing: float = 1.0,
        shared: bool = True, charges_weight: float = 10.0, charge_model: str = "local",
        element_weights: dict[str, float] | None = None, epochs: int = 0) -> dict:
    """Train one model on ``train_path`` and return its errors on ``test_path``.

    ``epochs`` > 0: train that many epochs (cosine over them) instead of for ``minutes``.

    ``shared``: the charges are a readout of the PaiNN's own features (one network);
    otherwise a second PaiNN of the same size predicts them. ``charges_weight``: loss
    weight of the reference charges (0: charges learned from energies and forces alone).
    ``charge_model``: ``local``, ``qeq`` (charge equilibration, Coulomb energy of the
    charges) or ``qeq-full`` (``qeq_energy: full``), see `Electrostatics`; a ``-ce``
    suffix adds the charge-dependent local energy (``charge_energy``), ``-mlp`` its network
    form (``charge_energy: mlp``, the charge an input beside the local features), a ``-cf`` suffix
    a charges-only first stage (``loss.charges_first_fraction`` = `CHARGES_FIRST`).
    ``element_weights``: ``loss.element_weights`` (both models; forces and charges).
    """
    name = f"{task}_coulomb_s{smearing:g}{'_shared' if shared else ''}" if coulomb \
        else f"{task}_plain"
    if coulomb and charges_weight != 10.0:
        name += f"_q{charges_weight:g}"
    if coulomb and charge_model != "local":
        name += f"_{charge_model}"
    name += _weights_tag(element_weights) + (f"_e{epochs}" if epochs else "") + (
        f"_seed{SEED}" if SEED else "")
    model = {"arch": "painn", "cutoff": TASKS[task]["cutoff"], "params": params}
    variant = charge_model.split("-")  # e.g. qeq-ce-cf: charge model, then options
    if coulomb:
        model["electrostatics"] = {"smearing": smearing, "arch": "shared"} if shared else \
            {"smearing": smearing, "params": params}
        model["electrostatics"]["charge_model"] = variant[0]
        if "full" in variant:
            model["electrostatics"]["qeq_energy"] = "full"
        if "ce" in variant:  # the charge-dependent local energy a_i q_i + b_Z q_i^2
            model["electrostatics"]["charge_energy"] = True
        if "mlp" in variant:  # the same as a network of the local features and q_i
            model["electrostatics"]["charge_energy"] = "mlp"
    config = {
        "data": {"train": [str(train_path)], "validation_fraction": 0.1},
        "model": model,
        "loss": {"energy_weight": ENERGY_WEIGHTS[0], "forces_weight": 1.0,
                 "charges_weight": charges_weight,
                 "final_energy_weight": ENERGY_WEIGHTS[1], "final_fraction": 0.2,
                 "element_weights": element_weights or {}},
        "train": {"epochs": epochs or 100000, "batch_size": BATCH_SIZE, "lr": 0.005,
                  "scheduler": "cosine", "time_limit_min": 0.0 if epochs else minutes,
                  "threads": threads, "seed": SEED},
        "output": {"run_dir": str(out / name), "plots": False},
    }
    if coulomb and "cf" in variant:  # charges first, as the 4G-HDNNP
        config["loss"]["charges_first_fraction"] = CHARGES_FIRST
    start = time.perf_counter()
    result = train(config, progress=False)
    wall = time.perf_counter() - start
    test = ase.io.read(test_path, ":")
    fitted = load_model(result.model_path)
    predictions = predict_frames(fitted, test)
    errors = error_table(predictions)
    table = errors["overall"]
    label = f"painn+coulomb σ={smearing:g}Å, {'shared' if shared else '2nd net'}"
    if charges_weight != 10.0:
        label += f", q weight {charges_weight:g}"
    if charge_model != "local":
        label += f", {charge_model}"
    if element_weights:
        label += ", element weights " + json.dumps(element_weights, sort_keys=True)
    row = {"task": task, "model": label if coulomb else "painn",
           "minutes": round(wall / 60, 1) if epochs else minutes,
           "epochs": len(result.history), "seed": SEED,
           "energy_mae_meV_per_atom": table["energy_per_atom"]["mae"] * 1e3,
           "forces_mae_meV_per_A": table["forces"]["mae"] * 1e3, "wall_s": round(wall),
           "forces_mae_meV_per_A_by_element": {
               symbol: e["forces"]["mae"] * 1e3 for symbol, e in errors["per_element"].items()
               if "forces" in e},
           # per test frame, in the test file's order: reference and predicted total energy
           "energies_eV": [[float(r), float(p)] for r, p in
                           zip(predictions.energy_ref, predictions.energy_pred)]}
    if "charges" in table:
        row["charges_mae_me"] = table["charges"]["mae"] * 1e3
        row["charges_r2"] = table["charges"]["r2"]
        row["charges_mae_me_by_element"] = {
            symbol: e["charges"]["mae"] * 1e3 for symbol, e in errors["per_element"].items()
            if "charges" in e}
    return row


def table(rows: list[dict]) -> list[str]:
    """The Markdown table of the README (rows ordered by task)."""
    order = {name: k for k, name in enumerate(TASKS)}
    return markdown_table(
        ["task", "model", "features × layers", "minutes", "epochs", "E MAE (meV/atom)",
         "F MAE (meV/Å)", "charge MAE (me)", "charge R²"],
        ([r["task"], r["model"] + (f", seed {r['seed']}" if r.get("seed") else ""),
          f"{r['params']['n_features']} × {r['params']['n_interactions']}",
          f"{r['minutes']:g}", str(r["epochs"]), f"{r['energy_mae_meV_per_atom']:.2f}",
          f"{r['forces_mae_meV_per_A']:.1f}",
          f"{r['charges_mae_me']:.1f}" if "charges_mae_me" in r else "–",
          f"{r['charges_r2']:.3f}" if "charges_r2" in r else "–"]
         for r in sorted(rows, key=lambda r: order[r["task"]])))


def _folds(task: str, k: int, out: Path) -> list[tuple[Path, Path]]:
    """K train/test splits of a single-file task; fold i tests frames i, i+k, ... of a
    seeded permutation, so that every frame is tested exactly once."""
    frames = ase.io.read(DATA / TASKS[task]["file"], ":")
    order = np.random.default_rng(0).permutation(len(frames))
    splits = []
    for i in range(k):
        test = set(order[i::k].tolist())
        fold = out / f"fold{i}"
        fold.mkdir(parents=True, exist_ok=True)
        ase.io.write(fold / "train.xyz", [a for j, a in enumerate(frames) if j not in test])
        ase.io.write(fold / "test.xyz", [frames[j] for j in sorted(test)])
        splits.append((fold / "train.xyz", fold / "test.xyz"))
    return splits


def _saved_plain(path: Path, task: str, args: argparse.Namespace, params: dict
                 ) -> list[dict] | None:
    """The plain models' fold results of an earlier equal-epoch run, or ``None``.

    A plain model does not depend on the charge settings, and a run of a fixed number
    of epochs on one thread is deterministic (the 2026-12-06 repeat reproduced every fold
    MAE to the last digit), so a run on the same CPU and threads that differs only in its
    charge settings reuses them instead of training the same plain models again.
    Wall-time budgets are not reused.
    """
    if not args.epochs or not path.exists():
        return None
    for r in json.loads(path.read_text())["runs"]:
        if (r["task"], r["folds"], r.get("epochs_per_model"), r["params"],
                r.get("element_weights", {}), r.get("machine")) == (
                task, args.folds, args.epochs, params, args.element_weights,
                run_meta(args.threads)["machine"]):
            print(f"plain models: reusing the folds of the {r.get('charge_model', 'local')} "
                  f"run of {r.get('date', '?')}", flush=True)
            return [f["plain"] for f in r["per_fold"]]
    return None


def _tag(args: argparse.Namespace, params: dict) -> str:
    """Folder tag of a cross-validation or in-sample run's settings."""
    return f"{params['n_features']}x{params['n_interactions']}_s{args.smearing:g}" + (
        f"_q{args.charges_weight:g}" if args.charges_weight != 10.0 else "") + (
        f"_{args.charge_model}" if args.charge_model != "local" else "") + \
        _weights_tag(args.element_weights) + (f"_e{args.epochs}" if args.epochs else "") + (
        "_ew{:g}-{:g}".format(*ENERGY_WEIGHTS) if ENERGY_WEIGHTS != (10.0, 100.0) else "") + (
        f"_b{BATCH_SIZE}" if BATCH_SIZE != 4 else "")


def in_sample(args: argparse.Namespace, params: dict) -> None:
    """Can the model represent the dopants' effect at all? Both models train on the
    Au2–MgO frames (all 18, of which `run` holds 10 % out for validation) and the Au2
    energetics are evaluated on the same frames. A fit, not a prediction: a local model
    cannot see the Al dopants from the Au2, yet it tells doped from undoped slabs by the
    relaxed positions around the dopants and, with the energies weighted far above the
    forces, memorises most of ΔΔE (−0.63 of −0.87 eV, 2026-12-07). Only held-out frames
    (the cross-validation) test the dopant effect."""
    out = Path(args.out) / f"au2mgo_insample_{_tag(args, params)}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "all.xyz"
    ase.io.write(path, ase.io.read(DATA / TASKS["au2mgo"]["file"], ":"))
    pair = {("coulomb" if coulomb else "plain"): run(
        "au2mgo", coulomb, args.minutes, args.threads, out, path, path, params, args.smearing,
        args.charges == "shared", args.charges_weight, args.charge_model,
        args.element_weights, args.epochs) for coulomb in (False, True)}
    summary = {"task": "au2mgo", "minutes": None if args.epochs else args.minutes,
               "epochs_per_model": args.epochs or None, "smearing_A": args.smearing,
               "charges_weight": args.charges_weight, "charge_model": args.charge_model,
               "element_weights": args.element_weights, "energy_weights": ENERGY_WEIGHTS,
               "batch_size": BATCH_SIZE,
               **run_meta(args.threads), "params": params,
               "au2_energetics": au2_energetics([pair], [path]), "models": pair}
    results = HERE / "results" / "electrostatics_insample.json"
    update_json(results, lambda data: data["runs"].append(summary), {"runs": []})
    print("\n".join(au2_table(summary["au2_energetics"])))


def cross_validate(args: argparse.Namespace, params: dict) -> None:
    """Plain and Coulomb models on the same K folds: per-fold errors, their mean and
    standard error, and on how many folds the Coulomb model is better (paired)."""
    path = HERE / "results" / "electrostatics_cv.json"
    meta = {**run_meta(args.threads), "params": params}
    for task in args.tasks:
        if "file" not in TASKS[task]:
            raise SystemExit(f"--folds needs a single-file task, not {task}")
        out = Path(args.out) / f"{task}_cv{args.folds}_{_tag(args, params)}"
        folds, splits = [], _folds(task, args.folds, out)
        plain = _saved_plain(path, task, args, params)
        for i, (train_path, test_path) in enumerate(splits):
            done = train_path.parent / (f"pair_e{args.epochs}.json" if args.epochs else
                                        f"pair_{args.minutes:g}min.json")
            if done.exists():  # a finished fold of an interrupted run: kept
                pair = json.loads(done.read_text())
            else:
                pair = {} if plain is None else {"plain": plain[i]}
                for coulomb in (False, True) if plain is None else (True,):
                    pair["coulomb" if coulomb else "plain"] = run(
                        task, coulomb, args.minutes, args.threads, train_path.parent,
                        train_path, test_path, params, args.smearing, args.charges == "shared",
                        args.charges_weight, args.charge_model, args.element_weights,
                        args.epochs)
                done.write_text(json.dumps(pair))
            folds.append(pair)
            print(f"fold {i}: " + json.dumps(pair), flush=True)
        summary = {"task": task, "folds": args.folds,
                   "minutes": None if args.epochs else args.minutes,
                   "epochs_per_model": args.epochs or None,
                   "smearing_A": args.smearing, "charges": args.charges,
                   "charges_weight": args.charges_weight, "charge_model": args.charge_model,
                   "element_weights": args.element_weights,
                   **meta}
        for key in ("energy_mae_meV_per_atom", "forces_mae_meV_per_A"):
            for model in ("plain", "coulomb"):
                values = np.array([f[model][key] for f in folds])
                summary[f"{model}_{key}"] = [float(values.mean()),
                                             float(values.std(ddof=1) / len(values) ** 0.5)]
            summary[f"coulomb_better_{key}"] = sum(
                f["coulomb"][key] < f["plain"][key] for f in folds)
        for key in ("charges_mae_me", "charges_r2"):
            if all(key in f["coulomb"] for f in folds):
                summary[f"coulomb_{key}"] = float(np.mean([f["coulomb"][key] for f in folds]))
        if all("charges_mae_me_by_element" in f["coulomb"] for f in folds):
            # over the atoms of every test frame (a fold may test no frame with an element)
            by_element: dict[str, list[float]] = {}
            for f in folds:
                for symbol, mae in f["coulomb"]["charges_mae_me_by_element"].items():
                    by_element.setdefault(symbol, []).append(mae)
            summary["coulomb_charges_mae_me_by_element"] = {
                symbol: float(np.mean(v)) for symbol, v in by_element.items()}
        if task == "au2mgo":
            summary["au2_energetics"] = au2_energetics(folds, [test for _, test in splits])
        summary["per_fold"] = folds
        key = (task, args.folds, summary["minutes"], args.smearing, params,
               args.charges_weight, args.charge_model, args.element_weights,
               summary["epochs_per_model"])

        def replace(data, key=key, summary=summary):  # other runs may have added rows
            data["runs"] = [r for r in data["runs"] if (
                r["task"], r["folds"], r["minutes"], r["smearing_A"], r["params"],
                r.get("charges_weight", 10.0), r.get("charge_model", "local"),
                r.get("element_weights", {}), r.get("epochs_per_model")) != key] + [summary]

        path.parent.mkdir(parents=True, exist_ok=True)
        print("\n".join(cv_table(update_json(path, replace, {"runs": []})["runs"])))
        if summary.get("au2_energetics"):
            print("\n".join(au2_table(summary["au2_energetics"])))


def au2_state(atoms: ase.Atoms) -> tuple[bool, bool]:
    """(doped, flat) of an Au2–MgO frame: Al dopants in the slab; the Au2 lying flat
    (its two atoms within 1 Å in height) rather than upright."""
    au = np.flatnonzero(atoms.numbers == 79)
    if len(au) != 2:
        raise ValueError(f"an Au2–MgO frame has {len(au)} Au atoms, not 2")
    heights = atoms.positions[au, 2]
    return bool((atoms.numbers == 13).any()), bool(abs(heights[0] - heights[1]) < 1.0)


def au2_energetics(folds: list[dict], test_paths: list[Path]) -> dict:
    """The observable the 4G-HDNNP was built for, from out-of-fold predictions.

    Ko et al. (2021): Al dopants deep in the MgO slab (~11 Å from the Au2) move charge
    onto the cluster and change which Au2 geometry is stable. In these 18 frames the
    reference E(flat) − E(upright) is +0.87 eV without dopants and −0.01 eV with them;
    a model whose Au2 cannot see the dopants predicts nearly the same difference for
    both. Per model: the mean energy of each (doped, geometry) group from the frames'
    out-of-fold predictions (each frame predicted by the fold model that did not train
    on it), the flat − upright difference per doping state, and the dopants' effect on
    it, ΔΔE = ΔE(doped) − ΔE(undoped), in eV, next to the reference's; and the mean
    Au force error over the folds (meV/Å). Folds run before the per-frame energies were
    recorded give no energetics (an empty dict).
    """
    if not all("energies_eV" in f[m] for f in folds for m in ("plain", "coulomb")):
        return {}
    states = [au2_state(a) for path in test_paths for a in ase.io.read(path, ":")]
    result: dict = {}
    for model in ("reference", "plain", "coulomb"):
        side, column = ("coulomb" if model == "coulomb" else "plain",
                        0 if model == "reference" else 1)  # [reference, predicted]
        energies = [pair[column] for f in folds for pair in f[side]["energies_eV"]]
        groups: dict[tuple[bool, bool], list[float]] = {}
        for state, energy in zip(states, energies, strict=True):
            groups.setdefault(state, []).append(energy)
        delta = {doped: float(np.mean(groups[(doped, True)]) - np.mean(groups[(doped, False)]))
                 for doped in (False, True)}
        result[model] = {"dE_flat_minus_upright_undoped_eV": delta[False],
                         "dE_flat_minus_upright_doped_eV": delta[True],
                         "ddE_doping_eV": delta[True] - delta[False]}
        if model != "reference":
            result[model]["au_forces_mae_meV_per_A"] = float(np.mean(
                [f[model]["forces_mae_meV_per_A_by_element"]["Au"] for f in folds]))
    return result


def au2_table(energetics: dict) -> list[str]:
    """Markdown table of `au2_energetics` (eV; Au forces meV/Å)."""
    return markdown_table(
        ["", "ΔE flat − upright, undoped", "ΔE flat − upright, doped", "ΔΔE (doping)",
         "Au force MAE (meV/Å)"],
        ([model, f"{e['dE_flat_minus_upright_undoped_eV']:+.3f}",
          f"{e['dE_flat_minus_upright_doped_eV']:+.3f}", f"{e['ddE_doping_eV']:+.3f}",
          f"{e['au_forces_mae_meV_per_A']:.0f}" if "au_forces_mae_meV_per_A" in e else "–"]
         for model, e in energetics.items()))


def cv_table(runs: list[dict]) -> list[str]:
    """Markdown table of cross-validation runs: mean ± standard error over folds."""
    def pm(r: dict, key: str, digits: int) -> str:
        mean, err = r[key]
        return f"{mean:.{digits}f} ± {err:.{digits}f}"
    return markdown_table(
        ["task", "folds", "features × layers", "σ (Å)", "charges", "q weight",
         "budget per model",
         "E MAE plain", "E MAE Coulomb", "Coulomb better (E)", "F MAE plain",
         "F MAE Coulomb", "Coulomb better (F)", "charge R²"],
        ([r["task"], str(r["folds"]),
          f"{r['params']['n_features']} × {r['params']['n_interactions']}",
          f"{r['smearing_A']:g}", r.get("charge_model", "local") + "".join(
              f", {k} ×{v:g}" for k, v in sorted(r.get("element_weights", {}).items())),
          f"{r.get('charges_weight', 10.0):g}",
          f"{r['epochs_per_model']} epochs" if r.get("epochs_per_model") else
          f"{r['minutes']:g} min",
          pm(r, "plain_energy_mae_meV_per_atom", 2), pm(r, "coulomb_energy_mae_meV_per_atom", 2),
          f"{r['coulomb_better_energy_mae_meV_per_atom']}/{r['folds']}",
          pm(r, "plain_forces_mae_meV_per_A", 1), pm(r, "coulomb_forces_mae_meV_per_A", 1),
          f"{r['coulomb_better_forces_mae_meV_per_A']}/{r['folds']}",
          f"{r['coulomb_charges_r2']:.3f}" if "coulomb_charges_r2" in r else "–"]
         for r in runs))


def _row_key(row: dict) -> tuple:
    """What a new row of `main` replaces: the same task, model and budget."""
    epochs = row.get("epochs_per_model")
    return (row["task"], row["model"], None if epochs else row["minutes"], epochs,
            row.get("seed", 0))


def main() -> None:
    """Train the pairs and write results/electrostatics.json and a Markdown table."""
    global ENERGY_WEIGHTS, BATCH_SIZE, SEED
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["c10h2", "au2mgo"])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["plain", "coulomb"], default=None)
    parser.add_argument("--params", default='{"n_features": 64, "n_interactions": 3}')
    parser.add_argument("--smearing", type=float, default=1.0, help="Å")
    parser.add_argument("--charges", choices=["shared", "separate"], default="shared",
                        help="charges from the PaiNN's own features or a second PaiNN")
    parser.add_argument("--charges-weight", type=float, default=10.0,
                        help="loss weight of the reference charges (0: charges learned "
                             "from energies and forces alone, as without reference charges)")
    parser.add_argument("--charge-model", choices=["local", "qeq", "qeq-full", "local-ce",
                                                   "qeq-ce", "qeq-cf", "qeq-ce-cf",
                                                   "local-mlp", "qeq-mlp"],
                        default="local",
                        help="local charges with a uniform total-charge correction, or "
                             "charge equilibration (non-local charge transfer); qeq-full: "
                             "with the whole equilibration energy (qeq_energy: full); "
                             "-ce: plus the charge-dependent local energy (charge_energy); "
                             "-mlp: the same as a network of the features and the charge "
                             "(charge_energy: mlp); "
                             "-cf: the first 30 %% of training on the charges alone "
                             "(loss.charges_first_fraction)")
    parser.add_argument("--element-weights", type=json.loads, default={},
                        help="JSON of loss.element_weights for both models, e.g. "
                             "'{\"Au\": 20}' (forces and charges of those atoms)")
    parser.add_argument("--out", default=str(HERE / "runs" / "electrostatics"))
    parser.add_argument("--epochs", type=int, default=0,
                        help="train every model this many epochs (equal epochs) instead of "
                             "for --minutes of wall time (equal time)")
    parser.add_argument("--folds", type=int, default=0,
                        help="K-fold cross-validation of plain against Coulomb on the "
                             "single-file tasks (c10h2, au2mgo): every frame is tested once")
    parser.add_argument("--in-sample", action="store_true",
                        help="au2mgo: train on all frames and evaluate the Au2 energetics "
                             "on them (can the model represent the dopants' effect?)")
    parser.add_argument("--energy-weights", type=float, nargs=2, default=list(ENERGY_WEIGHTS),
                        metavar=("WEIGHT", "FINAL"),
                        help="loss weight of the per-atom energy before and in the final "
                             "20 %% of training (default 10 100; forces weigh 1)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="structures per optimiser step (default 4)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help="train.seed of every model (default 0); single split only")
    args = parser.parse_args()
    ENERGY_WEIGHTS, BATCH_SIZE, SEED = tuple(args.energy_weights), args.batch_size, args.seed
    if SEED and (args.folds or args.in_sample):
        raise SystemExit("--seed is for the single-split runs; --folds and --in-sample "
                         "keep seed 0")
    torch.set_num_threads(args.threads)
    params = json.loads(args.params)
    if args.in_sample:
        in_sample(args, params)
        return
    if args.folds:
        cross_validate(args, params)
        return
    results_path = HERE / "results" / "electrostatics.json"
    rows = json.loads(results_path.read_text())["rows"] if results_path.exists() else []
    meta = {**run_meta(args.threads), "params": params}
    for task in args.tasks:
        out = Path(args.out) / task
        out.mkdir(parents=True, exist_ok=True)
        train_path, test_path = _split(task, out)
        for coulomb in (False, True):
            if args.only and args.only != ("coulomb" if coulomb else "plain"):
                continue
            row = {**run(task, coulomb, args.minutes, args.threads, out, train_path,
                         test_path, params, args.smearing, args.charges == "shared",
                         args.charges_weight, args.charge_model, args.element_weights,
                         args.epochs),
                   **meta}
            if coulomb:
                row["smearing_A"] = args.smearing
            print(json.dumps(row))
            row["epochs_per_model"] = args.epochs or None

            def replace(data, row=row):  # a run beside this one may have added rows
                data["rows"] = [r for r in data["rows"] if _row_key(r) != _row_key(row)] \
                    + [row]

            results_path.parent.mkdir(parents=True, exist_ok=True)
            rows = update_json(results_path, replace, {"rows": []})["rows"]
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()

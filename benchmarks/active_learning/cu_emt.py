"""Active learning demonstration (a): Cu with EMT as the oracle.

From 10 rattled fcc frames, `nnip al` grows the data set by MD exploration at 600 and
1200 K. Recorded per iteration: training-set size, uncertain fraction, and errors on an
independent test set (EMT Langevin MD frames at 300-1200 K that the loop never sees).
Baseline: the same number of frames sampled at random from plain EMT MD, trained with
the same settings. Finally each model runs NVT at 1200 K for ``--stability-ps`` and the
run is checked for stability (no stop, EMT energy error along the trajectory).

Usage (repository root, project environment)::

    python benchmarks/active_learning/cu_emt.py --out benchmarks/active_learning/runs/cu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
import yaml
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from nnip.active import run_active_learning
from nnip.export.model_file import load_model
from nnip.md import MD
from nnip.md import Langevin as LangevinBAOAB
from nnip.training import train
from nnip.validate.errors import error_table, predict_frames

MODEL = {"arch": "painn", "cutoff": 4.5, "params": {"n_features": 32, "n_interactions": 2}}
TRAIN = {"epochs": 150, "batch_size": 4, "lr": 0.005, "scheduler": "cosine",
         "committee": 3, "time_limit_min": 3.0, "threads": 2}


def _label(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _emt_md(temperatures, n_per_t, every, seed):
    frames = []
    for t in temperatures:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.calc = EMT()
        MaxwellBoltzmannDistribution(atoms, temperature_K=t, rng=np.random.default_rng(seed))
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=t, friction=0.02,
                       rng=np.random.default_rng(seed + 1))
        dyn.run(200)
        for _ in range(n_per_t):
            dyn.run(every)
            frames.append(_label(atoms))
    return frames


def _errors(model, frames):
    table = error_table(predict_frames(model, frames))["overall"]
    return {"energy_mae_meV_per_atom": table["energy_per_atom"]["mae"] * 1e3,
            "forces_mae_meV_per_A": table["forces"]["mae"] * 1e3}


def _stability(model, ps, temperature=1200.0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    md = MD(model, atoms, LangevinBAOAB(2.0, temperature, 0.02, seed=3),
            temperature_K=temperature, write_every=500, progress=False)
    start = time.perf_counter()
    result = md.run(int(ps * 1000 / 2.0))
    frame = md.atoms()[0]
    predicted = frame.get_potential_energy()
    frame.calc = EMT()
    return {"stable": result.stopped is None, "stopped": result.stopped,
            "simulated_ps": md.state.time_fs / 1000,
            "final_emt_error_meV_per_atom": abs(frame.get_potential_energy() - predicted)
            / len(frame) * 1e3, "seconds": time.perf_counter() - start}


def main() -> None:
    """Run the demonstration and write results.json and results.md into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/active_learning/runs/cu")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--stability-ps", type=float, default=50.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    initial = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        initial.append(_label(atoms))
    ase.io.write(out / "init.xyz", initial)
    ase.io.write(out / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2))
    if not (out / "test.xyz").exists():
        ase.io.write(out / "test.xyz", _emt_md([300, 600, 900, 1200], 25, 50, seed=100))
    config = {
        "oracle": "emt", "iterations": args.iterations, "target_uncertain_fraction": 0.02,
        "state_dir": str(out / "al"), "test": [str(out / "test.xyz")],
        "explore": {"structures": [str(out / "start.xyz")], "temperatures_K": [600, 1200],
                    "steps": 1000, "timestep_fs": 2, "replicas": 4, "sample_every": 20},
        "select": {"threshold_eV_per_A": 0.1, "max_per_iteration": 20},
        "train": {"data": {"train": [str(out / "init.xyz")], "validation_fraction": 0.1},
                  "model": MODEL, "train": TRAIN},
    }
    (out / "al.yaml").write_text(yaml.safe_dump(config))
    state = run_active_learning(out / "al.yaml", progress=False)
    n_labelled = sum(r.get("n_labelled", 0) for r in state["history"])
    # Random baseline with the same number of labelled frames from plain EMT MD.
    pool = _emt_md([600, 1200], 60, 20, seed=7)
    pick = np.random.default_rng(0).choice(len(pool), size=min(n_labelled, len(pool)),
                                           replace=False)
    ase.io.write(out / "random.xyz", [pool[i] for i in sorted(pick)])
    baseline = train({"data": {"train": [str(out / "init.xyz"), str(out / "random.xyz")],
                               "validation_fraction": 0.1},
                      "model": MODEL, "train": TRAIN,
                      "output": {"run_dir": str(out / "random_run"), "plots": False}},
                     progress=False)
    final = load_model(state["model"])
    results = {"history": state["history"], "n_labelled": n_labelled,
               "active": {**_errors(final, ase.io.read(out / "test.xyz", ":")),
                          **_stability(final, args.stability_ps)},
               "random": {**_errors(baseline.model, ase.io.read(out / "test.xyz", ":")),
                          **_stability(baseline.model, args.stability_ps)}}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    lines = ["| model | labelled frames | test E MAE (meV/atom) | test F MAE (meV/Å) | "
             f"{args.stability_ps:g} ps NVT at 1200 K |", "|---|---|---|---|---|"]
    for name in ("active", "random"):
        r = results[name]
        lines.append(f"| {name} | {n_labelled} | {r['energy_mae_meV_per_atom']:.2f} | "
                     f"{r['forces_mae_meV_per_A']:.1f} | "
                     f"{'stable' if r['stable'] else 'stopped: ' + str(r['stopped'])} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

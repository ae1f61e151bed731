"""Single-model LLPR against a committee: which ranks the true errors better, at what cost.

Trains a committee of K PaiNN models on ``mlearn/<element>`` (one file, one run; the
members differ in seed), fits LLPR (`nnip.validate.llpr`) on member 0, and compares on
the test set, per structure: Spearman rank correlation of the predicted energy
uncertainty with the actual energy error (LLPR: member 0's error; committee: the error
of the mean), the miscalibration area of the energy intervals, and the time per
structure of prediction + uncertainty. The committee's per-atom force spread is reported
as well (LLPR gives energies only).

Usage (repository root, project environment)::

    python benchmarks/active_learning/uncertainty.py --element Si --minutes 3
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
from scipy.stats import spearmanr

from nnip.config import config_from_dict
from nnip.training import train
from nnip.training.trainer import _split
from nnip.validate.errors import error_table, predict_frames
from nnip.validate.llpr import LLPR
from nnip.validate.uncertainty import interval_coverage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import markdown_table, run_meta  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HERE = Path(__file__).resolve().parent


def energy_calibration(error: np.ndarray, sigma: np.ndarray) -> dict:
    """Spearman of |error| vs sigma, miscalibration area, RMS error / RMS sigma."""
    return {"spearman": float(spearmanr(np.abs(error), sigma).statistic),
            "miscalibration_area": interval_coverage(np.abs(error) / sigma)[2],
            "rms_error_over_rms_sigma": float(np.sqrt(np.mean(error**2) / np.mean(sigma**2)))}


def _timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    """Train, compare, write results/uncertainty_<element>.json and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--element", default="Si")
    parser.add_argument("--minutes", type=float, default=3.0, help="per committee member")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "runs" / "uncertainty"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = DATA / "mlearn" / args.element
    out = Path(args.out) / args.element
    config = {
        "data": {"train": [str(folder / "train.xyz")], "validation_fraction": 0.1},
        "model": {"arch": "painn", "cutoff": 5.0,
                  "params": {"n_features": 32, "n_interactions": 2}},
        "train": {"epochs": 100000, "batch_size": 4, "lr": 0.005, "scheduler": "cosine",
                  "time_limit_min": args.minutes, "threads": args.threads,
                  "committee": args.members},
        "output": {"run_dir": str(out), "plots": False}}
    committee = train(config, progress=False).model
    single = committee.members[0]
    splits = _split(config_from_dict(config))  # the training run's own split
    test = ase.io.read(folder / "test.xyz", ":")
    ref = np.array([a.get_potential_energy() for a in test])

    llpr = LLPR(single).fit(splits.train, splits.validation)
    e_single = single.predict(test, compute_forces=False).energy.numpy()
    sigma_llpr = llpr.energy_uncertainty(test)
    pred_c = committee.predict(test, compute_forces=False)
    e_comm, sigma_comm = pred_c.energy.numpy(), pred_c.energy_uncertainty.numpy()
    n_atoms = np.array([len(a) for a in test])
    rows = {
        "llpr (member 0)": {**energy_calibration((e_single - ref) / n_atoms,
                                                 sigma_llpr / n_atoms),
                            "energy_mae_meV_per_atom": 1e3 * np.mean(np.abs(e_single - ref)
                                                                     / n_atoms)},
        f"committee ({args.members})": {
            **energy_calibration((e_comm - ref) / n_atoms, sigma_comm / n_atoms),
            "energy_mae_meV_per_atom": 1e3 * np.mean(np.abs(e_comm - ref) / n_atoms)},
    }
    # Cost per structure: energy + forces (what MD needs) plus the uncertainty.
    chunk = test[:16]
    t_single = _timed(lambda: single.predict(chunk))
    t_llpr = _timed(lambda: (single.predict(chunk), llpr.energy_uncertainty(chunk)))
    t_comm = _timed(lambda: committee.predict(chunk))
    rows["llpr (member 0)"]["ms_per_structure"] = 1e3 * t_llpr / len(chunk)
    rows[f"committee ({args.members})"]["ms_per_structure"] = 1e3 * t_comm / len(chunk)
    force_table = error_table(predict_frames(committee, test))
    meta = {**run_meta(args.threads), "element": args.element,
            "minutes_per_member": args.minutes, "plain_model_ms_per_structure":
            1e3 * t_single / len(chunk), "n_test": len(test),
            "committee_force_uncertainty": force_table.get("uncertainty")}
    path = HERE / "results" / f"uncertainty_{args.element}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"mlearn {args.element}, {len(test)} test structures, {meta['machine']}, "
             f"{meta['date']}", "",
             *markdown_table(
                 ["method", "Spearman(|ΔE|, σ_E)", "miscalibration area", "RMS ΔE / RMS σ",
                  "E MAE (meV/atom)", "ms per structure (E, F + σ)"],
                 ([name, f"{r['spearman']:.2f}", f"{r['miscalibration_area']:.3f}",
                   f"{r['rms_error_over_rms_sigma']:.2f}", f"{r['energy_mae_meV_per_atom']:.2f}",
                   f"{r['ms_per_structure']:.1f}"] for name, r in rows.items()))]
    lines.append(f"\nplain model (E, F): {meta['plain_model_ms_per_structure']:.1f} ms per "
                 "structure")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

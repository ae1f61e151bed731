"""mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020)): nnip versus GAP/MTP.

Trains one potential per element on ``../shared/data/mlearn/<El>/train.xyz`` (validation
carved from it), evaluates on the element's ``test.xyz``, and writes a results table
(Markdown + JSON) with machine, date and versions next to the published best GAP/MTP
test errors.

Usage (from the repository root, inside the project's .venv)::

    python benchmarks/accuracy/mlearn.py                      # all six elements, 8 min each
    python benchmarks/accuracy/mlearn.py --elements Si Cu --minutes 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import nnip
from nnip.training import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT / ".." / "shared" / "data" / "mlearn").resolve()
ELEMENTS = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]
# Best published test MAEs (GAP or MTP) from the data folder's README:
# energy meV/atom, forces eV/Å.
PUBLISHED = {"Ni": (0.42, 0.01), "Cu": (0.41, 0.01), "Li": (0.49, 0.01),
             "Mo": (2.24, 0.09), "Si": (2.21, 0.06), "Ge": (1.79, 0.05)}




def config_for(element: str, out: Path, minutes: float, arch: str, params: dict) -> dict:
    """Training config of one element."""
    return {
        "data": {"train": [str(DATA / element / "train.xyz")],
                 "test": [str(DATA / element / "test.xyz")],
                 "validation_fraction": 0.1, "split_seed": 0},
        "model": {"arch": arch, "cutoff": 5.0, "params": params},
        "loss": {"energy_weight": 10.0, "forces_weight": 1.0, "stress_weight": 10.0},
        "train": {"epochs": 2000, "batch_size": 4, "lr": 3e-3, "scheduler": "plateau",
                  "plateau_patience": 15, "plateau_factor": 0.5, "min_lr": 1e-5,
                  "ema_decay": 0.99, "time_limit_min": minutes, "seed": 0,
                  "checkpoint_every": 500},
        "output": {"run_dir": str(out / arch / element), "license": "BSD-3-Clause (mlearn data)"},
    }


def run_element(element: str, out: Path, minutes: float, arch: str, params: dict) -> dict:
    """Train and test one element; return its row."""
    start = time.perf_counter()
    result = train(config_for(element, out, minutes, arch, params), progress=True)
    wall = time.perf_counter() - start
    test = result.errors["test"]["overall"]
    e_pub, f_pub = PUBLISHED[element]
    return {
        "element": element, "arch": arch, "params": result.config.model.params,
        "epochs": len(result.history),
        "energy_mae_meV_per_atom": test["energy_per_atom"]["mae"] * 1e3,
        "forces_mae_eV_per_A": test["forces"]["mae"],
        "stress_mae_GPa": test["stress"]["mae"] / nnip.units.GPa if "stress" in test else None,
        "published_energy_mae_meV_per_atom": e_pub, "published_forces_mae_eV_per_A": f_pub,
        "wall_time_s": wall,
    }


def markdown(rows: list[dict], meta: dict) -> str:
    """The results table."""
    lines = [f"mlearn test set, {meta['date']}, {meta['machine']}, nnip {meta['nnip']}, "
             f"torch {meta['torch']}.", "",
             "| element | model | budget (min) | epochs | E MAE (meV/atom) | best GAP/MTP E | "
             "F MAE (eV/Å) | best GAP/MTP F | stress MAE (GPa) | wall time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stress = f"{r['stress_mae_GPa']:.3f}" if r["stress_mae_GPa"] is not None else "–"
        lines.append(
            f"| {r['element']} | {r['arch']} | {r['minutes']:g} | {r['epochs']} | "
            f"{r['energy_mae_meV_per_atom']:.2f} | {r['published_energy_mae_meV_per_atom']} | "
            f"{r['forces_mae_eV_per_A']:.3f} | {r['published_forces_mae_eV_per_A']} | {stress} | "
            f"{r['wall_time_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", nargs="+", default=ELEMENTS, choices=ELEMENTS)
    parser.add_argument("--minutes", type=float, default=8.0,
                        help="training time budget per element")
    parser.add_argument("--arch", default="schnet")
    parser.add_argument("--params", default='{"n_features": 64, "n_interactions": 3, '
                        '"n_basis": 32}', help="architecture hyperparameters as JSON")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "accuracy" / "runs"),
                        help="run directories")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "accuracy" / "results"))
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"mlearn data not found at {DATA}")
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
            "nnip": nnip.__version__, "torch": torch.__version__, "minutes": args.minutes}
    # Rows of earlier runs (other elements or architectures) are kept; a rerun of the same
    # element and architecture replaces its row.
    json_path = results / "mlearn.json"
    rows = json.loads(json_path.read_text())["rows"] if json_path.is_file() else []
    for element in args.elements:
        row = run_element(element, out, args.minutes, args.arch, json.loads(args.params))
        row.update(date=meta["date"], minutes=args.minutes)
        rows = [r for r in rows if (r["element"], r["arch"]) != (element, args.arch)] + [row]
        rows.sort(key=lambda r: (r["arch"], ELEMENTS.index(r["element"])))
        json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (results / "mlearn.md").write_text(markdown(rows, meta))
        print(markdown(rows, meta))


if __name__ == "__main__":
    main()

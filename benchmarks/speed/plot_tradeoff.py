"""Accuracy against speed: ``results/tradeoff.png`` from the two benchmarks' results.

x: milliseconds per energy + forces + stress call on 500 fcc Cu atoms (this folder's
``results/speed.json``; one thread, each package's ASE calculator); y: test force MAE
after 22 minutes of training on one thread (``../accuracy/results/accuracy.json``, rows
of the shared "lr 0.01, E×100 last 30%" recipe without variants, trained on the same
CPU as the speed run), for mlearn Si and rMD17 ethanol. Only
models present in both files appear; a row trained with ``train.compile`` is placed at
the compiled model's time.

    python benchmarks/speed/plot_tradeoff.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
SPEED_STRUCTURE = "cu_500"
RECIPE = ("lr 0.01, E×100 last 30%", "lr 0.01, E×100 last 30%, compiled")
TASKS = {"mlearn-Si": "mlearn Si (test F MAE, meV/Å)",
         "rmd17-ethanol": "rMD17 ethanol (test F MAE, meV/Å)"}


def main() -> None:
    speed = json.loads((HERE / "results" / "speed.json").read_text())
    ms = {m["model"]: m["inference"][SPEED_STRUCTURE]["seconds"] * 1e3
          for side in speed["sides"] for m in side["models"]
          if SPEED_STRUCTURE in m.get("inference", {})}
    cpu = speed["meta"]["machine"].split(",")[0]  # e.g. "AMD EPYC, 1 threads"
    accuracy = json.loads((HERE.parent / "accuracy" / "results" / "accuracy.json").read_text())
    fig, axes = plt.subplots(1, len(TASKS), figsize=(10, 4))
    for ax, (task, label) in zip(axes, TASKS.items()):
        # a model trained with train.compile is timed with compile=True ("+compile")
        # the shared recipe only (no hyperparameter variants), on the speed run's CPU
        rows = [(r["model"] + ("+compile" if r.get("compiled") else ""), r)
                for r in accuracy["rows"] if r["task"] == task and r["minutes"] == 22.0
                and r["schedule"] in RECIPE and r.get("machine") == cpu]
        for name, r in rows:
            if name not in ms:
                continue
            colour = "C0" if name.startswith("nnip") else "C3"
            ax.scatter(ms[name], r["forces_mae_meV_per_A"], color=colour, s=40)
            ax.annotate(name, (ms[name], r["forces_mae_meV_per_A"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=9)
        ax.set_xlabel(f"ms per E+F+S call, {SPEED_STRUCTURE.replace('_', ' ')} atoms, 1 core")
        ax.set_ylabel(label)
        ax.set_title(f"{task}: 22 min of training, 1 thread")
        ax.grid(alpha=0.3)
        ax.margins(0.25)
    fig.suptitle(f"accuracy vs speed ({speed['meta']['machine']}, {speed['meta']['date']}); "
                 "lower left is better", fontsize=10)
    fig.tight_layout()
    out = HERE / "results" / "tradeoff.png"
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()

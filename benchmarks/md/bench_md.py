"""MD speed: nnip's batched engine against ASE's MD driving the same model.

Measures MD steps per second (NVE velocity Verlet, 1 fs, float64) for fcc Cu of ~1k and
~10k atoms with (a) `nnip.md.MD` and (b) ASE's `VelocityVerlet` with `NNIPCalculator`,
the engine with its neighbour-list reuse switched off (``skin_A=0``: a new list every
step) to measure what the reuse gains, and the throughput of 32 small systems (32 atoms
each) in one batch against running them one after another. The model is PaiNN
(nnip's default architecture until 2026-12-06; 64 features, 3 layers, cutoff 5 Å)
with fixed random weights and a small energy scale, so timing is that of a trained
model of this size while the crystal stays intact.

Usage (repository root, project environment)::

    python benchmarks/md/bench_md.py            # writes benchmarks/md/results/md.{md,json}
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet as AseVerlet

import nnip
from nnip.calculators.ase import NNIPCalculator
from nnip.md import MD, VelocityVerlet, maxwell_boltzmann
from nnip.models import build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from peers import cpu_name, markdown_table  # noqa: E402


def _model(device: str) -> nnip.models.potential.Potential:
    model = build("painn", elements=["Cu"], cutoff=5.0, e0={"Cu": -3.5}, scale=0.05,
                  n_features=64, n_interactions=3, avg_num_neighbors=78.0, seed=0)
    return model.to(device)


def _crystal(repeat: tuple[int, int, int], seed: int = 0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    v = maxwell_boltzmann(atoms.get_masses(), 300.0, np.random.default_rng(seed))
    atoms.set_velocities(v / units.fs)
    return atoms


def _nnip_steps_per_s(model, systems, steps: int, skin_A: float = 1.0) -> float:
    md = MD(model, systems, VelocityVerlet(1.0), write_every=10**9, progress=False,
            skin_A=skin_A)
    md.run(2)  # warm-up
    start = time.perf_counter()
    md.run(steps)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def _ase_steps_per_s(model, atoms, steps: int) -> float:
    atoms = atoms.copy()
    atoms.calc = NNIPCalculator(model)
    dyn = AseVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(2)
    start = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Run the MD speed benchmark and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = _model(args.device)
    rows = []
    for repeat in ((6, 6, 7), (14, 14, 14)):
        atoms = _crystal(repeat)
        steps = args.steps if len(atoms) < 5000 else max(3, args.steps // 4)
        ours = _nnip_steps_per_s(model, [atoms], steps)
        no_reuse = _nnip_steps_per_s(model, [atoms], steps, skin_A=0.0)
        ase_ = _ase_steps_per_s(model, atoms, steps)
        rows.append({"case": f"fcc Cu, {len(atoms)} atoms", "n_atoms": len(atoms),
                     "nnip_steps_per_s": ours, "nnip_skin0_steps_per_s": no_reuse,
                     "ase_steps_per_s": ase_,
                     "speedup": ours / ase_,
                     "nnip_ns_per_day": ours * 1e-6 * 86400})
        print(rows[-1], flush=True)
    small = [_crystal((2, 2, 2), seed=k) for k in range(32)]
    batched = _nnip_steps_per_s(model, small, args.steps)
    one = _nnip_steps_per_s(model, small[:1], args.steps)
    ase_one = _ase_steps_per_s(model, small[0], args.steps)
    rows.append({"case": "32 systems x 32 atoms", "n_atoms": 32 * 32,
                 "nnip_steps_per_s": batched, "ase_steps_per_s": ase_one / 32,
                 "speedup": batched / (ase_one / 32), "nnip_ns_per_day": batched * 1e-6 * 86400,
                 "batch_gain_vs_one_at_a_time": batched * 32 / one})
    print(rows[-1], flush=True)
    meta = {"machine": f"{cpu_name()}, {args.threads} threads" if args.device == "cpu"
            else torch.cuda.get_device_name(), "device": args.device,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "nnip": nnip.__version__, "torch": torch.__version__,
            "python": platform.python_version(),
            "model": "PaiNN 64 features, 3 layers, cutoff 5 Å, float64"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "md.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"MD speed, {meta['machine']}, {meta['date']}, nnip {meta['nnip']}, torch "
             f"{meta['torch']}; {meta['model']}; NVE velocity Verlet, 1 fs.", "",
             *markdown_table(
                 ["case", "nnip engine (steps/s)", "nnip engine, skin 0 (steps/s)",
                  "ASE VelocityVerlet + NNIPCalculator (steps/s)", "nnip / ASE", "nnip ns/day",
                  "batch gain"],
                 ([r["case"], f"{r['nnip_steps_per_s']:.2f}",
                   _rate_text(r.get("nnip_skin0_steps_per_s")), f"{r['ase_steps_per_s']:.2f}",
                   f"{r['speedup']:.2f}", f"{r['nnip_ns_per_day']:.3g}",
                   _gain_text(r.get("batch_gain_vs_one_at_a_time"))]
                  for r in rows))]
    (out / "md.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _rate_text(rate: float | None) -> str:
    return f"{rate:.2f}" if rate else "–"


def _gain_text(gain: float | None) -> str:
    return f"{gain:.1f}x" if gain else "–"


if __name__ == "__main__":
    main()

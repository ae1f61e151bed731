"""LAMMPS with learned-charge electrostatics: cost per step without charges, with local
charges and with charge equilibration.

Rattled rock-salt NaCl (cubic cells, a = 5.64 Å), NVE from 300 K at 1 fs, one MPI
process, one thread. The model is a PaiNN (32 features, 2 interactions, cutoff 5 Å,
float64; untrained weights, the charge readout scaled so that charges are ~0.1-0.5 e) in
three versions: no electrostatics, ``charge_model: local`` and ``charge_model: qeq``
(σ = 1 Å, shared charge readout). Reported from the pair style's own end-of-run log: ms
per step, of which in the package (both entries) and in the Ewald sum (for qeq: the
conjugate-gradient solves included), k-vectors and conjugate-gradient iterations per step.
With ``--committee K`` each variant also runs as a committee of K such models (seeds
0..K-1; each member its own charges, so one charge solve and Ewald sum per member), in
the same run, written to ``results/charges_committee<K>.{json,md}``.

Usage (repository root, project environment, after ``nnip lammps build``)::

    python benchmarks/lammps/bench_charges.py --repeats 4x3x2 5x5x5 --steps 10
    python benchmarks/lammps/bench_charges.py --repeats 4x3x2 --committee 3
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
import numpy as np
import torch
from ase.build import bulk

from nnip.export.compiled import export_compiled
from nnip.export.lammps import plugin_env
from nnip.models import Committee, build

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import markdown_table, run_meta  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL = {"n_features": 32, "n_interactions": 2}
CUTOFF = 5.0
VARIANTS = ("none", "local", "qeq")


def _model(variant: str, seed: int = 0):
    electrostatics = None if variant == "none" else {
        "smearing": 1.0, "method": "ewald", "charge_model": variant,
        **({"hardness": 4.0} if variant == "qeq" else {})}
    model = build("painn", ["Na", "Cl"], CUTOFF, seed=seed, zbl=True,
                  electrostatics=electrostatics, **MODEL)
    if electrostatics is not None:
        term = model.terms["electrostatics"]
        last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(30.0)
            last.bias.mul_(30.0)
    return model


def _run(work: Path, package: Path, repeat: tuple[int, int, int], steps: int) -> dict:
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=1)
    ase.io.write(work / "data.lmp", atoms, format="lammps-data", specorder=["Na", "Cl"],
                 masses=True)
    (work / "in.lammps").write_text(f"""
units metal
atom_style atomic
read_data data.lmp
pair_style nnip
pair_coeff * * {package} Na Cl
velocity all create 300 1 dist gaussian
timestep 0.001
fix nve all nve
thermo {steps}
run 2
run {steps}
""")
    command = [str(Path(sys.executable).parent / "lmp"), "-in", "in.lammps", "-log", "none"]
    env = {**os.environ, **plugin_env(), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    seconds, done = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps",
                               out.stdout)[-1]
    row = {"atoms": len(atoms), "ms_per_step": 1e3 * float(seconds) / int(done)}
    split = re.findall(r"([0-9.eE+-]+) ms in the package .*?, ([0-9.eE+-]+) ms in the Ewald "
                       r"sum \((\d+) k-vectors\)", out.stdout)
    if split:
        row.update(package_ms=float(split[-1][0]), ewald_ms=float(split[-1][1]),
                   kvectors=int(split[-1][2]))
    iterations = re.findall(r"([0-9.]+) conjugate-gradient iterations per step", out.stdout)
    if iterations:
        row["cg_iterations"] = float(iterations[-1])
    return row


def write_results(rows: list[dict], steps: int, name: str = "charges") -> str:
    """Write results/<name>.{json,md}; returns the Markdown."""
    meta = {**run_meta(1), "model": f"painn {MODEL}, cutoff {CUTOFF} Å, float64, σ = 1 Å",
            "steps": steps}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                             indent=1))

    def get(r: dict, key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "–"

    table = markdown_table(
        ["cell", "atoms", "electrostatics", "k-vectors", "ms/step", "in the package",
         "in the Ewald sum (+ solves)", "CG iterations per step"],
        ([r["cell"], f"{r['atoms']:,}", r["variant"], get(r, "kvectors", ","),
          f"{r['ms_per_step']:.0f}", get(r, "package_ms", ".0f"), get(r, "ewald_ms", ".0f"),
          get(r, "cg_iterations", ".1f")] for r in rows))
    text = "\n".join([f"{meta['machine']}, {meta['date']}, nnip {meta['nnip']}, torch "
                      f"{meta['torch']}; {meta['model']}; 1 process x 1 thread; {steps} "
                      "timed NVE steps", "", *table])
    (HERE / "results" / f"{name}.md").write_text(text + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", nargs="+", default=["4x3x2", "5x5x5"],
                        help="cubic rock-salt cells (8 ions each) per direction, e.g. 4x3x2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--work", default=str(HERE / "runs" / "charges"))
    parser.add_argument("--committee", type=int, default=1,
                        help="also run each variant as a committee of this many members")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    np.random.seed(0)
    k = args.committee
    variants = [(v, 1) for v in VARIANTS] + ([(v, k) for v in VARIANTS] if k > 1 else [])
    name = "charges" if k == 1 else f"charges_committee{k}"
    packages = {}
    for variant, members in variants:
        path = work / (f"{variant}.pt2" if members == 1 else f"{variant}_x{members}.pt2")
        if not path.is_file():
            model = _model(variant) if members == 1 else \
                Committee([_model(variant, seed) for seed in range(members)])
            export_compiled(model, path, progress=False)
        packages[variant, members] = path
    rows = []
    for text in args.repeats:
        repeat = tuple(int(v) for v in text.split("x"))
        for variant, members in variants:
            label = variant if members == 1 else f"{variant}, committee of {members}"
            row = {"cell": text, "variant": label,
                   **_run(work, packages[variant, members], repeat, args.steps)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_results(rows, args.steps, name)
    print(write_results(rows, args.steps, name))


if __name__ == "__main__":
    main()

"""Cost of the long-range Coulomb term: Ewald against PME, by system size and smearing.

Times one energy + gradient (what forces need) of `nnip.physics.electrostatics.Coulomb`
with random neutral charges, float64, on rock-salt cells of 8, 64 and 216 atoms and on
the 192-atom DeePMD water box, for Ewald and PME at smearing 1, 1.5 and 2 Å (each the
median of 5 calls after a warm-up). This is what sets `PME_FROM` (``method: auto``).

Usage (repository root, project environment)::

    python benchmarks/md/bench_coulomb.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import ase.io
import torch
from ase.build import bulk

from nnip.data.graph import AtomicGraph, replace
from nnip.physics.electrostatics import Coulomb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from peers import markdown_table, run_meta  # noqa: E402

WATER = HERE.parents[2] / "shared" / "data" / "deepmd_water" / "test.xyz"


def seconds_per_call(coulomb: Coulomb, graph: AtomicGraph, repeats: int = 5) -> float:
    """Median wall time of energy + gradient with respect to positions."""
    q = torch.randn(graph.n_atoms, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q -= q.mean()
    times = []
    for k in range(repeats + 1):
        moved = replace(graph, positions=graph.positions.clone().requires_grad_(True))
        start = time.perf_counter()
        coulomb(moved, q).sum().backward()
        if k:  # the first call is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Write results/coulomb.{json,md} and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    systems = {f"rock salt, {8 * n**3} atoms": bulk("NaCl", "rocksalt", a=5.64,
                                                       cubic=True).repeat(n) for n in (1, 2, 3)}
    if WATER.exists():
        systems["water box, 192 atoms"] = ase.io.read(WATER, 0)
    rows = []
    for name, atoms in systems.items():
        graph = AtomicGraph.from_atoms(atoms, 3.0)
        for smearing in (1.0, 1.5, 2.0):
            ms = {m: 1e3 * seconds_per_call(Coulomb(smearing, m), graph) for m in ("ewald", "pme")}
            rows.append({"system": name, "n_atoms": len(atoms), "smearing_A": smearing,
                         "ewald_ms": ms["ewald"], "pme_ms": ms["pme"]})
            print(rows[-1], flush=True)
    meta = run_meta(args.threads)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "coulomb.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"Coulomb energy + gradient, {meta['machine']}, {meta['date']}, nnip "
             f"{meta['nnip']}, torch {meta['torch']}", "",
             *markdown_table(["system", "smearing (Å)", "Ewald (ms)", "PME (ms)"],
                             ([r["system"], f"{r['smearing_A']:g}", f"{r['ewald_ms']:.1f}",
                               f"{r['pme_ms']:.1f}"] for r in rows))]
    (out / "coulomb.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

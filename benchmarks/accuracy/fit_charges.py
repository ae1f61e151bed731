"""Can a charge model represent Au2–MgO's reference charges? Fit charges alone.

Trains only the charges of a PaiNN with electrostatics (``--charge-model local`` or
``qeq``) against the Hirshfeld charges of all 18 frames of
``../shared/data/n2p2_4G_examples/Au2_MgO.xyz`` for a fixed wall time (per-atom MSE,
Adam), then prints the per-element charge MAE (me) and the Au2 charge of doped (with Al)
and undoped frames against the reference. This measures what the charge model can
represent (training error), not how it generalises.

Usage (repository root, project environment)::

    python benchmarks/accuracy/fit_charges.py --charge-model qeq --minutes 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np
import torch

from nnip.data.graph import AtomicGraph
from nnip.models import build

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main() -> None:
    """Fit and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charge-model", choices=["local", "qeq"], default="qeq")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames = ase.io.read(DATA / "n2p2_4G_examples" / "Au2_MgO.xyz", ":")
    model = build("painn", ["O", "Mg", "Al", "Au"], 5.0, n_features=64, n_interactions=1,
                  seed=0, electrostatics={"smearing": 2.0, "charge_model": args.charge_model})
    graphs = [AtomicGraph.from_atoms(a, model.cutoff) for a in frames]
    refs = [torch.as_tensor(a.arrays["ref_charges"]) for a in frames]
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < 60 * args.minutes:
        for graph, ref in zip(graphs, refs):
            loss = ((model.energies_and_charges(graph)[1] - ref) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    errors: dict[str, list[float]] = {}
    au2 = {"doped": [], "undoped": []}
    with torch.no_grad():
        for atoms, graph, ref in zip(frames, graphs, refs):
            q, r = model.energies_and_charges(graph)[1].numpy(), ref.numpy()
            for symbol in sorted(set(atoms.get_chemical_symbols())):
                mask = np.array(atoms.get_chemical_symbols()) == symbol
                errors.setdefault(symbol, []).extend(np.abs(q - r)[mask])
            gold = atoms.numbers == 79
            au2["doped" if 13 in atoms.numbers else "undoped"].append((r[gold].sum(),
                                                                         q[gold].sum()))
    print(f"{args.charge_model}: {steps} steps in {args.minutes:g} min; charge MAE (me): " +
          ", ".join(f"{s} {1e3 * np.mean(v):.1f}" for s, v in errors.items()))
    for kind, pairs in au2.items():
        v = np.array(pairs)
        print(f"  {kind}: Au2 charge reference {v[:, 0].mean():+.3f} e, fitted "
              f"{v[:, 1].mean():+.3f} e")


if __name__ == "__main__":
    main()

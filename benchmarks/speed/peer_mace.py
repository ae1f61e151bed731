"""mace-torch side of the speed benchmark (runs in ``benchmarks/.venvs/mace``).

``python peer_mace.py SPEC OUT`` builds mace-torch's ``ScaleShiftMACE`` with random
weights and the sizes of nnip's ``nnip-mace`` benchmark model (the accuracy benchmark's
``--num_channels 32 --max_ell 2 --max_L 1 --correlation 3 --num_interactions 2
--num_radial_basis 8 --radial_MLP [64, 64, 64]``; mace-torch's defaults otherwise:
residual interaction blocks, polynomial cutoff p = 5, MLP readout 16x0e, SiLU gates),
cutoff from the spec, average neighbour count 40, and measures through the routes
mace-torch users take:

- inference: seconds per energy + forces + stress call of ``MACECalculator`` (float32,
  neighbour list by mace-torch's own ``get_neighborhood``), median of the spec's repeats;
  peak resident memory after each structure;
- training: float64, batches built by mace-torch's data pipeline (``AtomicData`` graphs
  built once, ``torch_geometric`` collation every step), loss MSE(energy per atom) +
  MSE(forces) + MSE(stress), Adam lr 1e-3, steps per second;
- MD: NVE velocity Verlet of ASE with ``MACECalculator`` (float32), steps/s and ns/day.

The results are written as JSON in the shape every side of the benchmark shares.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import batches, labels, progress, time_ase_md, time_calculator, time_steps  # noqa: E402

HIDDEN = "32x0e + 32x1o"
DESCRIPTION = ("ScaleShiftMACE: 32 channels, hidden 32x0e+32x1o (max_L 1), spherical "
               "harmonics to l=2, correlation 3, 2 interactions, 8 Bessel, radial MLP "
               "64x3, polynomial cutoff p=5, random weights; MACECalculator, float32 "
               "inference / float64 training")


def build(elements: list[int], cutoff: float, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight ScaleShiftMACE for atomic numbers ``elements``."""
    from e3nn import o3
    from mace import modules

    torch.manual_seed(0)
    model = modules.ScaleShiftMACE(
        r_max=cutoff, num_bessel=8, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=2, num_elements=len(elements), hidden_irreps=o3.Irreps(HIDDEN),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(elements)),
        avg_num_neighbors=40.0, atomic_numbers=elements, correlation=3,
        gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
        atomic_inter_scale=0.1, atomic_inter_shift=0.0)
    return model.to(dtype)


def calculator(model: torch.nn.Module) -> Any:
    from mace.calculators import MACECalculator

    return MACECalculator(models=model.float(), device="cpu", default_dtype="float32")


def train_step_fn(frames: list, cutoff: float, batch_size: int) -> Any:
    """A function doing one optimizer step on batch ``k % n_batches``."""
    from mace.data import AtomicData, config_from_atoms
    from mace.tools import AtomicNumberTable, torch_geometric

    torch.set_default_dtype(torch.float64)
    zs = sorted({int(z) for a in frames for z in a.numbers})
    model = build(zs, cutoff, torch.float64)
    table = AtomicNumberTable(zs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    groups = batches(frames, batch_size)
    targets = [{k: torch.tensor(v) for k, v in labels(g).items()} for g in groups]

    # graphs built once, as mace-torch's data loading does; collated every step
    graphs = [[AtomicData.from_config(config_from_atoms(a), z_table=table, cutoff=cutoff)
               for a in group] for group in groups]

    def step(k: int) -> None:
        ref = targets[k % len(groups)]
        batch = torch_geometric.Batch.from_data_list(graphs[k % len(groups)])
        out = model(batch.to_dict(), training=True, compute_force=True,
                    compute_stress=True)
        loss = (((out["energy"] - ref["energy"]) / ref["n_atoms"]) ** 2).mean() \
            + ((out["forces"] - ref["forces"]) ** 2).mean() \
            + ((out["stress"] - ref["stress"]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step, sum(p.numel() for p in model.parameters())


def main(spec_path: str, out_path: str) -> None:
    import mace

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    cutoff = spec["cutoff"]
    progress("mace-torch")
    result: dict[str, Any] = {"model": "mace-torch", "description": DESCRIPTION,
                              "inference": {}, "errors": {}}
    for item in spec["inference"]:
        try:
            atoms = ase.io.read(item["file"])
            torch.set_default_dtype(torch.float32)
            atoms.calc = calculator(build(sorted(set(atoms.numbers.tolist())), cutoff,
                                          torch.float32))
            result["inference"][item["name"]] = time_calculator(atoms, item["repeats"])
        except Exception as err:  # record and go on (e.g. out of memory)
            result["errors"][f"inference {item['name']}"] = f"{type(err).__name__}: {err}"
    t = spec["training"]
    try:
        step, n_params = train_step_fn(ase.io.read(t["file"], ":"), cutoff, t["batch_size"])
        result["n_parameters"] = n_params
        result["training"] = {**time_steps(step, t["warmup"], t["steps"], "training"),
                              "batch_size": t["batch_size"]}
    except Exception as err:
        result["errors"]["training"] = f"{type(err).__name__}: {err}"
    m = spec["md"]
    try:
        atoms = ase.io.read(m["file"])
        torch.set_default_dtype(torch.float32)
        atoms.calc = calculator(build([29], cutoff, torch.float32))
        result["md"] = {"engine": "ASE VelocityVerlet + MACECalculator",
                        "structure": m["name"],
                        **time_ase_md(atoms, m["timestep_fs"], m["warmup"], m["steps"])}
    except Exception as err:
        result["errors"]["md"] = f"{type(err).__name__}: {err}"
    Path(out_path).write_text(json.dumps(
        {"package": "mace-torch", "version": mace.__version__, "torch": torch.__version__,
         "models": [result]}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    main(sys.argv[1], sys.argv[2])

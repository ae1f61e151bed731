"""nnip side of the speed benchmark (runs in the project environment).

``python run_nnip.py SPEC OUT`` measures each nnip architecture in its own subprocess
(so that its peak memory is its own) with random weights, cutoff from the spec and an
average neighbour count of 40, at the sizes of the accuracy benchmark:

- ``nnip-schnet``: 64 features, 3 interactions, 32 Gaussians;
- ``nnip-painn`` (the default until 2026-12-06): 64 features, 3 layers, 20 Bessel functions;
- ``nnip-nequip``: 32 features per irrep, l_max 2, both parities, 3 layers, 8 Bessel;
- ``nnip-mace``: 32 channels, spherical harmonics to l = 2, hidden 0e+1o, correlation 3,
  2 layers, 8 Bessel (the sizes of mace-torch's side; nnip's recommended default).

Measured through the routes nnip users take: energy + forces + stress calls of
`NNIPCalculator` (float32, vesin neighbour list), training steps of nnip's trainer
pipeline (float64; graphs cached by `StructureDataset` as ``nnip train`` does, the
trainer's loss with weights 1:1:1, Adam lr 1e-3), and NVE MD with nnip's own engine
(`nnip.md.MD`, float32).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ase.io
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import progress, time_calculator, time_steps  # noqa: E402

MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    "nnip-schnet": ("schnet", {"n_features": 64, "n_interactions": 3, "n_basis": 32},
                    "SchNet: 64 features, 3 interactions, 32 Gaussians"),
    "nnip-painn": ("painn", {"n_features": 64, "n_interactions": 3},
                   "PaiNN: 64 features, 3 layers, 20 Bessel"),
    "nnip-nequip": ("nequip", {"n_features": 32, "l_max": 2, "n_interactions": 3},
                    "NequIP-style: 32 features, l_max 2, O(3), 3 layers, 8 Bessel, "
                    "radial MLP 64x2"),
    "nnip-mace": ("mace", {"n_features": 32, "l_max": 2, "hidden_l_max": 1, "correlation": 3,
                           "n_interactions": 2},
                  "MACE-style: 32 channels, sh l=2, hidden 0e+1o, correlation 3, "
                  "2 layers, 8 Bessel, radial MLP 64"),
}
SUFFIX = ", random weights; NNIPCalculator float32 inference / float64 training"
COMPILED = "+compile"
"""Suffix of a model measured with torch.compile (inference, MD and training)."""


def build(name: str, elements: list[str], cutoff: float, dtype: torch.dtype) -> Any:
    from nnip.models import build as build_model

    arch, params, _ = MODELS[name]
    return build_model(arch, elements=sorted(elements), cutoff=cutoff, dtype=dtype,
                       e0=dict.fromkeys(elements, 0.0), scale=0.05, seed=0,
                       avg_num_neighbors=40.0, **params)


def measure(entry: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Every measurement of one architecture (called in a fresh process).

    ``entry`` is a name of `MODELS`, or that name + `COMPILED`: the same model with
    ``compile=True`` for inference and MD and ``train.compile`` for training (each
    compiles at its warm-up call, which is not timed; compile times are recorded).
    """
    from nnip.calculators.ase import NNIPCalculator
    from nnip.data import read
    from nnip.data.datasets import StructureDataset
    from nnip.md import MD, VelocityVerlet, maxwell_boltzmann
    from nnip.models.functional import FunctionalForces
    from nnip.training.loss import Loss

    torch.set_num_threads(spec["threads"])
    progress(entry)
    compiled = entry.endswith(COMPILED)
    name = entry.removesuffix(COMPILED)
    cutoff = spec["cutoff"]
    result: dict[str, Any] = {
        "model": entry, "inference": {}, "errors": {}, "compile_s": {},
        "description": MODELS[name][2] + SUFFIX + (", torch.compile" if compiled else "")}
    for item in spec["inference"]:
        try:
            atoms = ase.io.read(item["file"])
            model = build(name, sorted(set(atoms.get_chemical_symbols())), cutoff,
                          torch.float32)
            atoms.calc = NNIPCalculator(model, compile=compiled)
            if compiled:  # the first call compiles (cached on disk for later sizes)
                start = time.perf_counter()
                atoms.get_forces()
                result["compile_s"][item["name"]] = time.perf_counter() - start
                if not atoms.calc.functional.compiled:
                    raise RuntimeError("torch.compile failed; not timed uncompiled")
            result["inference"][item["name"]] = time_calculator(atoms, item["repeats"])
        except Exception as err:  # record and go on (e.g. out of memory)
            result["errors"][f"inference {item['name']}"] = f"{type(err).__name__}: {err}"
    t = spec["training"]
    try:
        from nnip.config import LossConfig

        frames = read(t["file"])
        model = build(name, ["Cu"], cutoff, torch.float64)
        result["n_parameters"] = sum(p.numel() for p in model.parameters())
        data = StructureDataset(frames, cutoff)
        loss_fn = Loss(LossConfig(energy_weight=1.0, forces_weight=1.0, stress_weight=1.0))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        size = t["batch_size"]
        groups = [list(range(k, min(k + size, len(frames))))
                  for k in range(0, len(frames), size)]

        forces = FunctionalForces(model, compile=True) if compiled else None

        def step(k: int) -> None:
            graph, targets = data.batch(groups[k % len(groups)])
            out = forces(graph, compute_stress=True) if forces else \
                model(graph, compute_forces=True, compute_stress=True, training=True)
            loss, _ = loss_fn(out, targets, graph)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        if compiled:
            start = time.perf_counter()
            step(0)  # compiles
            result["compile_s"]["training"] = time.perf_counter() - start
            if not forces.compiled:
                raise RuntimeError("torch.compile failed; not timed uncompiled")
        result["training"] = {**time_steps(step, t["warmup"], t["steps"], "training"),
                              "batch_size": size}
    except Exception as err:
        result["errors"]["training"] = f"{type(err).__name__}: {err}"
    m = spec["md"]
    try:
        import numpy as np
        from ase import units

        atoms = ase.io.read(m["file"])
        v = maxwell_boltzmann(atoms.get_masses(), 300.0, np.random.default_rng(0))
        atoms.set_velocities(v / units.fs)
        md = MD(build(name, ["Cu"], cutoff, torch.float32), atoms,
                VelocityVerlet(m["timestep_fs"]), write_every=10**9, progress=False,
                compile=compiled)
        if compiled:
            start = time.perf_counter()
            md.run(1)
            result["compile_s"]["md"] = time.perf_counter() - start
            if not md.functional.compiled:
                raise RuntimeError("torch.compile failed; not timed uncompiled")
        out = time_steps(lambda k: md.run(1), m["warmup"], m["steps"], "MD")
        result["md"] = {"engine": "nnip.md.MD (NVE)", "structure": m["name"], **out,
                        "ns_per_day": out["steps_per_s"] * m["timestep_fs"] * 86400 / 1e6}
    except Exception as err:
        result["errors"]["md"] = f"{type(err).__name__}: {err}"
    return result


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("out")
    entries = [n + suffix for n in MODELS for suffix in ("", COMPILED)]
    parser.add_argument("--model", choices=entries, action="append",
                        help="measure only these (default: all, each in its own process; "
                             f"a name ending in {COMPILED} is the model with torch.compile)")
    parser.add_argument("--inline", action="store_true",
                        help="measure in this process (used for the subprocesses)")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    names = args.model or entries
    if args.inline:
        results = [measure(n, spec) for n in names]
    else:
        results = []
        for n in names:
            part = Path(args.out).with_suffix(f".{n}.json")
            subprocess.run([sys.executable, __file__, args.spec, str(part), "--model", n,
                            "--inline"], check=True)
            results += json.loads(part.read_text())["models"]
            part.unlink()
    import nnip

    Path(args.out).write_text(json.dumps({"package": "nnip", "version": nnip.__version__,
                                          "torch": torch.__version__, "models": results},
                                         indent=1))


if __name__ == "__main__":
    main()

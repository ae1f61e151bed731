"""nequip side of the speed benchmark (runs in ``benchmarks/.venvs/nequip``).

``python peer_nequip.py SPEC OUT`` builds nequip's NequIP model with random (untrained)
weights through its model builder ``nequip.model.NequIPGNNModel``, with sizes comparable
to nnip's NequIP-style model:

- cutoff from the spec (5 Å), ``l_max`` 2, ``parity`` true (full O(3): features
  32x0e+32x0o+32x1o+32x1e+32x2e+32x2o in the hidden layers), 32 features per irrep,
  3 interaction layers, 8 Bessel radial functions (not trainable), radial MLP with
  2 hidden layers of width 64, polynomial cutoff p = 6, ``avg_num_neighbors`` 40 (fcc Cu
  has 42 neighbours within 5 Å); nequip's defaults otherwise (type embedding of
  32 features, self-connections from layer 2 on, gated SiLU/tanh nonlinearities, linear
  readout); per-type energy scale 1 and shift 0;
- one model per element set: Cu for the ``cu_*`` structures and the training batches,
  H + O for ``water_192``.

It measures through the routes nequip users take (eager PyTorch, no compilation):

- inference: seconds per energy + forces + stress call of
  ``nequip.integrations.ase.NequIPCalculator`` (float32 model, neighbour list by nequip's
  ``NeighborListTransform``, default backend matscipy, inside every call), median of the
  spec's repeats after one untimed warm-up call, positions displaced by ~1e-4 Å before
  every call; ``peak_rss_mb`` is the process's peak resident memory (VmHWM) after that
  structure;
- training: float64 model, batches of ``batch_size`` frames in file order built every
  step by nequip's data pipeline (``ASEDataset`` with ``ChemicalSpeciesToAtomTypeMapper``
  and ``NeighborListTransform``, ``torch.utils.data.DataLoader`` with nequip's collate
  function ``AtomicDataDict.batched_from_list``), loss MSE(energy per atom) +
  MSE(forces) + MSE(stress) computed here from the model's outputs and the batch's
  labels, Adam lr 1e-3; steps per second after the spec's warm-up steps;
- MD: NVE velocity Verlet of ASE (``ase.md.verlet.VelocityVerlet``) driven by
  ``NequIPCalculator`` (float32), Maxwell-Boltzmann velocities at 300 K; steps/s and
  ns/day = steps/s * timestep_fs * 86400 / 1e6.

Not measured: nequip's compiled inference route (``nequip-compile --mode aotinductor``
then ``NequIPCalculator.from_compiled_model``; TorchScript compilation is refused by
nequip for torch >= 2.10) and train-time ``torch.compile`` (``compile_mode="compile"``).

The results are written as JSON in the shape every side of the benchmark shares; the
file is rewritten after every measurement so that a crash (e.g. the kernel's
out-of-memory killer) leaves the results obtained until then.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ase
import ase.data
import ase.io
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import progress, time_ase_md, time_calculator, time_steps  # noqa: E402

AVG_NUM_NEIGHBORS = 40.0
HYPERPARAMETERS = dict(num_layers=3, l_max=2, parity=True, num_features=32,
                       radial_mlp_depth=2, radial_mlp_width=64, num_bessels=8,
                       polynomial_cutoff_p=6, avg_num_neighbors=AVG_NUM_NEIGHBORS,
                       per_type_energy_scales=1.0, per_type_energy_shifts=0.0)
DESCRIPTION = ("NequIP: l_max 2, parity (full O(3)), 32 features per irrep, 3 layers, "
               "8 Bessel, radial MLP 64x2, polynomial cutoff p=6, avg_num_neighbors 40, "
               "cutoff 5 Å, random weights, eager PyTorch; float32 inference / float64 "
               "training, ASE calculator nequip.integrations.ase.NequIPCalculator")
CALCULATOR = "NequIPCalculator"


def type_names(atoms: ase.Atoms | list[ase.Atoms]) -> list[str]:
    """Chemical symbols present, ordered by atomic number (the model's type names)."""
    frames = atoms if isinstance(atoms, list) else [atoms]
    numbers = sorted({int(z) for a in frames for z in a.numbers})
    return [ase.data.chemical_symbols[z] for z in numbers]


def build_model(types: list[str], cutoff: float, dtype: str) -> torch.nn.Module:
    """A random-weight NequIP ``GraphModel`` for ``types`` (``dtype``: float32/float64)."""
    from nequip.model import NequIPGNNModel

    return NequIPGNNModel(seed=0, model_dtype=dtype, type_names=types, r_max=cutoff,
                          **HYPERPARAMETERS)


def n_parameters(model: torch.nn.Module) -> int:
    """Number of trainable and fixed parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def calculator(model: torch.nn.Module, cutoff: float) -> Any:
    """``NequIPCalculator`` around an in-memory model.

    The transforms are those that ``NequIPCalculator.from_compiled_model`` and the
    saved-model loader attach: chemical symbol -> type index, then the neighbour list.
    """
    from nequip.integrations.ase import NequIPCalculator
    from nequip.integrations.utils import basic_transforms

    model.eval()
    types = list(model.type_names)
    transforms = basic_transforms(model.metadata, cutoff, types, {t: t for t in types})
    return NequIPCalculator(model=model, device="cpu", transforms=transforms)


def measure_inference(item: dict[str, Any], cutoff: float) -> dict[str, Any]:
    """Seconds per energy + forces + stress call on the spec's structure ``item``."""
    atoms = ase.io.read(item["file"])
    atoms.calc = calculator(build_model(type_names(atoms), cutoff, "float32"), cutoff)
    return time_calculator(atoms, item["repeats"])


def train_step_fn(file: str, cutoff: float, batch_size: int) -> Callable[[int], None]:
    """A function doing one optimizer step on the next batch of the file's frames."""
    from nequip.data import AtomicDataDict
    from nequip.data.dataset import ASEDataset
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

    types = type_names(ase.io.read(file, ":"))
    model = build_model(types, cutoff, "float64")
    model.train()
    dataset = ASEDataset(file, transforms=[
        ChemicalSpeciesToAtomTypeMapper(model_type_names=types),
        NeighborListTransform(r_max=cutoff)])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         collate_fn=AtomicDataDict.batched_from_list)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def cycle():  # a new pass over the loader per epoch: transforms and collation rerun
        while True:
            yield from loader

    batches = cycle()

    def step(k: int) -> None:
        batch = next(batches)
        out = model(batch)
        n_atoms = batch[AtomicDataDict.NUM_NODES_KEY].view(-1)
        energy = out[AtomicDataDict.TOTAL_ENERGY_KEY].view(-1)
        ref_energy = batch[AtomicDataDict.TOTAL_ENERGY_KEY].view(-1)
        loss = (((energy - ref_energy) / n_atoms) ** 2).mean() \
            + ((out[AtomicDataDict.FORCE_KEY] - batch[AtomicDataDict.FORCE_KEY]) ** 2).mean() \
            + ((out[AtomicDataDict.STRESS_KEY].view(-1, 3, 3)
                - batch[AtomicDataDict.STRESS_KEY].view(-1, 3, 3)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def measure_training(spec: dict[str, Any]) -> dict[str, Any]:
    t = spec["training"]
    step = train_step_fn(t["file"], spec["cutoff"], t["batch_size"])
    return {**time_steps(step, t["warmup"], t["steps"], "training"), "batch_size": t["batch_size"]}


def measure_md(spec: dict[str, Any]) -> dict[str, Any]:
    m = spec["md"]
    atoms = ase.io.read(m["file"])
    atoms.calc = calculator(build_model(type_names(atoms), spec["cutoff"], "float32"),
                            spec["cutoff"])
    return {"engine": f"ASE VelocityVerlet + {CALCULATOR}", "structure": m["name"],
            **time_ase_md(atoms, m["timestep_fs"], m["warmup"], m["steps"])}


def main(spec_path: str, out_path: str) -> None:
    import nequip
    from nequip.utils.global_state import set_global_state

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    set_global_state()  # nequip's global setup (float64 default dtype, seeds), required
    cutoff = spec["cutoff"]
    progress("nequip-nequip")
    result: dict[str, Any] = {"model": "nequip-nequip", "description": DESCRIPTION,
                              "n_parameters": None, "inference": {}, "errors": {}}

    def write() -> None:
        Path(out_path).write_text(json.dumps(
            {"package": "nequip", "version": nequip.__version__, "torch": torch.__version__,
             "models": [result]}, indent=1))

    def record(what: str, into: dict[str, Any], key: str, measure: Callable[[], Any]) -> None:
        """``into[key] = measure()``, or the error under ``what``; then rewrite OUT."""
        try:
            into[key] = measure()
        except Exception as err:  # record and go on (e.g. out of memory)
            result["errors"][what] = f"{type(err).__name__}: {err}"
        finally:
            write()

    record("n_parameters", result, "n_parameters",
           lambda: n_parameters(build_model(["Cu"], cutoff, "float32")))
    for item in spec["inference"]:
        record(f"inference {item['name']}", result["inference"], item["name"],
               lambda item=item: measure_inference(item, cutoff))
    record("training", result, "training", lambda: measure_training(spec))
    record("md", result, "md", lambda: measure_md(spec))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""schnetpack side of the speed benchmark (runs in ``benchmarks/.venvs/schnetpack``).

``python peer_schnetpack.py SPEC OUT`` builds two schnetpack 2.2 models with random
weights, at the sizes of nnip's ``nnip-schnet`` and ``nnip-painn``, and measures each in
its own subprocess (so that its peak memory is its own):

- ``schnetpack-schnet``: ``schnetpack.representation.SchNet``, 64 features
  (``n_atom_basis``, filters 64), 3 interactions, 32 Gaussians (``GaussianRBF`` centres
  0 to the cutoff), cosine cutoff, shifted-softplus activations;
- ``schnetpack-painn``: ``schnetpack.representation.PaiNN``, 64 features, 3
  interactions, 20 Bessel functions (``BesselRBF``), cosine cutoff, SiLU activations.

Both use the cutoff of the spec, an atom-type embedding for Z < 100, an ``Atomwise``
energy head (schnetpack's default 64 -> 32 -> 1 MLP, sum over atoms) and
``Forces(calc_stress=True)`` behind the ``Strain`` and ``PairwiseDistances`` input
modules (forces and stress by autograd), inside ``NeuralNetworkPotential``. The numbers
are measured through the routes schnetpack users take:

- inference: the float32 model is saved with ``torch.save`` and loaded by
  ``SpkCalculator`` (``stress_key="stress"``, which turns on the stress as
  ``activate_model_stress`` does) with ``VesinNeighborList``, the fastest neighbour list
  schnetpack ships (in a one-off check on 108-2048 Cu atoms and the water box, matscipy's
  was 1.3-5 times and ASE's 7-75 times slower; ``TorchNeighborList`` fails on this
  torch). ``seconds``: median over the spec's repeats of one energy + forces + stress
  call (neighbour list included), after one untimed call, the positions moved by
  ~1e-4 Å before every call; ``all_seconds``: every timed call; ``peak_rss_mb``: the
  process's peak resident memory (VmHWM) after that structure;
- training: float64 model in training mode; every step converts its batch of frames
  with schnetpack's ``AtomsConverter`` (neighbour list per frame, cast to float64,
  ``_atoms_collate_fn`` collation), as schnetpack's data pipeline recomputes neighbour
  lists for every sample; loss MSE(energy per atom) + MSE(forces) + MSE(stress), Adam
  lr 1e-3; ``steps_per_s`` after the spec's untimed warm-up steps;
- MD: NVE velocity Verlet of ASE driven by ``SpkCalculator`` (float32, energy and
  forces: no stress, which NVE does not use), Maxwell-Boltzmann velocities at 300 K;
  ``steps_per_s`` and ``ns_per_day`` after the warm-up steps.

Results are written as JSON in the shape every side of the benchmark shares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import ase
import ase.io
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import batches, labels, progress, time_ase_md, time_calculator, time_steps  # noqa: E402

N_FEATURES = 64
N_INTERACTIONS = 3
MODELS: dict[str, tuple[str, str]] = {
    "schnetpack-schnet": ("schnet", "SchNet: 64 features, 3 interactions, 32 Gaussians"),
    "schnetpack-painn": ("painn", "PaiNN: 64 features, 3 interactions, 20 Bessel"),
}
NEIGHBOR_LIST = "VesinNeighborList"
SUFFIX = (", cosine cutoff {cutoff:g} Å, random weights; float32 inference / float64 "
          f"training, SpkCalculator with {NEIGHBOR_LIST}")


def build(arch: str, cutoff: float, dtype: torch.dtype, stress: bool = True
          ) -> torch.nn.Module:
    """A random-weight schnetpack ``NeuralNetworkPotential`` (energy, forces, stress).

    Args:
        arch: ``"schnet"`` or ``"painn"``.
        cutoff: radial cutoff, Å.
        dtype: parameter dtype.
        stress: include the ``Strain`` input and ``Forces(calc_stress=True)``; without,
            ``SpkCalculator(stress_key=...)`` adds both itself (``activate_model_stress``).
    """
    import schnetpack as spk

    torch.manual_seed(0)
    cutoff_fn = spk.nn.CosineCutoff(cutoff)
    if arch == "schnet":
        representation = spk.representation.SchNet(
            n_atom_basis=N_FEATURES, n_interactions=N_INTERACTIONS,
            radial_basis=spk.nn.GaussianRBF(n_rbf=32, cutoff=cutoff), cutoff_fn=cutoff_fn)
    elif arch == "painn":
        representation = spk.representation.PaiNN(
            n_atom_basis=N_FEATURES, n_interactions=N_INTERACTIONS,
            radial_basis=spk.nn.BesselRBF(n_rbf=20, cutoff=cutoff), cutoff_fn=cutoff_fn)
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    inputs = [spk.atomistic.Strain()] if stress else []
    model = spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[*inputs, spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=N_FEATURES, output_key="energy"),
                        spk.atomistic.Forces(calc_forces=True, calc_stress=stress)])
    return model.to(dtype)


def neighbor_list(cutoff: float) -> Any:
    from schnetpack.transform import VesinNeighborList

    return VesinNeighborList(cutoff=cutoff)


def calculator(arch: str, cutoff: float, folder: Path, stress: bool = True) -> Any:
    """``SpkCalculator`` (float32, eV and Å) loading a freshly saved random model."""
    from schnetpack.interfaces import SpkCalculator

    path = folder / f"{arch}.pt"
    if not path.exists():
        torch.save(build(arch, cutoff, torch.float32, stress=False), path)
    return SpkCalculator(model=str(path), neighbor_list=neighbor_list(cutoff),
                         energy_key="energy", force_key="forces",
                         stress_key="stress" if stress else None, energy_unit="eV",
                         position_unit="Angstrom", device="cpu", dtype=torch.float32)


def train_step_fn(arch: str, frames: list[ase.Atoms], cutoff: float, batch_size: int
                  ) -> Any:
    """A function doing one optimizer step on batch ``k % n_batches``."""
    from schnetpack.interfaces import AtomsConverter

    model = build(arch, cutoff, torch.float64).train()
    converter = AtomsConverter(neighbor_list=neighbor_list(cutoff), dtype=torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    groups = batches(frames, batch_size)
    targets = [{k: torch.from_numpy(v) for k, v in labels(g).items()} for g in groups]

    def step(k: int) -> None:
        ref = targets[k % len(groups)]
        out = model(converter(groups[k % len(groups)]))
        loss = (((out["energy"] - ref["energy"]) / ref["n_atoms"]) ** 2).mean() \
            + ((out["forces"] - ref["forces"]) ** 2).mean() \
            + ((out["stress"] - ref["stress"]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def measure(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Every measurement of one model (called in a fresh process)."""
    arch, description = MODELS[name]
    progress(name)
    torch.set_num_threads(spec["threads"])
    cutoff = spec["cutoff"]
    n_parameters = sum(p.numel() for p in build(arch, cutoff, torch.float32).parameters())
    result: dict[str, Any] = {"model": name,
                              "description": description + SUFFIX.format(cutoff=cutoff),
                              "n_parameters": n_parameters, "inference": {}, "errors": {}}
    with tempfile.TemporaryDirectory(prefix="peer_schnetpack_") as tmp:
        for item in spec["inference"]:
            try:
                atoms = ase.io.read(item["file"])
                atoms.calc = calculator(arch, cutoff, Path(tmp))
                result["inference"][item["name"]] = time_calculator(atoms, item["repeats"])
            except Exception as err:  # record and go on (e.g. out of memory)
                result["errors"][f"inference {item['name']}"] = f"{type(err).__name__}: {err}"
        t = spec["training"]
        try:
            step = train_step_fn(arch, ase.io.read(t["file"], ":"), cutoff, t["batch_size"])
            result["training"] = {**time_steps(step, t["warmup"], t["steps"], "training"),
                                  "batch_size": t["batch_size"]}
        except Exception as err:
            result["errors"]["training"] = f"{type(err).__name__}: {err}"
        m = spec["md"]
        try:
            atoms = ase.io.read(m["file"])
            atoms.calc = calculator(arch, cutoff, Path(tmp), stress=False)
            result["md"] = {"engine": "ASE VelocityVerlet + SpkCalculator",
                            "structure": m["name"],
                            **time_ase_md(atoms, m["timestep_fs"], m["warmup"], m["steps"])}
        except Exception as err:
            result["errors"]["md"] = f"{type(err).__name__}: {err}"
    return result


def run_in_subprocess(name: str, spec_path: str, out_path: str, cutoff: float
                      ) -> dict[str, Any]:
    """``measure(name)`` in a fresh interpreter; a crash becomes an ``errors`` entry."""
    part = Path(out_path).with_suffix(f".{name}.json")
    proc = subprocess.run([sys.executable, __file__, spec_path, str(part), "--model", name,
                           "--inline"], stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not part.exists():
        return {"model": name, "description": MODELS[name][1] + SUFFIX.format(cutoff=cutoff),
                "inference": {},
                "errors": {"process": f"exit code {proc.returncode}: "
                                      f"{proc.stderr.strip()[-2000:]}"}}
    result = json.loads(part.read_text())["models"][0]
    part.unlink()
    return result


def main() -> None:
    import argparse
    from importlib.metadata import version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("out")
    parser.add_argument("--model", choices=list(MODELS), action="append",
                        help="measure only these (default: all, each in its own process)")
    parser.add_argument("--inline", action="store_true",
                        help="measure in this process (used for the subprocesses)")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    names = args.model or list(MODELS)
    if args.inline:
        results = [measure(n, spec) for n in names]
    else:
        results = [run_in_subprocess(n, args.spec, args.out, spec["cutoff"]) for n in names]
    Path(args.out).write_text(json.dumps(
        {"package": "schnetpack", "version": version("schnetpack"),
         "torch": torch.__version__, "models": results}, indent=1))


if __name__ == "__main__":
    main()

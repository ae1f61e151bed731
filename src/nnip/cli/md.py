"""``nnip md``: molecular dynamics with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["CLICommand"]


class CLICommand:
    """Molecular dynamics with a model file: NVE, NVT Langevin or Nosé–Hoover, K replicas.

    Writes OUT/trajectory.extxyz (OUT/trajectory_000.extxyz ... with replicas) and
    OUT/thermo.csv (step, time_fs, system, temperature_K, epot_eV, ekin_eV, etot_eV,
    conserved_eV, pressure_GPa, volume_A3). Rerun the same command to continue from the
    last frames up to --steps in total. Stops with a message (exit status 3) on NaN,
    overheating or atoms closer than --min-distance-A, keeping the trajectory so far.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the arguments of ``nnip md`` to ``parser``."""
        from nnip.md.runner import ENSEMBLES

        parser.add_argument("model", help="model file (.nnip)")
        parser.add_argument("structure", help="starting structure (any format ASE reads; "
                            "the last frame of a trajectory)")
        parser.add_argument("--ensemble", choices=ENSEMBLES, default="nvt",
                            help="nve, nvt (Langevin, BAOAB), nvt-nh (Nosé–Hoover chain), "
                            "npt (Langevin + stochastic cell rescaling)")
        parser.add_argument("--temperature-K", type=float, default=300.0)
        parser.add_argument("--timestep-fs", type=float, default=1.0)
        parser.add_argument("--steps", type=int, required=True,
                            help="total steps (a rerun continues up to this number)")
        parser.add_argument("--replicas", type=int, default=1,
                            help="independent copies simulated in one batch")
        parser.add_argument("--friction-per-fs", type=float, default=0.01)
        parser.add_argument("--tdamp-fs", type=float, default=100.0)
        parser.add_argument("--pressure-GPa", type=float, default=0.0, help="NPT target")
        parser.add_argument("--tau-p-fs", type=float, default=1000.0,
                            help="NPT barostat relaxation time")
        parser.add_argument("--compressibility-per-GPa", type=float, default=0.01,
                            help="NPT: estimate of 1/B (metals 0.01, water 0.45)")
        parser.add_argument("--anisotropic", action="store_true",
                            help="NPT: each Cartesian axis scales on its own")
        parser.add_argument("--write-every", type=int, default=10)
        parser.add_argument("--skin-A", type=float, default=1.0)
        parser.add_argument("--min-distance-A", type=float, default=0.5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", metavar="DIR", default=None,
                            help="output folder (default: md_<structure stem>)")
        parser.add_argument("--device", default=None, help="torch device (default: cpu)")
        parser.add_argument("--dtype", choices=["float32", "float64"], default=None)
        parser.add_argument("--compile", action="store_true",
                            help="forces through torch.compile: 2-3x faster steps for "
                            "PaiNN/SchNet after a compilation of about a minute")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Load the model and structure and run."""
        import torch

        from nnip.data import read
        from nnip.export.model_file import load_model
        from nnip.md.runner import simulate

        dtype = None if args.dtype is None else getattr(torch, args.dtype)
        model = load_model(args.model, device=args.device, dtype=dtype)
        atoms = read(args.structure, index=-1)[0]
        out = Path(args.out) if args.out else Path(f"md_{Path(args.structure).stem}")
        result = simulate(model, atoms, out, steps=args.steps, ensemble=args.ensemble,
                          temperature_K=args.temperature_K, timestep_fs=args.timestep_fs,
                          replicas=args.replicas, friction_per_fs=args.friction_per_fs,
                          tdamp_fs=args.tdamp_fs, pressure_GPa=args.pressure_GPa,
                          tau_p_fs=args.tau_p_fs,
                          compressibility_per_GPa=args.compressibility_per_GPa,
                          anisotropic=args.anisotropic, write_every=args.write_every,
                          skin_A=args.skin_A, seed=args.seed, min_distance_A=args.min_distance_A,
                          compile=args.compile)
        print(f"{result.steps} steps in {result.seconds:.1f} s ({result.ns_per_day:.3g} ns/day "
              f"per system, {result.neighbor_rebuilds} neighbour-list builds) -> {out}")
        return 3 if result.stopped else 0

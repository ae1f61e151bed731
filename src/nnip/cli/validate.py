"""``nnip validate``: physical checks of a model with a JSON + HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["CLICommand"]


class CLICommand:
    """Physical validation of a model file, with a JSON + HTML report.

    Dimer curves, equation of state (and DFT volume scans in --data), phonons, NVE
    drift, NVT stability, RDF against the reference frames, diffusion, errors on --data.

    Writes OUT/report.json, one PNG per check and a self-contained OUT/report.html.
    The exit status is 1 when a check fails (a ✘ in the report), 0 otherwise.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the arguments of ``nnip validate`` to ``parser``."""
        from nnip.validate.report import CHECKS

        parser.add_argument("model", help="model file (.nnip)")
        parser.add_argument("--structure", required=True,
                            help="structure to simulate (crystal, liquid box or molecule; "
                            "the last frame of a file)")
        parser.add_argument("--data", nargs="*", default=[],
                            help="labelled reference frames (test set, AIMD, volume scans)")
        parser.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
        parser.add_argument("--temperature-K", type=float, default=300.0)
        parser.add_argument("--timestep-fs", type=float, default=1.0)
        parser.add_argument("--nvt-ps", type=float, default=10.0, help="NVT run length")
        parser.add_argument("--nve-ps", type=float, default=2.0, help="each NVE run's length")
        parser.add_argument("--no-relax", action="store_true",
                            help="skip the relaxation before the EOS and phonons")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", metavar="DIR", default=None,
                            help="report folder (default: validate_<model stem>)")
        parser.add_argument("--device", default=None, help="torch device (default: cpu)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Load model, structure and data; run the checks; print the summary."""
        from nnip.data import read
        from nnip.export.model_file import load_model
        from nnip.validate.report import validate

        model = load_model(args.model, device=args.device)
        structure = read(args.structure, index=-1)[0]
        data = [atoms for path in args.data for atoms in read(path)]
        out = Path(args.out) if args.out else Path(f"validate_{Path(args.model).stem}")
        report = validate(model, structure, out, data=data, checks=args.checks,
                          temperature_K=args.temperature_K, timestep_fs=args.timestep_fs,
                          nvt_duration_fs=1000 * args.nvt_ps, nve_duration_fs=1000 * args.nve_ps,
                          relax=not args.no_relax, seed=args.seed)
        marks = {True: "ok  ", False: "FAIL", None: "    "}
        for name, item in report["summary"].items():
            print(f"{marks[item['ok']]} {name:10s} {item['text']}")
        return 1 if any(item["ok"] is False for item in report["summary"].values()) else 0

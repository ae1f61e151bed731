"""``nnip eval``: errors of a model on labelled data."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["CLICommand"]


class CLICommand:
    """Errors of a model on labelled data: MAE/RMSE per property, element and config_type.

    Prints the table (meV/atom, meV/Å, meV/Å^3) and writes NAME_errors.json (eV units),
    NAME_parity.png and NAME_predictions.extxyz (frames with forces_pred, energy_pred,
    stress_pred next to the labels, for OVITO) into the output folder.
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the arguments of ``nnip eval`` to ``parser``."""
        parser.add_argument("model", help="model file (.nnip)")
        parser.add_argument("data", nargs="+",
                            help="labelled structure files (extxyz, DeePMD folder, n2p2 ...)")
        parser.add_argument("--out", metavar="DIR", default=None,
                            help="output folder (default: eval_<stem of the first data file>)")
        parser.add_argument("--name", default="eval", help="prefix of the output file names")
        parser.add_argument("--batch-size", type=int, default=8, help="frames per model call")
        parser.add_argument("--device", default=None,
                            help="torch device, e.g. cpu or cuda (default: cpu)")
        parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                            help="model dtype (default: the one stored in the model file)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Load the model and data, evaluate, print the table and the files written."""
        import torch

        from nnip.data import read
        from nnip.export.model_file import load_model
        from nnip.validate.errors import evaluate, evaluation_files, format_error_table

        dtype = None if args.dtype is None else getattr(torch, args.dtype)
        model = load_model(args.model, device=args.device, dtype=dtype)
        frames = [atoms for path in args.data for atoms in read(path)]
        out_dir = Path(args.out) if args.out else Path(f"eval_{Path(args.data[0]).stem}")
        table = evaluate(model, frames, out_dir, batch_size=args.batch_size, name=args.name,
                         progress=True)
        print(f"{args.model} on {len(frames)} frames from {', '.join(args.data)}")
        print(format_error_table(table))
        if "uncertainty" in table:
            u = table["uncertainty"]
            print(f"uncertainty (committee): Spearman {u.get('spearman', float('nan')):.3f}, "
                  f"miscalibration area {u.get('miscalibration_area', float('nan')):.3f}, "
                  f"RMS error / RMS spread {u.get('rms_error_over_rms_sigma', float('nan')):.2f}")
        for label, path in evaluation_files(out_dir, args.name).items():
            if path.exists():
                print(f"{label:>12}: {path}")
        return 0

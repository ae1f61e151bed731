"""Errors of a potential on labelled data: tables, parity plots, prediction files.

`predict_frames` evaluates a model on labelled structures (batched) and returns
reference and predicted labels side by side as float64 numpy arrays (`Predictions`);
`error_table` turns them into MAE/RMSE overall, per element and per ``config_type``;
`parity_plots`, `write_predictions` and `plot_learning_curves` write the files a user
looks at; `evaluate` does all of it in one call. Conventions:

- energy errors are per atom: ``(E_pred - E_ref) / n_atoms`` in eV/atom, one value per
  frame with an energy label;
- force errors are over every Cartesian component of every atom of frames with force
  labels, in eV/Å (per element: the atoms of that element);
- stress errors are over all 9 components of the 3x3 tensor (ASE sign, eV/Å^3), for
  frames that have a stress label **and** are periodic in all three directions; stress
  is neither predicted nor compared for other frames (no volume, or a slab whose
  stress depends on the vacuum);
- charge errors (models with an electrostatics term, frames with reference charges,
  ``ref_charges``) are per atom in e, with the coefficient of determination R^2 of
  predicted against reference charges.

Plots use matplotlib's ``Figure`` with the Agg canvas directly, never ``pyplot``, so
no global backend or figure state is changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase
import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from nnip.data.graph import Targets
from nnip.errors import DataError
from nnip.models.potential import Potential

__all__ = ["Predictions", "predict_frames", "compare_frames", "error_table", "format_error_table",
           "parity_plots", "write_predictions", "plot_learning_curves", "evaluate",
           "evaluation_files"]

PROPERTIES = ("energy_per_atom", "forces", "stress", "charges")
"""Keys of the properties in an error table, in display order."""

UNITS = {"energy_per_atom": "eV/atom", "forces": "eV/Å", "stress": "eV/Å^3", "charges": "e"}
"""Units of the numbers in an error table (`format_error_table` shows meV)."""


@dataclass
class Predictions:
    """Reference and predicted labels of a set of frames (numpy, float64).

    Missing reference labels are NaN and flagged ``False`` in the ``has_*`` masks;
    stress is predicted only where ``stress_computed`` (frames periodic in all three
    directions), elsewhere ``stress_pred`` is NaN.

    Attributes:
        energy_ref: ``(n_systems,)`` reference total energy, eV.
        energy_pred: ``(n_systems,)`` predicted total energy, eV.
        n_atoms: ``(n_systems,)`` int64 atoms per frame.
        config_type: ``n_systems`` names (``atoms.info["config_type"]``, else
            ``"default"``).
        has_energy: ``(n_systems,)`` bool, frame has an energy label.
        has_forces: ``(n_systems,)`` bool, frame has a forces label.
        has_stress: ``(n_systems,)`` bool, frame has a stress label.
        stress_computed: ``(n_systems,)`` bool, stress was predicted (fully periodic).
        forces_ref: ``(n_atoms, 3)`` reference forces, eV/Å.
        forces_pred: ``(n_atoms, 3)`` predicted forces, eV/Å.
        energies_pred: ``(n_atoms,)`` predicted per-atom energies, eV.
        symbols: ``(n_atoms,)`` element symbols (str).
        system_idx: ``(n_atoms,)`` int64 frame of each atom.
        stress_ref: ``(n_systems, 3, 3)`` reference stress, eV/Å^3 (ASE sign).
        stress_pred: ``(n_systems, 3, 3)`` predicted stress, eV/Å^3.
        forces_uncertainty: ``(n_atoms,)`` predicted force spread, eV/Å (committees),
            else ``None``.
        charges_ref: ``(n_atoms,)`` reference charges, e (NaN where absent), or ``None``.
        charges_pred: ``(n_atoms,)`` predicted charges, e, or ``None`` (models without
            an electrostatics term).

    """

    energy_ref: np.ndarray
    energy_pred: np.ndarray
    n_atoms: np.ndarray
    config_type: list[str]
    has_energy: np.ndarray
    has_forces: np.ndarray
    has_stress: np.ndarray
    stress_computed: np.ndarray
    forces_ref: np.ndarray
    forces_pred: np.ndarray
    energies_pred: np.ndarray
    symbols: np.ndarray
    system_idx: np.ndarray
    stress_ref: np.ndarray
    stress_pred: np.ndarray
    forces_uncertainty: np.ndarray | None = None
    charges_ref: np.ndarray | None = None
    charges_pred: np.ndarray | None = None

    @property
    def n_systems(self) -> int:
        """Number of frames."""
        return len(self.energy_pred)

    def atom_slice(self, k: int) -> slice:
        """Rows of the per-atom arrays that belong to frame ``k``."""
        start = int(np.sum(self.n_atoms[:k]))
        return slice(start, start + int(self.n_atoms[k]))


def _batches(periodic: np.ndarray, batch_size: int) -> list[list[int]]:
    """Frame indices in batches of at most ``batch_size``, never mixing periodicity."""
    out: list[list[int]] = []
    for flag in (True, False):
        idx = np.flatnonzero(periodic == flag).tolist()
        out += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    return out


def _track(items: Sequence[Any], progress: bool, description: str) -> Iterable[Any]:
    if not progress or len(items) < 2:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=description, transient=True,
                 console=Console(stderr=True))


def predict_frames(
    model: Potential,
    frames: Sequence[ase.Atoms],
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> Predictions:
    """Evaluate a model on labelled frames, in batches, next to their labels.

    Forces are always predicted; stress for frames periodic in all three directions
    (those batches are evaluated with ``compute_stress=True``, the others without).

    Args:
        model: the potential (evaluated on its own device and dtype).
        frames: structures with labels in ``atoms.calc.results`` (as from
            `nnip.data.read`); frames without labels are predicted but not compared.
        batch_size: frames per model call.
        progress: show a progress bar (on stderr).

    Returns:
        `Predictions` in the order of ``frames``.

    Raises:
        DataError: no frames, or a bad frame (named by `nnip.data.Targets`).
        ValueError: ``batch_size < 1``.

    """
    frames = list(frames)
    if not frames:
        raise DataError("no structures to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    targets = Targets.from_atoms(frames)
    periodic = np.array([bool(np.all(a.pbc)) for a in frames])
    n_atoms = np.array([len(a) for a in frames], dtype=np.int64)
    energy = np.zeros(len(frames))
    stress = np.full((len(frames), 3, 3), np.nan)
    energies: list[np.ndarray] = [np.empty(0)] * len(frames)
    forces: list[np.ndarray] = [np.empty((0, 3))] * len(frames)
    spread: list[np.ndarray] | None = None
    charges: list[np.ndarray] | None = None
    for idx in _track(_batches(periodic, batch_size), progress, "evaluating"):
        out = model.predict([frames[i] for i in idx], compute_forces=True,
                            compute_stress=bool(periodic[idx[0]]))
        split = np.cumsum(n_atoms[idx])[:-1]
        energy[idx] = out.energy.detach().cpu().numpy()
        energies_b = np.split(out.energies.detach().cpu().numpy(), split)
        forces_b = np.split(out.forces.detach().cpu().numpy(), split)
        for j, i in enumerate(idx):
            energies[i], forces[i] = energies_b[j], forces_b[j]
        if out.forces_uncertainty is not None:
            spread = spread or [np.empty(0)] * len(frames)
            for j, part in enumerate(np.split(out.forces_uncertainty.cpu().numpy(), split)):
                spread[idx[j]] = part
        if out.charges is not None:
            charges = charges or [np.empty(0)] * len(frames)
            for j, part in enumerate(np.split(out.charges.detach().cpu().numpy(), split)):
                charges[idx[j]] = part
        if out.stress is not None:
            stress[idx] = out.stress.detach().cpu().numpy()
    pred = _assemble(frames, targets, n_atoms, periodic, energy, energies, forces, stress)
    if spread is not None:
        pred.forces_uncertainty = np.concatenate(spread)
    if charges is not None:
        has_q = targets.has_charges.cpu().numpy().astype(bool)[pred.system_idx]
        pred.charges_pred = np.concatenate(charges)
        pred.charges_ref = np.where(has_q, targets.charges.cpu().numpy(), np.nan)
    return pred


def compare_frames(reference: Sequence[ase.Atoms], predicted: Sequence[ase.Atoms]
                   ) -> Predictions:
    """Pair labelled frames with another calculator's results on the same structures.

    Use it to score any model (a peer package, a DFT code at another level) with the
    same error tables and plots as nnip's own models.

    Args:
        reference: labelled structures (as from `nnip.data.read`).
        predicted: the same structures, in the same order, with the prediction in
            ``atoms.calc.results``: ``energy`` (eV) and ``forces`` (eV/Å) required,
            ``energies`` (per-atom, eV) and ``stress`` (eV/Å^3, ASE sign) optional.

    Returns:
        `Predictions`; stress counts as predicted where ``predicted`` has it.

    Raises:
        DataError: the two lists differ in length, atoms or element order, or a
            predicted frame has no energy or forces (the message names the frame).

    """
    reference, predicted = list(reference), list(predicted)
    if not reference:
        raise DataError("no structures to compare")
    if len(reference) != len(predicted):
        raise DataError(f"{len(reference)} reference frames but {len(predicted)} predicted")
    for k, (ref, pred) in enumerate(zip(reference, predicted)):
        if ref.get_chemical_symbols() != pred.get_chemical_symbols():
            raise DataError("predicted frame has other atoms than the reference", index=k)
    # The predictions are read like labels (Voigt or 3x3 stress, shapes, finiteness).
    got = Targets.from_atoms(predicted)
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    for key, has in (("energy", got.has_energy), ("forces", got.has_forces)):
        missing = np.flatnonzero(~numpy(has).astype(bool))
        if missing.size:
            raise DataError("predicted frame has no result", index=int(missing[0]), field=key)
    n_atoms = np.array([len(a) for a in reference], dtype=np.int64)
    computed = numpy(got.has_stress).astype(bool)
    stress = np.where(computed[:, None, None], numpy(got.stress), np.nan)
    forces = np.split(numpy(got.forces), np.cumsum(n_atoms)[:-1])
    energies = [np.asarray((p.calc.results if p.calc is not None else {}).get(
        "energies", np.full(len(p), np.nan)), dtype=np.float64) for p in predicted]
    return _assemble(reference, Targets.from_atoms(reference), n_atoms, computed,
                     numpy(got.energy).astype(np.float64), energies, forces, stress)


def _assemble(frames: list[ase.Atoms], targets: Targets, n_atoms: np.ndarray,
              periodic: np.ndarray, energy: np.ndarray, energies: list[np.ndarray],
              forces: list[np.ndarray], stress: np.ndarray) -> Predictions:
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    has_e, has_f, has_s = (numpy(m).astype(bool) for m in
                           (targets.has_energy, targets.has_forces, targets.has_stress))
    system_idx = np.repeat(np.arange(len(frames)), n_atoms)
    energy_ref = np.where(has_e, numpy(targets.energy), np.nan)
    forces_ref = np.where(has_f[system_idx][:, None], numpy(targets.forces), np.nan)
    stress_ref = np.where(has_s[:, None, None], numpy(targets.stress), np.nan)
    return Predictions(
        energy_ref=energy_ref, energy_pred=energy, n_atoms=n_atoms,
        config_type=[str(a.info.get("config_type", "default")) for a in frames],
        has_energy=has_e, has_forces=has_f, has_stress=has_s,
        stress_computed=periodic.copy(), forces_ref=forces_ref,
        forces_pred=np.concatenate(forces).reshape(-1, 3),
        energies_pred=np.concatenate(energies),
        symbols=np.array([s for a in frames for s in a.get_chemical_symbols()], dtype=str),
        system_idx=system_idx, stress_ref=stress_ref, stress_pred=stress)


def _stats(err: np.ndarray) -> dict[str, float | int] | None:
    err = np.asarray(err, dtype=np.float64).ravel()
    if err.size == 0:
        return None
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "n": int(err.size)}


def _errors(pred: Predictions, systems: np.ndarray, atoms: np.ndarray) -> dict[str, Any]:
    """Errors of the selected frames (energy, stress) and atoms (forces)."""
    e = systems & pred.has_energy
    f = atoms & pred.has_forces[pred.system_idx]
    s = systems & pred.has_stress & pred.stress_computed
    stats = {
        "energy_per_atom": _stats((pred.energy_pred[e] - pred.energy_ref[e]) / pred.n_atoms[e]),
        "forces": _stats(pred.forces_pred[f] - pred.forces_ref[f]),
        "stress": _stats(pred.stress_pred[s] - pred.stress_ref[s]),
    }
    if pred.charges_pred is not None and pred.charges_ref is not None:
        q = atoms & np.isfinite(pred.charges_ref)
        stats["charges"] = _stats(pred.charges_pred[q] - pred.charges_ref[q])
        if stats["charges"] is not None:
            ref = pred.charges_ref[q]
            total = float(np.sum((ref - ref.mean()) ** 2))
            residual = float(np.sum((pred.charges_pred[q] - ref) ** 2))
            stats["charges"]["r2"] = 1.0 - residual / total if total > 0 else float("nan")
    return {k: v for k, v in stats.items() if v is not None}


def error_table(pred: Predictions) -> dict[str, Any]:
    """MAE and RMSE per property, overall, per element and per ``config_type``.

    Args:
        pred: output of `predict_frames`.

    Returns:
        ``{"overall": {prop: {"mae", "rmse", "n"}}, "per_element": {symbol: {"forces":
        ...}}, "per_config_type": {name: {prop: ...}}}`` with ``prop`` among
        ``energy_per_atom`` (eV/atom, ``n`` frames), ``forces`` (eV/Å, ``n`` force
        components, 3 per atom) and ``stress`` (eV/Å^3, ``n`` tensor components, 9 per
        frame), and ``charges`` (e, ``n`` atoms, with ``r2``: R^2 of predicted against
        reference charges) for models that predict charges. Properties without labels
        are omitted; elements are ordered by atomic
        number, config types alphabetically. Plain floats and ints (JSON-ready). With
        predicted force uncertainties (committees) also ``"uncertainty"``: Spearman rank
        correlation, miscalibration area, RMS error / RMS spread (see
        `nnip.validate.uncertainty`).

    """
    all_systems = np.ones(pred.n_systems, dtype=bool)
    all_atoms = np.ones(len(pred.symbols), dtype=bool)
    no_systems = np.zeros(pred.n_systems, dtype=bool)
    per_element = {}
    for symbol in sorted(set(pred.symbols.tolist()), key=lambda s: atomic_numbers.get(s, 0)):
        row = _errors(pred, no_systems, pred.symbols == symbol)
        if row:
            per_element[symbol] = row
    config_types = np.array(pred.config_type, dtype=object)
    per_config = {}
    for name in sorted(set(pred.config_type)):
        systems = config_types == name
        row = _errors(pred, systems, systems[pred.system_idx])
        if row:
            per_config[name] = row
    table = {"overall": _errors(pred, all_systems, all_atoms), "per_element": per_element,
             "per_config_type": per_config}
    if pred.forces_uncertainty is not None:
        from nnip.validate.uncertainty import calibration_metrics

        f = pred.has_forces[pred.system_idx]
        metrics = calibration_metrics(pred.forces_pred[f] - pred.forces_ref[f],
                                      pred.forces_uncertainty[f])
        table["uncertainty"] = {k: v for k, v in metrics.items()
                                if k not in ("expected", "observed")}
    return table


_HEADERS = {"energy_per_atom": "energy [meV/atom]", "forces": "forces [meV/Å]",
            "stress": "stress [meV/Å^3]", "charges": "charges [me]"}
_COUNT = {"energy_per_atom": 1, "forces": 3, "stress": 9, "charges": 1}  # values per frame or atom


def _number(value: float) -> str:
    milli = 1000.0 * value
    return f"{milli:9.3f}" if abs(milli) < 1e5 else f"{milli:9.2e}"


def format_error_table(table: dict[str, Any]) -> str:
    """Human-readable error table in meV/atom, meV/Å and meV/Å^3.

    Args:
        table: output of `error_table`.

    Returns:
        Lines for the overall errors, then per element, then per ``config_type``; each
        property shows MAE, RMSE and ``n`` (frames for energy and stress, atoms for
        forces); ``-`` where a property has no labels.

    """
    sections = [("overall", {"all": table.get("overall", {})}),
                ("per element", table.get("per_element", {})),
                ("per config_type", table.get("per_config_type", {}))]
    rows = [row for _, group in sections for row in group.values()]
    props = [p for p in PROPERTIES if any(p in row for row in rows)]
    if not props:
        return "no labelled properties to compare"
    width = max([20] + [len(str(name)) + 2 for _, group in sections for name in group])
    line1 = " " * width + "".join(f" | {_HEADERS[p]:^27}" for p in props)
    line2 = " " * width + f" | {'MAE':>9} {'RMSE':>9} {'n':>7}" * len(props)
    lines = ["MAE and RMSE of the predictions (n: frames for energy and stress, atoms "
             "for forces and charges)", line1, line2]
    for title, group in sections:
        if not group:
            continue
        lines.append("-" * len(line2))
        lines.append(title)
        for name, row in group.items():
            cells = []
            for p in props:
                if p in row:
                    s = row[p]
                    cells.append(f" | {_number(s['mae'])} {_number(s['rmse'])} "
                                 f"{s['n'] // _COUNT[p]:>7d}")
                else:
                    cells.append(f" | {'-':>9} {'-':>9} {'-':>7}")
            lines.append(f"  {name:<{width - 2}}" + "".join(cells))
    return "\n".join(lines)


def _figure(n_panels: int, width: float = 4.6, height: float = 4.4) -> tuple[Any, Any]:
    """A matplotlib Figure on an Agg canvas (no pyplot, no global state) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, axes


def _parity_data(pred: Predictions) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(title, unit, reference, predicted) of every property with labels."""
    e = pred.has_energy
    f = pred.has_forces[pred.system_idx]
    s = pred.has_stress & pred.stress_computed
    data = [
        ("energy per atom", "eV/atom", pred.energy_ref[e] / pred.n_atoms[e],
         pred.energy_pred[e] / pred.n_atoms[e]),
        ("forces (components)", "eV/Å", pred.forces_ref[f].ravel(),
         pred.forces_pred[f].ravel()),
        ("stress (components)", "eV/Å^3", pred.stress_ref[s].ravel(),
         pred.stress_pred[s].ravel()),
    ]
    if pred.charges_pred is not None and pred.charges_ref is not None:
        q = np.isfinite(pred.charges_ref)
        data.append(("charges", "e", pred.charges_ref[q], pred.charges_pred[q]))
    return [d for d in data if d[2].size]


def parity_plots(pred: Predictions, path: str | os.PathLike, title: str = "") -> Path:
    """Write reference-versus-predicted scatter plots to one PNG.

    Panels: energy per atom (eV/atom), force components (eV/Å) and, when present,
    stress components (eV/Å^3), each with the line y = x and MAE/RMSE (in meV units)
    in the legend.

    Args:
        pred: output of `predict_frames`.
        path: PNG file to write (parent folders are created).
        title: figure title.

    Returns:
        The path written.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = _parity_data(pred)
    fig, axes = _figure(max(len(panels), 1))
    if not panels:
        axes[0].text(0.5, 0.5, "no labelled properties", ha="center", va="center")
    for ax, (name, unit, ref, prd) in zip(axes, panels):
        stats = _stats(prd - ref)
        lo, hi = float(min(ref.min(), prd.min())), float(max(ref.max(), prd.max()))
        pad = 0.05 * (hi - lo) if hi > lo else 1e-3 * max(abs(hi), 1.0)
        lims = (lo - pad, hi + pad)
        ax.plot(lims, lims, color="k", lw=0.8, ls="--", label="y = x")
        ax.scatter(ref, prd, s=6 if ref.size > 500 else 14, alpha=0.6, lw=0,
                   rasterized=ref.size > 5000,
                   label=f"MAE {1e3 * stats['mae']:.4g} m{unit}\n"
                         f"RMSE {1e3 * stats['rmse']:.4g} m{unit}\nn = {ref.size}")
        ax.set(xlim=lims, ylim=lims, xlabel=f"reference [{unit}]",
               ylabel=f"predicted [{unit}]", title=name)
        ax.set_aspect("equal", adjustable="box")
        ax.legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=150)
    return path


def write_predictions(frames: Sequence[ase.Atoms], pred: Predictions,
                      path: str | os.PathLike) -> Path:
    """Write frames with predictions next to their labels, as extended XYZ.

    Each frame is a copy with per-atom arrays ``forces_pred`` (eV/Å), ``energies_pred``
    (eV) and ``forces_ref`` (eV/Å, when labelled), and info ``energy_pred`` (eV),
    ``energy_ref`` (eV, when labelled) and ``stress_pred`` (9 numbers, row-major 3x3,
    eV/Å^3, for fully periodic frames); the original labels stay in the calculator,
    so ASE reads them back as ``energy``/``forces``/``stress``. Viewable in OVITO.

    Args:
        frames: the frames `pred` was computed from, in the same order.
        pred: output of `predict_frames`.
        path: file to write (parent folders are created).

    Returns:
        The path written.

    Raises:
        DataError: frames do not match ``pred`` (count or atoms per frame).

    """
    frames = list(frames)
    if len(frames) != pred.n_systems or any(
            len(a) != n for a, n in zip(frames, pred.n_atoms)):
        raise DataError(f"{len(frames)} frames do not match the {pred.n_systems} frames "
                        "of the predictions", source=str(path))
    out = []
    for k, atoms in enumerate(frames):
        copy, rows = atoms.copy(), pred.atom_slice(k)
        copy.arrays["forces_pred"] = pred.forces_pred[rows].copy()
        copy.arrays["energies_pred"] = pred.energies_pred[rows].copy()
        if pred.charges_pred is not None:
            copy.arrays["charges_pred"] = pred.charges_pred[rows].copy()
        if pred.has_forces[k]:
            copy.arrays["forces_ref"] = pred.forces_ref[rows].copy()
        copy.info["energy_pred"] = float(pred.energy_pred[k])
        if pred.has_energy[k]:
            copy.info["energy_ref"] = float(pred.energy_ref[k])
        if pred.stress_computed[k]:
            copy.info["stress_pred"] = pred.stress_pred[k].ravel().copy()
        if atoms.calc is not None and atoms.calc.results:
            results = {key: np.copy(v) if isinstance(v, np.ndarray) else v
                       for key, v in atoms.calc.results.items()}
            copy.calc = SinglePointCalculator(copy, **results)
        out.append(copy)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, out, format="extxyz")
    return path


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(x, y) of ``key`` over rows, skipping missing, None, non-finite and y <= 0."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        x, y = row.get("epoch", i), row.get(key)
        try:
            x, y = float(i if x is None else x), float(y)
        except (TypeError, ValueError):
            continue
        if np.isfinite(y) and y > 0:
            xs.append(x)
            ys.append(y)
    return xs, ys


def plot_learning_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Plot losses, validation metrics and learning rate per epoch, log y, to a PNG.

    Panels (each drawn only when it has data): every key ending in ``loss``; every
    key ending in ``_mae`` or ``_rmse`` (in the units the trainer logged, eV, eV/Å,
    eV/Å^3); and ``lr``. Missing keys, ``None`` and non-positive values are skipped.

    Args:
        history: one dict per epoch, e.g. ``{"epoch": 3, "train_loss": 0.1,
            "val_loss": 0.2, "val_forces_mae": 0.05, "lr": 1e-3}``; x is ``epoch``
            (else the row number).
        path: PNG file to write (parent folders are created).

    Returns:
        The path written.

    """
    rows = [dict(r) for r in history]
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "epoch"))
    groups = [("loss", [k for k in keys if k.endswith("loss")]),
              ("validation / training errors", [k for k in keys
                                                if k.endswith(("_mae", "_rmse"))]),
              ("learning rate", [k for k in keys if k == "lr"])]
    groups = [(title, [k for k in ks if _series(rows, k)[0]]) for title, ks in groups]
    groups = [(title, ks) for title, ks in groups if ks]
    fig, axes = _figure(max(len(groups), 1), width=4.8, height=3.8)
    if not groups:
        axes[0].text(0.5, 0.5, "no values to plot", ha="center", va="center")
    for ax, (title, ks) in zip(axes, groups):
        for key in ks:
            xs, ys = _series(rows, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=key)
        ax.set(yscale="log", xlabel="epoch", title=title)
        ax.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def evaluation_files(out_dir: str | os.PathLike, name: str = "eval") -> dict[str, Path]:
    """Files `evaluate` writes.

    ``errors`` (JSON), ``parity`` (PNG), ``predictions`` (extxyz), and for committees
    ``calibration`` (PNG: error against spread, calibration curve).

    Args:
        out_dir: output folder.
        name: prefix of the file names.

    """
    out = Path(out_dir)
    return {"errors": out / f"{name}_errors.json", "parity": out / f"{name}_parity.png",
            "predictions": out / f"{name}_predictions.extxyz",
            "calibration": out / f"{name}_calibration.png"}


def evaluate(
    model: Potential,
    frames: Sequence[ase.Atoms],
    out_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 8,
    name: str = "eval",
    progress: bool = True,
) -> dict[str, Any]:
    """Predict labelled frames, tabulate the errors and optionally write the files.

    Args:
        model: the potential.
        frames: labelled structures (e.g. from `nnip.data.read`).
        out_dir: when given, write the files of `evaluation_files`:
            ``{name}_errors.json`` (the table plus its ``units``), ``{name}_parity.png``
            and ``{name}_predictions.extxyz``.
        batch_size: frames per model call.
        name: prefix of the file names.
        progress: show a progress bar (on stderr).

    Returns:
        The `error_table` (eV, eV/Å, eV/Å^3).

    """
    frames = list(frames)
    pred = predict_frames(model, frames, batch_size=batch_size, progress=progress)
    table = error_table(pred)
    if out_dir is not None:
        files = evaluation_files(out_dir, name)
        files["errors"].parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"units": UNITS, **table}, indent=2, ensure_ascii=False)
        files["errors"].write_text(text + "\n", encoding="utf-8")
        parity_plots(pred, files["parity"], title=f"{name}: {pred.n_systems} frames")
        if pred.forces_uncertainty is not None:
            from nnip.validate.uncertainty import calibration_metrics, plot_calibration

            f = pred.has_forces[pred.system_idx]
            error = pred.forces_pred[f] - pred.forces_ref[f]
            plot_calibration(error, pred.forces_uncertainty[f],
                             calibration_metrics(error, pred.forces_uncertainty[f]),
                             files["calibration"], title=name)
        write_predictions(frames, pred, files["predictions"])
    return table

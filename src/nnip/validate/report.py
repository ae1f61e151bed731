"""`validate`: run the physical checks on one structure and write a JSON + HTML report.

The report folder holds ``report.json`` (every number), one PNG per check and
``report.html`` (self-contained: the PNGs are embedded, so the file can be mailed or
opened from anywhere). What ``nnip validate`` runs.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from nnip.models.potential import Potential
from nnip.validate import physical
from nnip.validate.errors import _figure

__all__ = ["CHECKS", "validate"]

CHECKS = ("dimers", "eos", "phonons", "nve", "nvt", "rdf", "diffusion", "errors")
"""Every check; ``eos`` and ``phonons`` run only for a crystal (spglib finds symmetry)."""


def _relaxed(model: Potential, atoms: Atoms, fmax: float = 1e-3) -> tuple[Atoms, bool]:
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    from nnip.calculators.ase import NNIPCalculator

    relaxed = atoms.copy()
    relaxed.calc = NNIPCalculator(model)
    target = FrechetCellFilter(relaxed) if relaxed.pbc.all() else relaxed
    converged = bool(FIRE(target, logfile=None).run(fmax=fmax, steps=1000))
    relaxed.calc = None
    return relaxed, converged


def _is_crystal(atoms: Atoms) -> bool:
    import spglib

    if not atoms.pbc.all():
        return False
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=1e-2)
    return dataset is not None and len(dataset.rotations) > 1


def _same_composition(a: Atoms, b: Atoms) -> bool:
    return a.symbols.formula.reduce()[0] == b.symbols.formula.reduce()[0]


def validate(model: Potential, structure: Atoms, out_dir: str | Path, *,
             data: Sequence[Atoms] = (), checks: Sequence[str] = CHECKS,
             temperature_K: float = 300.0, timestep_fs: float = 1.0,
             nvt_duration_fs: float = 10000.0, nve_duration_fs: float = 2000.0,
             relax: bool = True, seed: int = 0,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the physical checks and write ``report.json``, PNGs and ``report.html``.

    Args:
        model: the potential.
        structure: the structure to simulate (a crystal, a liquid box, a molecule).
        out_dir: report folder.
        data: labelled reference frames (e.g. the test set): their periodic frames with
            the structure's composition give the reference RDF, volume scans in them
            (`physical.find_volume_scans`) the DFT equation of state, and all of them
            the error table.
        checks: subset of `CHECKS`.
        temperature_K: temperature of the NVT run and the NVE initial velocities.
        timestep_fs: time step of the NVT run (NVE uses it and half of it).
        nvt_duration_fs: length of the NVT stability run (also RDF and diffusion).
        nve_duration_fs: length of each NVE run.
        relax: relax positions (and a periodic cell) before EOS and phonons.
        seed: seed of the MD runs.
        say: where progress lines go.

    Returns:
        The report dict (also written to ``report.json``): one entry per check that ran,
        ``summary`` (one line per check, with ``ok`` flags) and ``figures``.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {list(CHECKS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "model": model.spec.get("arch", "?"), "elements": model.elements,
        "structure": {"formula": structure.get_chemical_formula(), "n_atoms": len(structure),
                      "pbc": structure.pbc.tolist()},
        "settings": {"temperature_K": temperature_K, "timestep_fs": timestep_fs,
                     "nvt_duration_fs": nvt_duration_fs, "nve_duration_fs": nve_duration_fs},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": {}, "figures": {}}
    summary, figures = report["summary"], report["figures"]
    start = time.perf_counter()

    if "dimers" in checks:
        say("dimer curves ...")
        dimers = physical.dimer_curves(model)
        report["dimers"] = dimers
        bad = [p for p, v in dimers["pairs"].items()
               if not v["repulsive"] or v["n_force_sign_changes"] > 1]
        summary["dimers"] = {"ok": not bad, "text": (
            "every pair repulsive at short range, one force sign change" if not bad else
            f"not repulsive or wiggly: {', '.join(bad)}")}
        figures["dimers"] = _plot_dimers(dimers, out / "dimers.png")

    crystal = _is_crystal(structure)
    if ("eos" in checks or "phonons" in checks) and crystal:
        relaxed, converged = (_relaxed(model, structure) if relax else (structure, True))
        report["relaxation"] = {"converged": converged,
                                "volume_change_percent": float(
                                    100 * (relaxed.get_volume() / structure.get_volume() - 1))
                                if structure.pbc.all() else None}
        if "eos" in checks:
            say("equation of state ...")
            eos = physical.equation_of_state(model, relaxed)
            eos["dft_scans"] = _dft_scans(model, structure, data)
            report["eos"] = eos
            text = f"B = {_fmt(eos['bulk_modulus_GPa'])} GPa, V0 = " \
                   f"{_fmt(eos['v0_A3_per_atom'])} Å³/atom"
            for scan in eos["dft_scans"]:
                text += (f"; DFT scan ({scan['n_points']} points): B "
                         f"{_fmt(scan['dft']['bulk_modulus_GPa'])} vs "
                         f"{_fmt(scan['model']['bulk_modulus_GPa'])} GPa, energy MAE "
                         f"{scan['energy_mae_meV_per_atom']:.2f} meV/atom")
            summary["eos"] = {"ok": eos["bulk_modulus_GPa"] is not None
                              and eos["bulk_modulus_GPa"] > 0, "text": text}
            figures["eos"] = _plot_eos(eos, out / "eos.png")
        if "phonons" in checks:
            say("phonons (phonopy) ...")
            ph = physical.phonons(model, relaxed)
            report["phonons"] = ph
            summary["phonons"] = {"ok": ph["stable"], "text": (
                f"frequencies {ph['min_frequency_THz']:.3f} to {ph['max_frequency_THz']:.2f} THz"
                f", {ph['n_imaginary']} imaginary modes on the mesh")}
            figures["phonons"] = _plot_dos(ph, out / "phonons.png")
    elif "eos" in checks or "phonons" in checks:
        summary["eos"] = {"ok": None, "text": "skipped: not a crystal (no symmetry found)"}

    if "nve" in checks:
        say("NVE energy conservation ...")
        nve = physical.nve_drift(model, structure, temperature_K=temperature_K,
                                 timesteps_fs=(timestep_fs, 0.5 * timestep_fs),
                                 duration_fs=nve_duration_fs, seed=seed)
        report["nve"] = nve
        drift = abs(nve["drift_meV_per_atom_per_ps"][0])
        ratio = nve["fluctuation_ratio"]
        summary["nve"] = {"ok": nve["stopped"] is None and drift < 1.0, "text": (
            f"drift {nve['drift_meV_per_atom_per_ps'][0]:+.3g} meV/atom/ps at {timestep_fs:g} fs"
            f", fluctuation ratio {_fmt(ratio)} when the step halves (4 expected)"
            + (f"; stopped: {nve['stopped']}" if nve["stopped"] else ""))}
        figures["nve"] = _plot_nve(nve, out / "nve.png")

    frames: list[Atoms] = []
    if {"nvt", "rdf", "diffusion"} & set(checks):
        say(f"NVT stability, {nvt_duration_fs / 1000:g} ps at {temperature_K:g} K ...")
        nvt = physical.nvt_stability(model, structure, temperature_K=temperature_K,
                                     timestep_fs=timestep_fs, duration_fs=nvt_duration_fs,
                                     seed=seed)
        frames = nvt.pop("frames")
        report["nvt"] = nvt
        summary["nvt"] = {"ok": nvt["stable"], "text": (
            f"ran {nvt['time_fs'][-1] / 1000 if nvt['time_fs'] else 0:g} ps, mean T "
            f"{_fmt(nvt['mean_temperature_K'])} K, closest approach "
            f"{min(nvt['min_distance_A']):.2f} Å, largest force "
            f"{max(nvt['max_force_eV_per_A']):.2f} eV/Å"
            + (f"; stopped: {nvt['stopped']}" if nvt["stopped"] else ""))}
        figures["nvt"] = _plot_nvt(nvt, out / "nvt.png")

        if "rdf" in checks and structure.pbc.all() and frames:
            cutoff = min(6.0, 0.5 * min(structure.cell.lengths()) + 2.0)
            rdf = {"model": physical.radial_distribution(frames[len(frames) // 2:], cutoff)}
            density = len(structure) / structure.get_volume()
            reference = [a for a in data if a.pbc.all() and _same_composition(a, structure)
                         and abs(len(a) / a.get_volume() / density - 1.0) < 0.05]
            if reference:
                rdf["reference"] = physical.radial_distribution(reference, cutoff)
                g_m, g_r = np.array(rdf["model"]["g"]), np.array(rdf["reference"]["g"])
                rdf["difference"] = float(np.abs(g_m - g_r).sum() / max(g_r.sum(), 1e-12))
            report["rdf"] = rdf
            summary["rdf"] = {"ok": None if "difference" not in rdf else rdf["difference"] < 0.3,
                              "text": (f"relative L1 difference to {len(reference)} reference "
                                       f"frames {rdf['difference']:.3f}" if "difference" in rdf
                                       else "no reference frames with this composition "
                                       "and density (within 5 %)")}
            figures["rdf"] = _plot_rdf(rdf, out / "rdf.png")
        if "diffusion" in checks and len(frames) > 4:
            diff = physical.diffusion(frames, report["nvt"]["time_fs"])
            report["diffusion"] = diff
            summary["diffusion"] = {"ok": None, "text": ", ".join(
                f"D({el}) = {d:.3g} cm²/s" for el, d in diff["D_cm2_per_s"].items())}
            figures["diffusion"] = _plot_msd(diff, out / "msd.png")

    if "errors" in checks and data:
        from nnip.validate.errors import error_table, parity_plots, predict_frames

        say(f"errors on {len(data)} reference frames ...")
        pred = predict_frames(model, list(data), batch_size=8)
        table = error_table(pred)
        report["errors"] = table
        ov = table["overall"]
        parts = [f"E {ov['energy_per_atom']['mae'] * 1e3:.2f} meV/atom"] \
            if "energy_per_atom" in ov else []
        if "forces" in ov:
            parts.append(f"F {ov['forces']['mae'] * 1e3:.1f} meV/Å")
        summary["errors"] = {"ok": None, "text": "MAE " + ", ".join(parts)}
        figures["errors"] = str(parity_plots(pred, out / "parity.png", "reference frames"))

    report["seconds"] = round(time.perf_counter() - start, 1)
    figures.update({k: Path(v).name for k, v in figures.items()})
    (out / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (out / "report.html").write_text(_html(report, out))
    say(f"report: {out / 'report.html'}")
    return report


def _dft_scans(model: Potential, structure: Atoms, data: Sequence[Atoms]) -> list[dict]:
    scans = []
    for members in physical.find_volume_scans(list(data)):
        frames = [data[k] for k in members]
        if not _same_composition(frames[0], structure):
            continue
        n = len(frames[0])
        volumes = np.array([a.get_volume() / n for a in frames])
        dft = np.array([a.get_potential_energy() / n for a in frames])
        pred = model.predict(frames).energy.cpu().numpy() / n
        scans.append({"n_points": len(frames), "volume_A3_per_atom": volumes.tolist(),
                      "dft_eV_per_atom": dft.tolist(), "model_eV_per_atom": pred.tolist(),
                      "energy_mae_meV_per_atom": float(np.abs(pred - dft).mean() * 1e3),
                      "dft": physical._fit_eos(volumes, dft),
                      "model": physical._fit_eos(volumes, pred)})
    return scans


# ----------------------------------------------------------------------- figures
def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return str(path)


def _plot_dimers(d: dict, path: Path) -> str:
    fig, (ax,) = _figure(1, 6.0, 4.2)
    r = np.array(d["r_A"])
    lo = 0.0
    for pair, v in d["pairs"].items():
        e = np.array(v["energy_eV"])
        ax.plot(r, e, label=pair)
        lo = min(lo, e.min())
    ax.set_ylim(1.5 * lo - 0.05, max(0.2, -4.0 * lo))  # the well and the repulsive rise
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="distance (Å)", ylabel="E − E(separated) (eV)", title="dimer curves")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_eos(eos: dict, path: Path) -> str:
    fig, (ax,) = _figure(1, 6.0, 4.2)
    ax.plot(eos["volume_A3_per_atom"], eos["energy_eV_per_atom"], "o-", label="model (strain)")
    for k, scan in enumerate(eos["dft_scans"]):
        ax.plot(scan["volume_A3_per_atom"], scan["dft_eV_per_atom"], "ks", mfc="none",
                label="DFT scan" if k == 0 else None)
        ax.plot(scan["volume_A3_per_atom"], scan["model_eV_per_atom"], "x",
                label="model on the scan" if k == 0 else None)
    ax.set(xlabel="volume (Å³/atom)", ylabel="energy (eV/atom)",
           title=f"equation of state, B = {_fmt(eos['bulk_modulus_GPa'])} GPa")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_dos(ph: dict, path: Path) -> str:
    fig, (ax,) = _figure(1, 6.0, 4.2)
    ax.plot(ph["dos_frequency_THz"], ph["dos"])
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set(xlabel="frequency (THz)", ylabel="phonon DOS",
           title=f"phonons: {ph['n_imaginary']} imaginary modes")
    return _save(fig, path)


def _plot_nve(nve: dict, path: Path) -> str:
    fig, (ax,) = _figure(1, 6.0, 4.2)
    for dt, trace, drift in zip(nve["timestep_fs"], nve["traces"],
                                nve["drift_meV_per_atom_per_ps"]):
        ax.plot(np.array(trace["time_fs"]) / 1000, trace["etot_meV_per_atom"],
                label=f"{dt:g} fs: {drift:+.3g} meV/atom/ps")
    ax.set(xlabel="time (ps)", ylabel="E_tot − E_tot(0) (meV/atom)", title="NVE energy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_nvt(nvt: dict, path: Path) -> str:
    fig, axes = _figure(3, 4.0, 3.6)
    t = np.array(nvt["time_fs"]) / 1000
    for ax, key, label in zip(axes, ("temperature_K", "min_distance_A", "max_force_eV_per_A"),
                              ("temperature (K)", "closest pair (Å)", "largest force (eV/Å)")):
        ax.plot(t, nvt[key])
        ax.set(xlabel="time (ps)", ylabel=label)
    axes[0].set_title("NVT stability")
    return _save(fig, path)


def _plot_rdf(rdf: dict, path: Path) -> str:
    fig, (ax,) = _figure(1, 6.0, 4.2)
    ax.plot(rdf["model"]["r_A"], rdf["model"]["g"], label="model MD")
    if "reference" in rdf:
        ax.plot(rdf["reference"]["r_A"], rdf["reference"]["g"], "k--", label="reference frames")
    ax.set(xlabel="r (Å)", ylabel="g(r)", title="radial distribution function")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_msd(diff: dict, path: Path) -> str:
    fig, (ax,) = _figure(1, 6.0, 4.2)
    t = np.array(diff["time_fs"]) / 1000
    for el, msd in diff["msd_A2"].items():
        d = diff["D_cm2_per_s"].get(el)
        ax.plot(t, msd, label=f"{el}" + (f": D = {d:.3g} cm²/s" if d is not None else ""))
    ax.set(xlabel="time (ps)", ylabel="MSD (Å²)", title="mean-square displacement")
    ax.legend(fontsize=8)
    return _save(fig, path)


# -------------------------------------------------------------------------- html
def _html(report: dict, out: Path) -> str:
    rows = []
    for name, item in report["summary"].items():
        mark = {True: "&#10004;", False: "&#10008;", None: "&ndash;"}[item["ok"]]
        color = {True: "#1a7f37", False: "#cf222e", None: "#57606a"}[item["ok"]]
        rows.append(f"<tr><td style='color:{color};font-weight:bold'>{mark}</td>"
                    f"<td>{html.escape(name)}</td><td>{html.escape(item['text'])}</td></tr>")
    images = []
    for name, file in report["figures"].items():
        data = base64.b64encode((out / file).read_bytes()).decode()
        images.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                      f"src='data:image/png;base64,{data}'>")
    s = report["structure"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nnip validation report</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#24292f}}
table{{border-collapse:collapse}}td{{border-bottom:1px solid #d0d7de;padding:4px 10px}}
img{{max-width:100%;border:1px solid #d0d7de}}</style></head><body>
<h1>nnip validation report</h1>
<p>Model <b>{html.escape(str(report['model']))}</b> ({', '.join(report['elements'])}) on
{html.escape(s['formula'])} ({s['n_atoms']} atoms, pbc {s['pbc']}), {report['date']},
{report['seconds']} s. Numbers: <code>report.json</code>.</p>
<table>{''.join(rows)}</table>
{''.join(images)}
</body></html>
"""


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")

"""Read and write labelled structures: extxyz (and anything ASE reads), DeePMD, n2p2.

Every reader returns a list of ``ase.Atoms`` in nnip's normalised form:

- ``atoms.calc`` is a ``SinglePointCalculator`` whose ``results`` hold only the labels
  the source has: ``energy`` (float, eV, total energy of the structure), ``forces``
  ``(n_atoms, 3)`` eV/Å and ``stress`` ``(6,)`` eV/Å^3 in Voigt order
  (xx, yy, zz, yz, xz, xy) with ASE's sign (positive = tensile, pressure = -trace/3),
  so ``atoms.get_stress(voigt=False)`` gives the 3x3 tensor.
- ``atoms.info``: ``config_type`` (str, default ``"default"``), ``weight`` (float,
  default 1.0), ``total_charge`` (float, e, default 0.0), ``source`` (the path read),
  ``frame_index`` (index of the frame in ``source``; for a DeePMD multi-system folder,
  in the concatenation of its systems) and ``source_index`` (kept from the file when
  present, e.g. an index into an older original source, else equal to ``frame_index``).
  Every other info key and per-atom array (``ref_charges``, ``spins``, ...) is kept.

A virial ``W`` (eV, ``W = -V * stress``, the DeePMD and GAP/extxyz convention) is
converted to ``stress = -W / V`` when a frame has no stress. Frames are validated
(finite positions and labels, label shapes, non-singular periodic cells) and every
problem raises :class:`nnip.errors.DataError` naming the file, frame index and field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase
import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.formats import filetype, ioformats, string2index
from ase.stress import full_3x3_to_voigt_6_stress

from nnip import units as _units
from nnip.data import _deepmd, _n2p2
from nnip.errors import DataError

__all__ = ["read", "write", "write_deepmd", "require_labels"]

write_deepmd = _deepmd.write_deepmd

_DEEPMD_FORMATS = ("deepmd", "deepmd/npy")
_N2P2_FORMATS = ("n2p2", "runner")
_UNITS = {
    # name: (length in Å, energy in eV)
    "eV_Angstrom": (1.0, 1.0),
    "atomic": (_units.Bohr, _units.Hartree),
}
_LABELS = ("energy", "forces", "stress")
_PER_ATOM_RESULTS = ("forces", "energies", "stresses", "charges", "magmoms")
_MIN_VOLUME = 1e-6  # Å^3; smaller |det(cell)| counts as singular
_MIN_LENGTH = 1e-6  # Å; shorter periodic cell vectors count as zero
_ASYMMETRY_RTOL = 1e-3  # tolerated |s - s^T| relative to max |s| for 3x3 stress


@dataclass(frozen=True)
class _Keys:
    """Names under which labels are looked up in ``atoms.info``/``atoms.arrays``."""

    energy: str
    forces: str
    stress: str
    virial: str
    weight: str
    charge: str


def read(
    path: str | os.PathLike,
    index: int | slice | str = ":",
    format: str | None = None,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virial_key: str = "virial",
    weight_key: str = "weight",
    charge_key: str = "total_charge",
    units: str | None = None,
    type_map: Sequence[str] | None = None,
) -> list[ase.Atoms]:
    """Read labelled structures from a file or DeePMD folder into nnip's normalised form.

    Formats: a directory (or ``format="deepmd"``) is read as a DeePMD npy system or a
    folder of systems (every subfolder holding ``type.raw``, in sorted path order);
    a file named ``input.data``, or that ASE detects as ``runnerdata``, or
    ``format="n2p2"``/``"runner"``, as n2p2/RuNNer data (in eV and Å unless
    ``units="atomic"``; ASE's own ``format="runnerdata"`` reader instead assumes
    Bohr/Hartree), whose per-atom charges go to ``atoms.arrays["ref_charges"]`` (e)
    and frame charge to ``info["total_charge"]``; everything else through
    ``ase.io.read`` (extended XYZ is the main format).

    Labels are taken from ``atoms.info``/``atoms.arrays`` under the given keys; for a
    key left at its default name, also from the calculator ASE attaches (ASE >= 3.23
    moves extxyz ``energy``/``forces``/``stress`` there). Other calculator results
    (``free_energy``, ``charges``, ...) move to ``info``/``arrays`` under their names.

    Args:
        path: file, or DeePMD system folder, or folder of DeePMD systems.
        index: frames to read: int, slice or ASE string (``":"``, ``"-1"``,
            ``"0:20"``); for DeePMD, indexes the concatenated frames of all systems.
        format: ASE format name, ``"deepmd"`` or ``"n2p2"``; None guesses.
        energy_key: info key of the total energy, eV.
        forces_key: per-atom array (or info) key of the forces ``(n_atoms, 3)``, eV/Å.
        stress_key: info key of the stress: 6 (Voigt), 9 or 3x3 numbers, eV/Å^3,
            ASE sign (positive = tensile).
        virial_key: info key of the virial (6, 9 or 3x3 numbers, eV,
            ``virial = -V * stress``); used only when a frame has no stress.
        weight_key: info key of the per-frame training weight (default 1.0).
        charge_key: info key of the total charge in e (default 0.0).
        units: units of the file: None or ``"eV_Angstrom"`` (as is) or ``"atomic"``
            (Bohr, Hartree, Hartree/Bohr, Hartree/Bohr^3), converted to eV and Å.
        type_map: element symbols of DeePMD types 0, 1, ...; overrides
            ``type_map.raw``, and is required for DeePMD systems without it.

    Returns:
        list of ``ase.Atoms`` (positions ``(n_atoms, 3)`` Å, cell ``(3, 3)`` Å with
        rows as lattice vectors), labels in ``atoms.calc.results`` as described in
        the module docstring.

    Raises:
        DataError: missing file, unreadable file, bad or non-finite values, singular
            periodic cell, index out of range or no frame read; the message names the
            file, frame index and field.
        ValueError: unknown ``format``, ``units`` or malformed ``index``.

    """
    scale = _unit_scale(units)
    key = _index_key(index)
    keys = _Keys(energy_key, forces_key, stress_key, virial_key, weight_key, charge_key)
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise DataError("no such file or directory", source=source)
    kind = _reader_kind(path, format)
    if kind == "deepmd":
        raw = _deepmd.read_deepmd(path, key, type_map)
    elif kind == "n2p2":
        raw = _n2p2.read_n2p2(path, key)
    else:
        raw = [(i, atoms, _pop_labels(atoms, keys)) for i, atoms in _read_ase(path, key, format)]
    if not raw:
        raise DataError(f"no structures read (index={index!r}, format {kind!r})", source=source)
    return [_finalise(atoms, labels, i, source, keys, scale) for i, atoms, labels in raw]


def require_labels(
    frames: Sequence[ase.Atoms], labels: Sequence[str], source: str | None = None
) -> None:
    """Check that every frame has every requested label.

    Args:
        frames: structures, e.g. from :func:`read`.
        labels: label names: ``"energy"``, ``"forces"``, ``"stress"`` (looked up in
            ``atoms.calc.results``) or any ``atoms.info``/``atoms.arrays`` key
            (e.g. ``"ref_charges"``).
        source: origin to name in the error; the frame's list position is then the
            index. When None, each frame's ``info["source"]`` and
            ``info["frame_index"]`` (set by :func:`read`) are named instead.

    Raises:
        DataError: naming the first frame that lacks a label, the label, and how many
            frames lack it.

    """
    for label in labels:
        missing = [i for i, atoms in enumerate(frames) if not _has_label(atoms, label)]
        if not missing:
            continue
        first = missing[0]
        info = frames[first].info
        where = source if source is not None else info.get("source")
        index = first if source is not None else info.get("frame_index", first)
        raise DataError(
            f"label '{label}' is missing ({len(missing)} of {len(frames)} frames lack it)",
            source=where,
            index=index,
            field=label,
        )


def write(
    path: str | os.PathLike, frames: ase.Atoms | Iterable[ase.Atoms], format: str | None = None
) -> None:
    """Write structures with their labels; a thin wrapper over ``ase.io.write``.

    Args:
        path: output file (or folder for ``format="deepmd"``).
        frames: one ``ase.Atoms`` or several; labels in ``atoms.calc.results`` (eV,
            eV/Å, eV/Å^3) and ``atoms.info``/``atoms.arrays`` are written.
        format: ASE format name or ``"deepmd"``; None: extended XYZ for ``.xyz``,
            ``.extxyz`` or unknown suffixes, else the format ASE guesses from the name.

    """
    frames = [frames] if isinstance(frames, ase.Atoms) else list(frames)
    if format in _DEEPMD_FORMATS:
        write_deepmd(path, frames)
        return
    if format is None:
        format = "extxyz"
        if Path(path).suffix.lower() not in ("", ".xyz", ".extxyz"):
            try:
                format = filetype(str(path), read=False)
            except Exception:  # ASE cannot guess from the name: keep extxyz
                format = "extxyz"
    ase.io.write(path, frames, format=format)


def _unit_scale(name: str | None) -> tuple[float, float]:
    if name is None:
        return 1.0, 1.0
    if name not in _UNITS:
        raise ValueError(f"units must be None or one of {sorted(_UNITS)}, got {name!r}")
    return _UNITS[name]


def _index_key(index: int | slice | str) -> int | slice:
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return int(index)
    if isinstance(index, slice):
        return index
    if isinstance(index, str):
        try:
            return string2index(index)
        except ValueError as err:
            raise ValueError(f"index must look like ':', '-1' or '0:20', got {index!r}") from err
    raise ValueError(f"index must be an int, slice or str, got {type(index).__name__}")


def _reader_kind(path: Path, format: str | None) -> str:
    if format in _DEEPMD_FORMATS or (format is None and path.is_dir()):
        return "deepmd"
    if format in _N2P2_FORMATS:
        return "n2p2"
    if format is None and (path.name == "input.data" or _guess_format(path) == "runnerdata"):
        return "n2p2"  # not ASE's runnerdata reader: it assumes Bohr/Hartree
    if format is not None and format not in ioformats:
        raise ValueError(
            f"unknown format {format!r}: use 'deepmd', 'n2p2' or an ASE format "
            "(ase.io.formats.ioformats)"
        )
    return "ase"


def _read_ase(path: Path, key: int | slice, format: str | None) -> list[tuple[int, ase.Atoms]]:
    """Read with ASE; returns (index of the frame in the file, atoms) pairs."""
    if isinstance(key, int) and key >= 0:
        key = slice(key, key + 1)
    direct = (
        isinstance(key, slice)
        and all(v is None or v >= 0 for v in (key.start, key.stop))
        and (key.step is None or key.step > 0)
    )
    try:
        got = ase.io.read(path, index=key if direct else slice(None), format=format)
    except Exception as err:  # ASE raises many types for files it cannot parse
        tried = format or _guess_format(path)
        raise DataError(
            f"cannot read as a structure file (format '{tried}'): {type(err).__name__}: {err}",
            source=str(path),
        ) from err
    got = [got] if isinstance(got, ase.Atoms) else list(got)
    if direct:
        start, step = key.start or 0, key.step or 1
        return [(start + k * step, atoms) for k, atoms in enumerate(got)]
    try:
        chosen = range(len(got))[key]
    except IndexError as err:
        raise DataError(f"index {key} out of range ({len(got)} frames)", source=str(path)) from err
    chosen = [chosen] if isinstance(chosen, int) else list(chosen)
    return [(i, got[i]) for i in chosen]


def _guess_format(path: Path) -> str:
    try:
        return str(filetype(str(path), guess=True))
    except Exception:  # unknown or unreadable: say so
        return "unknown"


def _pop_labels(atoms: ase.Atoms, keys: _Keys) -> dict[str, Any]:
    """Take labels out of info/arrays/calculator; other calc results go to info/arrays."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    atoms.calc = None
    labels: dict[str, Any] = {}
    named = zip(
        ("energy", "forces", "stress", "virial"),
        (keys.energy, keys.forces, keys.stress, keys.virial),
    )
    for name, key in named:
        if key in atoms.info:
            labels[name] = atoms.info.pop(key)
        elif key in atoms.arrays and key not in ("numbers", "positions"):
            labels[name] = atoms.arrays.pop(key)
        elif key == name and name in results:
            labels[name] = results.pop(name)
    for name, value in results.items():
        per_atom = name in _PER_ATOM_RESULTS and np.ndim(value) >= 1
        if per_atom and len(value) == len(atoms) and name not in atoms.arrays:
            atoms.new_array(name, np.asarray(value))
        elif not per_atom and name not in atoms.info:
            atoms.info[name] = value
    return labels


def _finalise(
    atoms: ase.Atoms,
    labels: dict[str, Any],
    index: int,
    source: str,
    keys: _Keys,
    scale: tuple[float, float],
) -> ase.Atoms:
    """Convert units, validate, attach the labels as a SinglePointCalculator."""
    length = scale[0]
    if len(atoms) == 0:
        raise DataError("structure has no atoms", source=source, index=index, field="numbers")
    if length != 1.0:
        atoms.positions = atoms.positions * length
        atoms.set_cell(atoms.cell.array * length, scale_atoms=False)
    _check_finite(atoms.positions, source, index, "positions")
    _check_cell(atoms, source, index)
    results = _convert_labels(atoms, labels, source, index, keys, scale)
    _normalise_info(atoms, source, index, keys)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _convert_labels(
    atoms: ase.Atoms,
    labels: dict[str, Any],
    source: str,
    index: int,
    keys: _Keys,
    scale: tuple[float, float],
) -> dict[str, Any]:
    length, energy = scale
    results: dict[str, Any] = {}
    if "energy" in labels:
        value = _as_array(labels["energy"], source, index, "energy")
        if value.size != 1:
            raise DataError(
                f"expected one number, found shape {value.shape}",
                source=source,
                index=index,
                field="energy",
            )
        results["energy"] = float(value.reshape(())) * energy
        _check_finite(results["energy"], source, index, "energy")
    if "forces" in labels:
        forces = _as_array(labels["forces"], source, index, "forces")
        if forces.shape != (len(atoms), 3):
            raise DataError(
                f"expected shape ({len(atoms)}, 3), found {forces.shape}",
                source=source,
                index=index,
                field="forces",
            )
        _check_finite(forces, source, index, "forces")
        results["forces"] = forces * (energy / length)
    if "stress" in labels:
        voigt = _as_voigt(labels["stress"], source, index, "stress")
        results["stress"] = voigt * (energy / length**3)
        if "virial" in labels:  # not needed: keep it untouched in info
            atoms.info[keys.virial] = labels["virial"]
    elif "virial" in labels:
        virial = _as_voigt(labels["virial"], source, index, "virial") * energy
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        if volume < _MIN_VOLUME:
            raise DataError(
                f"virial given but the cell volume is {volume:.3g} Å^3, so it "
                "cannot be converted to stress",
                source=source,
                index=index,
                field="virial",
            )
        results["stress"] = -virial / volume
    return results


def _normalise_info(atoms: ase.Atoms, source: str, index: int, keys: _Keys) -> None:
    info = atoms.info
    info["config_type"] = str(info.get("config_type", "default"))
    weight = _as_float(info.pop(keys.weight, info.get("weight", 1.0)), source, index, "weight")
    if weight < 0:
        raise DataError(
            f"weight must be >= 0, found {weight}", source=source, index=index, field="weight"
        )
    info["weight"] = weight
    charge = info.pop(keys.charge, info.get("total_charge", 0.0))
    info["total_charge"] = _as_float(charge, source, index, "total_charge")
    info["source"] = source
    info["frame_index"] = index
    info.setdefault("source_index", index)


def _as_array(value: Any, source: str, index: int, field: str) -> np.ndarray:
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"expected numbers, found {value!r}", source=source, index=index, field=field
        ) from err


def _as_float(value: Any, source: str, index: int, field: str) -> float:
    array = _as_array(value, source, index, field)
    if array.size != 1:
        raise DataError(
            f"expected one number, found shape {array.shape}",
            source=source,
            index=index,
            field=field,
        )
    _check_finite(array, source, index, field)
    return float(array.reshape(()))


def _as_voigt(value: Any, source: str, index: int, field: str) -> np.ndarray:
    """6 (Voigt xx yy zz yz xz xy), 9 (row-major) or 3x3 numbers -> Voigt (6,)."""
    array = _as_array(value, source, index, field)
    _check_finite(array, source, index, field)
    if array.shape == (6,):
        return array
    if array.shape not in ((9,), (3, 3)):
        raise DataError(
            f"expected 6 (Voigt), 9 or 3x3 numbers, found shape {array.shape}",
            source=source,
            index=index,
            field=field,
        )
    matrix = array.reshape(3, 3)
    asymmetry = float(np.abs(matrix - matrix.T).max())
    if asymmetry > _ASYMMETRY_RTOL * float(np.abs(matrix).max()) + 1e-12:
        raise DataError(
            f"3x3 tensor is not symmetric (max |s - s^T| = {asymmetry:.3g})",
            source=source,
            index=index,
            field=field,
        )
    return full_3x3_to_voigt_6_stress(matrix)


def _check_finite(value: Any, source: str, index: int, field: str) -> None:
    array = np.asarray(value)
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(np.atleast_1d(array)))[0].tolist()
        raise DataError(f"non-finite value at {bad}", source=source, index=index, field=field)


def _check_cell(atoms: ase.Atoms, source: str, index: int) -> None:
    """Periodic directions need non-zero, linearly independent cell vectors."""
    cell, pbc = atoms.cell.array, atoms.pbc
    _check_finite(cell, source, index, "cell")
    for axis in range(3):
        if pbc[axis] and np.linalg.norm(cell[axis]) < _MIN_LENGTH:
            raise DataError(
                f"pbc[{axis}] is True but cell vector {axis} is zero (cell={cell.tolist()})",
                source=source,
                index=index,
                field="cell",
            )
    periodic = cell[pbc]
    measure = np.sqrt(abs(np.linalg.det(periodic @ periodic.T))) if len(periodic) else 1.0
    if len(periodic) >= 2 and measure < _MIN_VOLUME:
        raise DataError(
            f"singular periodic cell: measure {measure:.3g} "
            f"(Å^{len(periodic)}) < {_MIN_VOLUME:g} (cell={cell.tolist()}, "
            f"pbc={pbc.tolist()})",
            source=source,
            index=index,
            field="cell",
        )


def _has_label(atoms: ase.Atoms, label: str) -> bool:
    if label in _LABELS:  # read() keeps these only in the calculator
        return atoms.calc is not None and label in atoms.calc.results
    return label in atoms.info or label in atoms.arrays

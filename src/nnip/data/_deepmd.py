"""DeePMD npy systems: a small reader and writer (numpy only, no dpdata).

Layout of one system (DeePMD-kit "npy" format)::

    system/
      type.raw         n_atoms integers, the type of each atom (same for all frames)
      type_map.raw     element symbol of type 0, 1, ... (one per line)
      nopbc            optional empty file: frames are not periodic
      set.000/         frames, split into sets
        coord.npy      (n_frames, n_atoms * 3)  positions, Å
        box.npy        (n_frames, 9)            cell, rows = lattice vectors, Å
                                                (absent: not periodic)
        energy.npy     (n_frames,)              total energy, eV
        force.npy      (n_frames, n_atoms * 3)  forces, eV/Å
        virial.npy     (n_frames, 9)            virial W = -V * stress, eV

A folder whose subfolders (at any depth) are systems is a multi-system folder; its
frames are concatenated in sorted path order of the systems, then of ``set.*``.
Source: DeePMD-kit documentation, "Data format" (deepmd-kit/doc/data/system.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

from nnip.errors import DataError

__all__ = ["find_systems", "read_deepmd", "write_deepmd"]

# npy name -> numbers per atom (row width n_atoms * value), or None if per frame
_FILES = {"coord": 3, "box": None, "energy": None, "force": 3, "virial": None}
_WIDTH = {"box": 9, "energy": 1, "virial": 9}  # row width of the per-frame files


def find_systems(path: Path) -> list[Path]:
    """DeePMD systems in ``path``: itself if it holds ``type.raw``, else its subfolders.

    Args:
        path: a system folder or a folder of systems.

    Returns:
        system folders, in sorted path order.

    """
    if (path / "type.raw").is_file():
        return [path]
    return sorted(p.parent for p in path.rglob("type.raw") if p.is_file())


def read_deepmd(
    path: Path, key: int | slice, type_map: Sequence[str] | None
) -> list[tuple[int, ase.Atoms, dict[str, Any]]]:
    """Read the frames selected by ``key`` from a DeePMD system or multi-system folder.

    Args:
        path: system folder or folder of systems.
        key: index into the concatenated frames of all systems.
        type_map: element symbols of the types; overrides ``type_map.raw``.

    Returns:
        (frame index, atoms, raw labels) triples; labels ``energy`` (eV), ``forces``
        ``(n_atoms, 3)`` eV/Å and ``virial`` ``(9,)`` eV where the files have them.
        ``info["deepmd_system"]`` and ``info["deepmd_set"]`` name the system
        (relative to ``path``) and the set of each frame.

    Raises:
        DataError: no system, missing ``type_map.raw``, unknown element, missing
            ``coord.npy`` or arrays of the wrong shape, index out of range.

    """
    systems = find_systems(path)
    if not systems:
        raise DataError(
            "no DeePMD system: no type.raw in this folder or below it", source=str(path)
        )
    sets = []  # (system, numbers, periodic, set folder, n_frames)
    for system in systems:
        numbers, periodic = _system_meta(system, type_map)
        set_dirs = sorted(d for d in system.glob("set.*") if d.is_dir())
        if not set_dirs:
            raise DataError("DeePMD system has no set.* folder", source=str(system))
        for set_dir in set_dirs:
            n_frames = len(_load(set_dir, "coord", None, len(numbers)))
            sets.append((system, numbers, periodic, set_dir, n_frames))
    total = sum(entry[-1] for entry in sets)
    try:
        chosen = range(total)[key]
    except IndexError as err:
        raise DataError(f"index {key} out of range ({total} frames)", source=str(path)) from err
    chosen = {chosen} if isinstance(chosen, int) else set(chosen)
    frames = []
    start = 0
    for system, numbers, periodic, set_dir, n_frames in sets:
        wanted = [i for i in range(start, start + n_frames) if i in chosen]
        if wanted:
            arrays = {name: _load(set_dir, name, n_frames, len(numbers)) for name in _FILES}
            for i in wanted:
                atoms, labels = _frame(arrays, i - start, numbers, periodic)
                atoms.info["deepmd_system"] = str(system.relative_to(path))
                atoms.info["deepmd_set"] = set_dir.name
                frames.append((i, atoms, labels))
        start += n_frames
    if isinstance(key, slice) and (key.step or 1) < 0:
        frames.reverse()
    return frames


def _system_meta(system: Path, type_map: Sequence[str] | None) -> tuple[np.ndarray, bool]:
    """Atomic numbers ``(n_atoms,)`` from type.raw and type_map; periodic or not."""
    type_file = system / "type.raw"
    try:
        types = np.array(type_file.read_text().split(), dtype=np.int64)
    except (ValueError, OSError) as err:
        raise DataError(f"expected integers: {err}", source=str(type_file), field="type") from err
    if type_map is None:
        map_file = system / "type_map.raw"
        if not map_file.is_file():
            raise DataError(
                "type_map.raw is missing: cannot tell the element of each "
                "type; add it or pass type_map=[...]",
                source=str(map_file),
            )
        type_map = map_file.read_text().split()
    unknown = [s for s in type_map if s not in atomic_numbers]
    if unknown:
        raise DataError(f"unknown element symbols {unknown}", source=str(system), field="type_map")
    if len(types) == 0 or types.min() < 0 or types.max() >= len(type_map):
        raise DataError(
            f"types must be in 0..{len(type_map) - 1} (type_map {list(type_map)}), "
            f"found {sorted(set(types.tolist()))}",
            source=str(type_file),
            field="type",
        )
    numbers = np.array([atomic_numbers[type_map[t]] for t in types], dtype=np.int64)
    periodic = not (system / "nopbc").exists() and any(system.glob("set.*/box.npy"))
    return numbers, periodic


def _load(set_dir: Path, name: str, n_frames: int | None, n_atoms: int) -> np.ndarray | None:
    """Load ``name.npy`` as ``(n_frames, width)``; None if absent and not ``coord``."""
    file = set_dir / f"{name}.npy"
    if not file.is_file():
        if name == "coord":
            raise DataError("coord.npy is missing", source=str(file), field="coord")
        return None
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot load: {err}", source=str(file), field=name) from err
    per_atom = _FILES[name]
    width = n_atoms * per_atom if per_atom else _WIDTH[name]
    rows = array.size // width if n_frames is None else n_frames
    if array.size != rows * width:
        expected = f"({'n_frames' if n_frames is None else n_frames}, {width})"
        raise DataError(
            f"expected shape {expected}, found {array.shape}", source=str(file), field=name
        )
    return array.reshape(rows, width)


def _frame(
    arrays: dict[str, np.ndarray | None], i: int, numbers: np.ndarray, periodic: bool
) -> tuple[ase.Atoms, dict[str, Any]]:
    positions = np.asarray(arrays["coord"][i], dtype=np.float64).reshape(-1, 3)
    box = arrays["box"]
    cell = np.zeros((3, 3)) if box is None else np.asarray(box[i], np.float64).reshape(3, 3)
    atoms = ase.Atoms(numbers=numbers, positions=positions, cell=cell, pbc=periodic)
    labels: dict[str, Any] = {}
    if arrays["energy"] is not None:
        labels["energy"] = float(arrays["energy"][i, 0])
    if arrays["force"] is not None:
        labels["forces"] = np.asarray(arrays["force"][i], np.float64).reshape(-1, 3)
    if arrays["virial"] is not None:
        labels["virial"] = np.asarray(arrays["virial"][i], np.float64)
    return atoms, labels


def write_deepmd(
    directory: str | os.PathLike,
    frames: Sequence[ase.Atoms],
    type_map: Sequence[str] | None = None,
    set_size: int = 5000,
) -> list[Path]:
    """Write structures as DeePMD npy system(s).

    Frames that share atom order, periodicity and label set form one system. With one
    system it is written into ``directory``; with several, each goes to a subfolder
    ``directory/NNN_<formula>`` (a multi-system folder, read back by
    :func:`nnip.data.io.read`). Labels come from ``atoms.calc.results``: ``energy``
    (eV) -> energy.npy, ``forces`` (eV/Å) -> force.npy, ``stress`` (eV/Å^3, ASE sign)
    -> virial.npy as ``W = -V * stress`` (eV; periodic frames only). Info keys such as
    ``config_type``, weights and charges are not stored (DeePMD has no place for them).

    Args:
        directory: output folder; must not exist or be empty.
        frames: structures, positions ``(n_atoms, 3)`` Å, cell ``(3, 3)`` Å.
        type_map: element symbols of types 0, 1, ...; default: the elements present,
            by atomic number.
        set_size: frames per ``set.NNN`` folder.

    Returns:
        the system folders written.

    Raises:
        DataError: a frame partly periodic, or with an element not in ``type_map``.
        FileExistsError: ``directory`` exists and is not empty.
        ValueError: no frames or ``set_size < 1``.

    """
    frames = list(frames)
    if not frames or set_size < 1:
        raise ValueError(
            f"need at least one frame and set_size >= 1, got {len(frames)} "
            f"frames and set_size={set_size}"
        )
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    if type_map is None:
        present = sorted({int(z) for atoms in frames for z in atoms.numbers})
        type_map = [chemical_symbols[z] for z in present]
    groups: dict[tuple, list[tuple[int, ase.Atoms]]] = {}
    for i, atoms in enumerate(frames):
        groups.setdefault(_group_key(atoms, i), []).append((i, atoms))
    targets = [directory]
    if len(groups) > 1:
        targets = [
            directory / f"{k:03d}_{members[0][1].get_chemical_formula()}"
            for k, members in enumerate(groups.values())
        ]
    for target, (key, members) in zip(targets, groups.items()):
        _write_system(
            target, members, list(type_map), periodic=key[1], labels=key[2], set_size=set_size
        )
    return targets


def _group_key(atoms: ase.Atoms, index: int) -> tuple:
    if atoms.pbc.any() and not atoms.pbc.all():
        raise DataError(
            f"DeePMD stores fully periodic or non-periodic frames only, found "
            f"pbc={atoms.pbc.tolist()}",
            index=index,
            field="pbc",
        )
    periodic = bool(atoms.pbc.all())
    results = atoms.calc.results if atoms.calc is not None else {}
    labels = tuple(
        n for n in ("energy", "forces", "stress") if n in results and (n != "stress" or periodic)
    )
    return tuple(atoms.numbers.tolist()), periodic, labels


def _write_system(
    target: Path,
    members: list[tuple[int, ase.Atoms]],
    type_map: list[str],
    *,
    periodic: bool,
    labels: tuple[str, ...],
    set_size: int,
) -> None:
    first_index, first = members[0]
    missing = sorted(set(first.get_chemical_symbols()) - set(type_map))
    if missing:
        raise DataError(
            f"elements {missing} are not in type_map {type_map}", index=first_index, field="numbers"
        )
    target.mkdir(parents=True, exist_ok=True)
    types = [type_map.index(s) for s in first.get_chemical_symbols()]
    (target / "type.raw").write_text("\n".join(map(str, types)) + "\n")
    (target / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if not periodic:
        (target / "nopbc").write_text("")
    for k, start in enumerate(range(0, len(members), set_size)):
        chunk = [atoms for _, atoms in members[start : start + set_size]]
        set_dir = target / f"set.{k:03d}"
        set_dir.mkdir()
        np.save(set_dir / "coord.npy", np.stack([a.positions.reshape(-1) for a in chunk]))
        np.save(set_dir / "box.npy", np.stack([a.cell.array.reshape(-1) for a in chunk]))
        if "energy" in labels:
            energy = [float(a.calc.results["energy"]) for a in chunk]
            np.save(set_dir / "energy.npy", np.array(energy, dtype=np.float64))
        if "forces" in labels:
            forces = [np.asarray(a.calc.results["forces"], np.float64).reshape(-1) for a in chunk]
            np.save(set_dir / "force.npy", np.stack(forces))
        if "stress" in labels:
            np.save(set_dir / "virial.npy", np.stack([_virial(a) for a in chunk]))


def _virial(atoms: ase.Atoms) -> np.ndarray:
    """Virial ``(9,)`` eV, ``W = -V * stress`` from the ASE-sign stress in eV/Å^3."""
    stress = np.asarray(atoms.calc.results["stress"], dtype=np.float64)
    if stress.shape == (6,):
        stress = voigt_6_to_full_3x3_stress(stress)
    return (-atoms.get_volume() * stress.reshape(3, 3)).reshape(-1)

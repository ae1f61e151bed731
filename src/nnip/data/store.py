"""On-disk structure store (HDF5) for data sets larger than memory.

``nnip data convert a.xyz b.xyz -o data.h5`` (or `write_store`) writes one; a config
with ``data.train: [data.h5]`` trains from it without ever holding the data in memory:
structures are read, and their neighbour lists built, batch by batch.

Layout (``attrs["format"] == "nnip-store"``, version 1) — two tables of fixed-size
records, so one structure is two reads at any index:

- ``systems`` ``(n_structures,)``: ``n_atoms``; ``cell`` (3, 3) Å; ``pbc`` (3,);
  ``energy`` eV; ``stress`` (3, 3) eV/Å^3 (ASE sign); ``weight``; ``total_charge`` e;
  ``has_energy``, ``has_forces``, ``has_stress``, ``has_charges``; ``config_type`` and
  ``source`` (codes into the JSON lists ``attrs["config_types"]``, ``attrs["sources"]``);
  ``frame_index`` (index of the frame in its source).
- ``atoms`` ``(n_atoms_total,)``: ``number`` (Z); ``position`` (3,) Å; ``force`` (3,)
  eV/Å; ``charge`` e (reference charge, from ``atoms.arrays["ref_charges"]``).

Missing labels are stored as zeros with their ``has_*`` flag false. Other ``info``
keys and per-atom arrays of the input are not kept. ``attrs["sha256"]`` hashes the two
tables (computed when the writer closes) and is what a model trained on the store
records as its data fingerprint.

Example:
    >>> from nnip.data.store import FrameStore, write_store
    >>> write_store(["train.xyz"], "train.h5")          # doctest: +SKIP
    >>> store = FrameStore("train.h5")                  # doctest: +SKIP
    >>> len(store), store[0].get_potential_energy()     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from nnip.errors import DataError

__all__ = ["FrameStore", "StoreWriter", "write_store", "is_store", "STORE_FORMAT"]

STORE_FORMAT = "nnip-store"
STORE_VERSION = 1
SYSTEM_DTYPE = np.dtype([
    ("n_atoms", "<i4"), ("cell", "<f8", (3, 3)), ("pbc", "?", (3,)), ("energy", "<f8"),
    ("stress", "<f8", (3, 3)), ("weight", "<f8"), ("total_charge", "<f8"),
    ("has_energy", "?"), ("has_forces", "?"), ("has_stress", "?"), ("has_charges", "?"),
    ("config_type", "<i4"), ("source", "<i4"), ("frame_index", "<i8"),
])
ATOM_DTYPE = np.dtype([("number", "u1"), ("position", "<f8", (3,)), ("force", "<f8", (3,)),
                       ("charge", "<f8")])
_SYSTEM_CHUNK = 256  # records per HDF5 chunk: one random read touches ~50 kB
_ATOM_CHUNK = 2048  # ~115 kB
_SCAN = 1 << 18  # records read at a time by the streaming statistics


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a dependency
        raise DataError("the on-disk store needs h5py: pip install h5py") from err
    return h5py


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an nnip store (an HDF5 file with ``format == nnip-store``)."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89HDF\r\n\x1a\n":
            return False
    with _h5py().File(path, "r") as f:
        return f.attrs.get("format") == STORE_FORMAT


class StoreWriter:
    """Append structures to a new store; use as a context manager.

    Args:
        path: the HDF5 file to create (an existing file is replaced only on success:
            the writer fills ``path + ".partial"`` and renames it when closed).
        buffer: structures collected in memory before they are written.

    Example:
        >>> with StoreWriter("big.h5") as w:        # doctest: +SKIP
        ...     for chunk in chunks:
        ...         w.add_frames(chunk)
    """

    def __init__(self, path: str | os.PathLike, *, buffer: int = 20_000) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.buffer = int(buffer)
        h5py = _h5py()
        self.file = h5py.File(self.partial, "w")
        self.file.attrs["format"] = STORE_FORMAT
        self.file.attrs["format_version"] = STORE_VERSION
        self.systems = self.file.create_dataset("systems", shape=(0,), maxshape=(None,),
                                                dtype=SYSTEM_DTYPE, chunks=(_SYSTEM_CHUNK,))
        self.atoms = self.file.create_dataset("atoms", shape=(0,), maxshape=(None,),
                                              dtype=ATOM_DTYPE, chunks=(_ATOM_CHUNK,))
        self.config_types: dict[str, int] = {}
        self.sources: dict[str, int] = {}
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        self.n_structures = 0
        self.n_atoms = 0

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            self.close()
        else:  # leave no half-written store behind
            self.file.close()
            self.partial.unlink(missing_ok=True)

    def _code(self, table: dict[str, int], name: str) -> int:
        return table.setdefault(str(name), len(table))

    def add_frames(self, frames: Iterable[Atoms]) -> None:
        """Append labelled structures in nnip's normalised form (`nnip.data.read`).

        Labels come from ``atoms.calc.results`` (energy, forces, stress), ``info``
        (``weight``, ``total_charge``, ``config_type``, ``source``, ``frame_index``) and
        ``arrays["ref_charges"]``.
        """
        for k, atoms in enumerate(frames):
            self._add_one(atoms, k)

    def _add_one(self, atoms: Atoms, k: int) -> None:
        n = len(atoms)
        source = str(atoms.info.get("source", ""))
        index = int(atoms.info.get("frame_index", k))
        if n == 0:
            raise DataError("structure has no atoms", source=source, index=index)
        if int(atoms.numbers.max()) > 118 or int(atoms.numbers.min()) < 1:
            raise DataError("atomic numbers outside 1..118", source=source, index=index,
                            field="numbers")
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        sys_rec = np.zeros(1, SYSTEM_DTYPE)
        s = sys_rec[0]
        s["n_atoms"] = n
        s["cell"] = atoms.cell.array
        s["pbc"] = atoms.pbc
        s["weight"] = float(atoms.info.get("weight", 1.0))
        s["total_charge"] = float(atoms.info.get("total_charge", 0.0))
        s["config_type"] = self._code(self.config_types, atoms.info.get("config_type",
                                                                       "default"))
        s["source"] = self._code(self.sources, source)
        s["frame_index"] = index
        rec = np.zeros(n, ATOM_DTYPE)
        rec["number"] = atoms.numbers
        rec["position"] = atoms.positions
        if results.get("energy") is not None:
            s["energy"], s["has_energy"] = float(results["energy"]), True
        if results.get("forces") is not None:
            forces = np.asarray(results["forces"], dtype=np.float64)
            if forces.shape != (n, 3):
                raise DataError(f"expected shape ({n}, 3), got {forces.shape}", source=source,
                                index=index, field="forces")
            rec["force"], s["has_forces"] = forces, True
        if results.get("stress") is not None:
            stress = np.asarray(results["stress"], dtype=np.float64)
            if stress.shape == (6,):
                from ase.stress import voigt_6_to_full_3x3_stress

                stress = voigt_6_to_full_3x3_stress(stress)
            s["stress"], s["has_stress"] = stress.reshape(3, 3), True
        if "ref_charges" in atoms.arrays:
            rec["charge"], s["has_charges"] = atoms.arrays["ref_charges"], True
        for name, label in (("position", "positions"), ("force", "forces"),
                            ("charge", "ref_charges")):
            if not np.isfinite(rec[name]).all():
                raise DataError("non-finite value", source=source, index=index, field=label)
        for name in ("cell", "energy", "stress", "weight", "total_charge"):
            if not np.isfinite(s[name]).all():
                raise DataError("non-finite value", source=source, index=index, field=name)
        self._pending.append((sys_rec, rec))
        self._pending_n += 1
        if self._pending_n >= self.buffer:
            self.flush()

    def add_arrays(self, systems: np.ndarray, atoms: np.ndarray, *,
                   config_type: str = "default", source: str = "") -> None:
        """Append ready-made records (fast path for generated data).

        Args:
            systems: ``(k,)`` records of dtype `SYSTEM_DTYPE`; its ``config_type`` and
                ``source`` codes are overwritten with those of the given names.
            atoms: ``(sum(systems["n_atoms"]),)`` records of dtype `ATOM_DTYPE`.
            config_type: config type of all ``k`` structures.
            source: source name of all ``k`` structures.
        """
        systems = np.asarray(systems, SYSTEM_DTYPE).copy()
        atoms = np.asarray(atoms, ATOM_DTYPE)
        if int(systems["n_atoms"].sum()) != len(atoms):
            raise DataError(f"systems count {int(systems['n_atoms'].sum())} atoms, "
                            f"{len(atoms)} atom records given", source=source)
        systems["config_type"] = self._code(self.config_types, config_type)
        systems["source"] = self._code(self.sources, source)
        self.flush()
        self._write(systems, atoms)

    def flush(self) -> None:
        """Write the buffered structures."""
        if not self._pending:
            return
        systems = np.concatenate([p[0] for p in self._pending])
        atoms = np.concatenate([p[1] for p in self._pending])
        self._pending, self._pending_n = [], 0
        self._write(systems, atoms)

    def _write(self, systems: np.ndarray, atoms: np.ndarray) -> None:
        n0, a0 = self.n_structures, self.n_atoms
        self.systems.resize((n0 + len(systems),))
        self.systems[n0:] = systems
        self.atoms.resize((a0 + len(atoms),))
        self.atoms[a0:] = atoms
        self.n_structures += len(systems)
        self.n_atoms += len(atoms)

    def close(self) -> Path:
        """Write what is buffered, the name tables and the hash; move into place."""
        self.flush()
        if self.n_structures == 0:
            self.file.close()
            self.partial.unlink(missing_ok=True)
            raise DataError("no structures to store", source=str(self.path))
        a = self.file.attrs
        a["config_types"] = json.dumps(sorted(self.config_types, key=self.config_types.get))
        a["sources"] = json.dumps(sorted(self.sources, key=self.sources.get))
        a["n_structures"] = self.n_structures
        a["n_atoms"] = self.n_atoms
        digest = hashlib.sha256(b"nnip-store-v1")
        for name in ("systems", "atoms"):
            ds = self.file[name]
            for start in range(0, len(ds), _SCAN):
                digest.update(ds[start:start + _SCAN].tobytes())
        a["sha256"] = digest.hexdigest()
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path


def write_store(inputs: Sequence[str | os.PathLike] | Iterable[Atoms], output: str | os.PathLike,
                *, progress: bool = False, **read_kwargs: Any) -> Path:
    """Convert labelled structures into a store.

    Args:
        inputs: files readable by `nnip.data.read` (read one at a time: memory holds one
            file's structures, never all), or an iterable of structures in nnip's
            normalised form.
        output: the store to write (``.h5``).
        progress: show a progress bar over the files.
        read_kwargs: passed to `nnip.data.read` (``energy_key``, ``units``, ...).

    Returns:
        ``output`` as a `Path`.
    """
    from nnip.data.io import read

    items = list(inputs) if not isinstance(inputs, Iterator) else inputs
    with StoreWriter(output) as writer:
        if isinstance(items, list) and items and isinstance(items[0], (str, os.PathLike)):
            iterator: Iterable[Any] = items
            if progress:
                from rich.progress import track

                iterator = track(items, description="converting", transient=True)
            for path in iterator:
                writer.add_frames(read(path, **read_kwargs))
        else:
            writer.add_frames(items)
    return Path(output)


class FrameStore(Sequence):
    """A store (or a subset of its structures) as a lazy, read-only sequence of `Atoms`.

    ``store[i]`` reads structure ``i`` from disk as an `ase.Atoms` in nnip's normalised
    form (labels in a `SinglePointCalculator`, ``info`` with ``source``, ``frame_index``,
    ``config_type``, ``weight``, ``total_charge``); ``store[idx]`` with a slice or an
    integer array is the subset, again a `FrameStore`. Whole-set statistics (`elements`,
    `composition`, `force_rms`) stream the file in blocks, so their memory does not grow
    with the store.

    Args:
        path: a file written by `StoreWriter` / `write_store`.
        indices: structures of the store in this view (default: all, in order).

    Raises:
        DataError: not a store, or an unknown format version.
    """

    def __init__(self, path: str | os.PathLike, indices: np.ndarray | None = None, *,
                 _meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if _meta is None:
            _meta = self._read_meta(self.path)
        self._meta = _meta
        n = len(_meta["n_atoms"])
        self.indices = np.arange(n, dtype=np.int64) if indices is None else \
            np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"{self.path}: structure index out of range ({n} structures)")
        self._file: Any = None
        self._pid = -1

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        if not path.exists():
            raise DataError("no such file", source=str(path))
        if not is_store(path):
            raise DataError("not an nnip store (write one with `nnip data convert`)",
                            source=str(path))
        with _h5py().File(path, "r") as f:
            a = f.attrs
            if int(a["format_version"]) > STORE_VERSION:
                raise DataError(f"store format version {int(a['format_version'])} is newer "
                                f"than this nnip reads ({STORE_VERSION}); update nnip",
                                source=str(path))
            ds = f["systems"]
            n_atoms = np.concatenate([ds.fields("n_atoms")[k:k + _SCAN]
                                      for k in range(0, len(ds), _SCAN)]).astype(np.int64)
            return {"n_atoms": n_atoms,
                    "offsets": np.concatenate([[0], np.cumsum(n_atoms)]),
                    "config_types": json.loads(a["config_types"]),
                    "sources": json.loads(a["sources"]), "sha256": str(a["sha256"])}

    def _h5(self) -> Any:
        # one handle per process: a handle opened before a fork must not be shared
        if self._file is None or self._pid != os.getpid():
            self._file = _h5py().File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            k = int(key)
            if not -len(self) <= k < len(self):
                raise IndexError(f"{self.path}: index {k} out of range ({len(self)} structures)")
            return self._atoms(int(self.indices[k]))
        return FrameStore(self.path, self.indices[key], _meta=self._meta)

    def __iter__(self) -> Iterator[Atoms]:
        for i in self.indices:
            yield self._atoms(int(i))

    def __repr__(self) -> str:
        return f"FrameStore({str(self.path)!r}, {len(self)} structures)"

    @property
    def n_atoms_each(self) -> np.ndarray:
        """``(len,)`` number of atoms of each structure in the view."""
        return self._meta["n_atoms"][self.indices]

    @property
    def sha256(self) -> str:
        """Hash of the whole store's tables (written by the writer)."""
        return self._meta["sha256"]

    def _atoms(self, i: int) -> Atoms:
        f = self._h5()
        s = f["systems"][i]
        a0, a1 = self._meta["offsets"][i], self._meta["offsets"][i + 1]
        rec = f["atoms"][a0:a1]
        atoms = Atoms(numbers=rec["number"].astype(np.int64), positions=rec["position"],
                      cell=s["cell"], pbc=s["pbc"])
        results: dict[str, Any] = {}
        if s["has_energy"]:
            results["energy"] = float(s["energy"])
        if s["has_forces"]:
            results["forces"] = np.array(rec["force"])
        if s["has_stress"]:
            results["stress"] = full_3x3_to_voigt_6_stress(np.array(s["stress"]))
        if s["has_charges"]:
            atoms.new_array("ref_charges", np.array(rec["charge"]))
        atoms.info.update(
            config_type=self._meta["config_types"][int(s["config_type"])],
            weight=float(s["weight"]), total_charge=float(s["total_charge"]),
            source=self._meta["sources"][int(s["source"])] or str(self.path),
            frame_index=int(s["frame_index"]), store_index=i)
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    # ----------------------------------------------------------- streamed statistics
    def _scan(self, table: str, fields: Sequence[str]) -> Iterator[tuple[int, np.ndarray]]:
        """Blocks ``(start, records)`` of a whole table, only ``fields`` read.

        With one field the records are a plain array.
        """
        ds = self._h5()[table]
        for start in range(0, len(ds), _SCAN):
            names = fields[0] if len(fields) == 1 else list(fields)
            yield start, ds.fields(names)[start:start + _SCAN]

    def _selected(self) -> np.ndarray:
        """``(n_store,)`` how often each structure of the store is in the view."""
        return np.bincount(self.indices, minlength=len(self._meta["n_atoms"]))

    def _store_composition(self) -> tuple[np.ndarray, np.ndarray]:
        """Atomic numbers present and ``(n_store, n_present)`` counts for the whole store.

        Two scans of the atoms table the first time; kept in the metadata that every
        view of the store shares, so the split, E0 fit and fingerprint scan it once.
        """
        if "composition" not in self._meta:
            offsets = self._meta["offsets"]
            present = np.zeros(119, dtype=bool)
            for _, rec in self._scan("atoms", ["number"]):
                present[np.unique(rec)] = True
            zs = np.flatnonzero(present)
            column = np.full(119, -1)
            column[zs] = np.arange(len(zs))
            counts = np.zeros((len(self._meta["n_atoms"]), len(zs)), dtype=np.int32)
            for start, rec in self._scan("atoms", ["number"]):
                owner = np.searchsorted(offsets, start + np.arange(len(rec)), side="right") - 1
                lo, hi = int(owner[0]), int(owner[-1]) + 1
                local = (owner - lo) * len(zs) + column[rec.astype(np.int64)]
                counts[lo:hi] += np.bincount(local, minlength=(hi - lo) * len(zs)).reshape(
                    hi - lo, len(zs)).astype(np.int32)
            self._meta["composition"] = (zs, counts)
        return self._meta["composition"]

    def composition(self) -> tuple[list[str], np.ndarray]:
        """Elements present (sorted by Z) and ``(len, n_elements)`` atom counts."""
        zs, counts = self._store_composition()
        sub = counts[self.indices]
        keep = sub.sum(axis=0) > 0
        return [chemical_symbols[z] for z in zs[keep]], sub[:, keep]

    def _system_column(self, name: str) -> np.ndarray:
        """``(n_store,)`` one field of the systems table, read in blocks."""
        return np.concatenate([rec for _, rec in self._scan("systems", [name])])

    def energies(self) -> tuple[np.ndarray, np.ndarray]:
        """``(len,)`` total energies (eV) and ``(len,)`` whether each has one."""
        return (self._system_column("energy")[self.indices],
                self._system_column("has_energy")[self.indices])

    def has_charges(self) -> bool:
        """Whether any structure of the view carries reference charges."""
        return bool(self._system_column("has_charges")[self.indices].any())

    def force_rms(self) -> float | None:
        """RMS force component (eV/Å) over the view's labelled atoms; None without forces."""
        weight = self._selected() * self._system_column("has_forces")  # per structure
        offsets = self._meta["offsets"]
        total, count = 0.0, 0
        for start, rec in self._scan("atoms", ["force"]):
            owner = np.searchsorted(offsets, start + np.arange(len(rec)), side="right") - 1
            w = weight[owner]
            total += float((w[:, None] * rec**2).sum())
            count += 3 * int(w.sum())
        return float(np.sqrt(total / count)) if count else None

    def fingerprint(self) -> dict[str, Any]:
        """Provenance record of the view (cf. `nnip.export.model_file.data_fingerprint`).

        ``sha256`` hashes the store's own hash together with the view's indices.
        """
        elements, counts = self.composition()
        digest = hashlib.sha256(self.sha256.encode())
        digest.update(self.indices.astype("<i8").tobytes())
        flags = {f"has_{k}": self._system_column(f"has_{k}")
                 for k in ("energy", "forces", "stress")}
        return {"sha256": digest.hexdigest(), "store": str(self.path),
                "store_sha256": self.sha256, "n_structures": len(self),
                "n_atoms": int(self.n_atoms_each.sum()),
                "counts_per_element": dict(zip(elements, counts.sum(axis=0).tolist())),
                "labels": {k: int(flags[f"has_{k}"][self.indices].sum())
                           for k in ("energy", "forces", "stress")}}

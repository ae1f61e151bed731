"""`AtomicGraph` (always a batch) and `Targets`, the tensors every model sees.

Users hand nnip `ase.Atoms`; `AtomicGraph.from_atoms` turns one structure or a list
into a single batched graph, with neighbour lists from vesin. Labels live apart in
`Targets`, so a model can never read its own labels. Both are validated at
construction and raise `DataError` naming the structure and field.

Example:
    >>> from ase.build import bulk
    >>> graph = AtomicGraph.from_atoms([bulk("Cu", cubic=True)], cutoff=4.0)
    >>> graph.n_systems, graph.n_atoms
    (1, 4)

"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from ase import Atoms

from nnip.data.fields import GRAPH_FIELDS, TARGET_FIELDS, Field
from nnip.data.neighbors import neighbor_list
from nnip.errors import DataError

__all__ = ["AtomicGraph", "Targets", "collate"]

T = TypeVar("T", "AtomicGraph", "Targets")


def _torch_dtype(field: Field, float_dtype: torch.dtype) -> torch.dtype:
    return {"float": float_dtype, "int": torch.int64, "bool": torch.bool}[field.dtype]


class _Batch:
    """Schema-driven ``.to()``, concatenation and field access shared by both classes."""

    SCHEMA: tuple[Field, ...] = ()

    def to(self: T, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> T:
        """Return a copy on ``device`` with float fields cast to ``dtype``.

        Integer and boolean fields keep their dtype. Inputs are never modified.
        """
        out = {}
        for f in self.SCHEMA:
            value = getattr(self, f.name)
            if value is not None:
                cast = dtype if (f.dtype == "float" and dtype is not None) else None
                value = value.to(device=device, dtype=cast)
            out[f.name] = value
        return type(self)(**out)

    def items(self) -> dict[str, torch.Tensor | None]:
        """Return the fields as a ``{name: tensor}`` dict (the export boundary)."""
        return {f.name: getattr(self, f.name) for f in self.SCHEMA}


def _concat(parts: Sequence[_Batch]) -> dict[str, torch.Tensor | None]:
    """Concatenate batches field by field, offsetting index fields."""
    out: dict[str, torch.Tensor | None] = {}
    counts = {
        "atom": [p.n_atoms for p in parts],  # type: ignore[attr-defined]
        "system": [p.n_systems for p in parts],  # type: ignore[attr-defined]
    }
    for f in parts[0].SCHEMA:
        values = [getattr(p, f.name) for p in parts]
        if any(v is None for v in values):
            if not all(v is None for v in values):
                raise DataError("field present in some structures only", field=f.name)
            out[f.name] = None
            continue
        if f.offset_by is not None:
            offsets = np.concatenate([[0], np.cumsum(counts[f.offset_by])[:-1]])
            values = [v + int(o) for v, o in zip(values, offsets)]
        dim = -1 if f.name == "edge_index" else 0
        out[f.name] = torch.cat(values, dim=dim)
    return out


@dataclass(frozen=True, eq=False)
class AtomicGraph(_Batch):
    """A batch of structures with neighbour lists; the only input a model sees.

    Shapes use ``n_atoms``, ``n_edges`` and ``n_systems`` of the whole batch; units are
    Å for lengths and e for charge. See `nnip.data.fields.GRAPH_FIELDS`.

    Attributes:
        positions: ``(n_atoms, 3)`` float, Å.
        atomic_numbers: ``(n_atoms,)`` int64.
        system_idx: ``(n_atoms,)`` int64, sorted, structure of each atom.
        cell: ``(n_systems, 3, 3)`` float, Å, lattice vectors as rows.
        pbc: ``(n_systems, 3)`` bool.
        total_charge: ``(n_systems,)`` float, e.
        edge_index: ``(2, n_edges)`` int64; row 0 centre ``i``, row 1 neighbour ``j``.
        edge_shift: ``(n_edges, 3)`` int64 lattice images, so that
            ``r_ij = positions[j] - positions[i] + edge_shift @ cell[system_idx[i]]``.

    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    system_idx: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    total_charge: torch.Tensor
    edge_index: torch.Tensor
    edge_shift: torch.Tensor

    SCHEMA = GRAPH_FIELDS

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_atoms(self) -> int:
        """Number of atoms in the batch."""
        return self.positions.shape[0]  # no int(): keeps a symbolic size symbolic (export)

    @property
    def n_systems(self) -> int:
        """Number of structures in the batch."""
        return self.cell.shape[0]

    @property
    def n_edges(self) -> int:
        """Number of directed edges in the batch."""
        return self.edge_index.shape[1]

    @property
    def atoms_per_system(self) -> torch.Tensor:
        """``(n_systems,)`` int64 number of atoms in each structure."""
        return torch.bincount(self.system_idx, minlength=self.n_systems)

    def validate(self) -> None:
        """Check shapes, dtypes and index ranges (cheap; no data-dependent syncs)."""
        n_atoms, n_systems = self.positions.shape[0], self.cell.shape[0]
        n_edges = self.edge_index.shape[-1]
        expected = {
            "positions": (n_atoms, 3), "atomic_numbers": (n_atoms,),
            "system_idx": (n_atoms,), "cell": (n_systems, 3, 3), "pbc": (n_systems, 3),
            "total_charge": (n_systems,), "edge_index": (2, n_edges),
            "edge_shift": (n_edges, 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise DataError(f"expected shape {shape}, got {got}", field=name)
        for f in self.SCHEMA:
            value = getattr(self, f.name)
            if f.dtype != "float" and value.dtype != _torch_dtype(f, value.dtype):
                raise DataError(f"expected dtype {_torch_dtype(f, value.dtype)}, "
                                f"got {value.dtype}", field=f.name)
            if f.dtype == "float" and not value.is_floating_point():
                raise DataError(f"expected a floating dtype, got {value.dtype}", field=f.name)

    def edge_vectors(
        self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Edge vectors ``r_ij = r_j - r_i + S @ cell`` in Å, shape ``(n_edges, 3)``.

        Args:
            positions: ``(n_atoms, 3)`` positions to use instead of ``self.positions``
                (e.g. strained positions that require grad).
            cell: ``(n_systems, 3, 3)`` cell to use instead of ``self.cell``.

        """
        pos = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        i, j = self.edge_index
        edge_cell = cell[self.system_idx[i]]  # (n_edges, 3, 3)
        shift = torch.einsum("ek,ekc->ec", self.edge_shift.to(pos.dtype), edge_cell)
        return pos[j] - pos[i] + shift  # (n_edges, 3)

    @classmethod
    def from_atoms(
        cls,
        atoms: Atoms | Sequence[Atoms],
        cutoff: float,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        min_distance: float = 0.1,
    ) -> AtomicGraph:
        """Build a batched graph from ASE structures.

        Args:
            atoms: one `ase.Atoms` or a sequence of them.
            cutoff: neighbour-list cutoff in Å.
            dtype: float dtype of positions, cell and charge.
            device: device of the returned tensors.
            min_distance: two atoms closer than this (Å) raise `DataError`.

        Raises:
            DataError: non-finite positions, singular periodic cell, overlapping atoms;
                the message names the structure (``atoms.info["source"]`` when present).

        """
        frames = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        if not frames:
            raise DataError("no structures given")
        parts = [_single_graph(a, k, cutoff, min_distance) for k, a in enumerate(frames)]
        return collate(parts).to(device=device, dtype=dtype)


def _frame_origin(atoms: Atoms, k: int) -> tuple[str | None, int]:
    source = atoms.info.get("source")
    # "frame_index" is the frame's index in its file (set by `nnip.data.read`);
    # "source_index" in curated data sets points to an upstream source instead.
    return (str(source) if source is not None else None, int(atoms.info.get("frame_index", k)))


def _single_graph(atoms: Atoms, k: int, cutoff: float, min_distance: float) -> AtomicGraph:
    source, index = _frame_origin(atoms, k)
    pos = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if len(atoms) == 0:
        raise DataError("structure has no atoms", source=source, index=index, field="positions")
    if not np.isfinite(cell).all():
        raise DataError("non-finite cell", source=source, index=index, field="cell")
    edge_index, edge_shift = neighbor_list(pos, cell, pbc, cutoff, source=source, index=index)
    if edge_index.shape[1]:
        vec = pos[edge_index[1]] - pos[edge_index[0]] + edge_shift @ cell
        dist = np.linalg.norm(vec, axis=1)
        closest = int(np.argmin(dist))
        if dist[closest] < min_distance:
            a, b = edge_index[:, closest]
            raise DataError(f"atoms {a} and {b} are {dist[closest]:.3g} Å apart (less than "
                            f"{min_distance} Å): atoms on top of each other", source=source,
                            index=index, field="positions")
    n = len(atoms)
    return AtomicGraph(
        positions=torch.from_numpy(pos),
        atomic_numbers=torch.from_numpy(np.asarray(atoms.numbers, dtype=np.int64)),
        system_idx=torch.zeros(n, dtype=torch.int64),
        cell=torch.from_numpy(cell).unsqueeze(0),
        pbc=torch.from_numpy(pbc).unsqueeze(0),
        total_charge=torch.tensor([float(atoms.info.get("total_charge", 0.0))],
                                  dtype=torch.float64),
        edge_index=torch.from_numpy(edge_index),
        edge_shift=torch.from_numpy(edge_shift),
    )


@dataclass(frozen=True, eq=False)
class Targets(_Batch):
    """Reference labels of a batch, with masks for missing ones.

    Missing labels are zero-filled and flagged ``False`` in the matching ``has_*`` mask,
    so a frame without stress still trains on energy and forces.

    Attributes:
        energy: ``(n_systems,)`` eV, total energy.
        forces: ``(n_atoms, 3)`` eV/Å.
        stress: ``(n_systems, 3, 3)`` eV/Å^3, ASE sign (positive is tensile).
        charges: ``(n_atoms,)`` e, reference partial charges.
        weight: ``(n_systems,)`` per-structure loss weight.
        has_energy, has_forces, has_stress, has_charges: ``(n_systems,)`` bool masks.

    """

    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    charges: torch.Tensor
    weight: torch.Tensor
    has_energy: torch.Tensor
    has_forces: torch.Tensor
    has_stress: torch.Tensor
    has_charges: torch.Tensor

    SCHEMA = TARGET_FIELDS

    @property
    def n_atoms(self) -> int:
        """Number of atoms in the batch."""
        return int(self.forces.shape[0])

    @property
    def n_systems(self) -> int:
        """Number of structures in the batch."""
        return int(self.energy.shape[0])

    @classmethod
    def from_atoms(
        cls,
        atoms: Atoms | Sequence[Atoms],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        charges_key: str = "ref_charges",
    ) -> Targets:
        """Collect labels from structures read by `nnip.data.read`.

        Energy, forces and stress come from ``atoms.calc.results`` (ASE's single-point
        calculator), weights from ``atoms.info["weight"]`` (default 1), reference charges
        from ``atoms.arrays[charges_key]``.
        """
        frames = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        parts = [_single_targets(a, k, charges_key) for k, a in enumerate(frames)]
        return cls(**_concat(parts)).to(device=device, dtype=dtype)


def _single_targets(atoms: Atoms, k: int, charges_key: str) -> Targets:
    source, index = _frame_origin(atoms, k)
    results: dict[str, Any] = dict(atoms.calc.results) if atoms.calc is not None else {}
    n = len(atoms)

    def label(name: str, shape: tuple[int, ...], value: Any) -> tuple[torch.Tensor, bool]:
        if value is None:
            return torch.zeros(shape, dtype=torch.float64), False
        arr = np.asarray(value, dtype=np.float64)
        if name == "stress" and arr.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            arr = voigt_6_to_full_3x3_stress(arr)
        if arr.size != int(np.prod(shape)):
            raise DataError(f"expected shape {shape}, got {arr.shape}", source=source,
                            index=index, field=name)
        if not np.isfinite(arr).all():
            raise DataError("non-finite value", source=source, index=index, field=name)
        return torch.from_numpy(arr.reshape(shape).copy()), True

    energy, has_e = label("energy", (1,), results.get("energy"))
    forces, has_f = label("forces", (n, 3), results.get("forces"))
    stress, has_s = label("stress", (1, 3, 3), results.get("stress"))
    charges, has_q = label("charges", (n,), atoms.arrays.get(charges_key))
    weight = float(atoms.info.get("weight", 1.0))
    if not (np.isfinite(weight) and weight >= 0):
        raise DataError(f"weight must be finite and >= 0, got {weight}", source=source,
                        index=index, field="weight")
    flag = lambda b: torch.tensor([b])  # noqa: E731
    return Targets(energy=energy, forces=forces, stress=stress, charges=charges,
                   weight=torch.tensor([weight], dtype=torch.float64),
                   has_energy=flag(has_e), has_forces=flag(has_f), has_stress=flag(has_s),
                   has_charges=flag(has_q))


def collate(parts: Sequence[T]) -> T:
    """Concatenate graphs (or targets) into one batch, offsetting index fields.

    Args:
        parts: batches of the same class, each already a batch of one or more structures.

    Returns:
        One batch holding every structure of ``parts`` in order.

    """
    if not parts:
        raise DataError("cannot collate an empty list of structures")
    if len(parts) == 1:
        return parts[0]
    return type(parts[0])(**_concat(parts))


def replace(batch: T, **changes: Any) -> T:
    """Return a copy of a graph or targets with some fields replaced (no mutation)."""
    return dataclasses.replace(batch, **changes)

"""Neighbour lists from vesin.

`neighbor_list` returns every ordered pair ``(i, j)`` with ``|r_ij| < cutoff`` together
with the integer lattice shift ``S`` of the image of ``j``, using ASE's formula

    r_ij = positions[j] - positions[i] + S @ cell

(``cell`` rows are lattice vectors). It handles fully periodic, mixed (slabs, wires) and
non-periodic systems, skewed cells, and cells smaller than twice the cutoff, where an
atom sees its own periodic images (``i == j`` with ``S != 0``). Pairs of an atom with
itself at zero shift are never returned.

vesin (Lumiere/vesin) is ~30x faster than ``ase.neighborlist.neighbor_list`` on 1k atoms.
"""

from __future__ import annotations

import numpy as np
import torch
import vesin

from nnip.errors import DataError

__all__ = ["batch_neighbor_list", "neighbor_list", "pair_distances"]


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    source: str | None = None,
    index: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list of one structure.

    Args:
        positions: ``(n_atoms, 3)`` Cartesian positions in Å.
        cell: ``(3, 3)`` lattice vectors as rows in Å (ignored along non-periodic axes).
        pbc: ``(3,)`` bool, periodicity along each lattice vector.
        cutoff: cutoff radius in Å (> 0).
        source: file name for error messages.
        index: structure index for error messages.

    Returns:
        ``edge_index`` ``(2, n_edges)`` int64 (row 0 centre ``i``, row 1 neighbour ``j``)
        and ``edge_shift`` ``(n_edges, 3)`` int64 lattice shifts, sorted by ``i``.

    Raises:
        DataError: non-finite positions, or a periodic direction with a degenerate cell.

    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive (Å), got {cutoff}")
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(positions).all():
        bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise DataError(f"non-finite position of atom {bad}", source=source, index=index,
                        field="positions")
    if len(positions) == 0:
        empty = np.zeros((0,), dtype=np.int64)
        return np.stack([empty, empty]), np.zeros((0, 3), dtype=np.int64)
    box = _box_for_vesin(positions, cell, pbc, cutoff, source=source, index=index)
    calc = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = calc.compute(points=positions, box=box, periodic=pbc, quantities="ijS")
    order = np.lexsort((j, i))
    edge_index = np.stack([i[order], j[order]]).astype(np.int64)
    return edge_index, shifts[order].astype(np.int64)


def _box_for_vesin(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    source: str | None,
    index: int | None,
) -> np.ndarray:
    """Return the box vesin gets: the cell, checked along periodic axes.

    Along non-periodic axes vesin ignores the cell vector, but it still needs a
    non-singular box when any axis is periodic; a zero vector there (ASE's default for
    a slab without vacuum set) is replaced by a vector normal to the other two whose
    length exceeds the extent of the structure plus the cutoff, which gives no image.
    """
    if not pbc.any():
        return np.zeros((3, 3))
    lengths = np.linalg.norm(cell, axis=1)
    for axis in np.flatnonzero(pbc):
        if lengths[axis] < 1e-8:
            raise DataError(f"periodic along axis {axis} but lattice vector {axis} is zero",
                            source=source, index=index, field="cell")
    box = cell.copy()
    if abs(np.linalg.det(box)) < 1e-6 * max(lengths.max(), 1.0) ** 3:
        if pbc.all():
            raise DataError(f"singular cell (volume {np.linalg.det(cell):.3g} Å^3) with "
                            "periodic boundaries", source=source, index=index, field="cell")
        extent = np.ptp(positions, axis=0).max() + 2.0 * cutoff + 1.0
        for axis in np.flatnonzero(~pbc):
            a, b = box[(axis + 1) % 3], box[(axis + 2) % 3]
            normal = np.cross(a, b)
            if np.linalg.norm(normal) < 1e-8:  # two non-periodic axes: any orthogonal frame
                normal = _orthogonal_to(box[pbc][0] if pbc.any() else np.eye(3)[0], axis)
            box[axis] = extent * normal / np.linalg.norm(normal)
        if abs(np.linalg.det(box)) < 1e-8:
            raise DataError("cell is degenerate along the periodic axes", source=source,
                            index=index, field="cell")
    return box


def _orthogonal_to(v: np.ndarray, salt: int) -> np.ndarray:
    """A unit vector orthogonal to ``v`` (deterministic, different for each ``salt``)."""
    trial = np.eye(3)[(int(np.argmin(np.abs(v))) + salt) % 3]
    w = np.cross(v, trial)
    if np.linalg.norm(w) < 1e-8:
        w = np.cross(v, np.eye(3)[(salt + 1) % 3])
    return w / np.linalg.norm(w)


def pair_distances(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                   cutoff: float) -> np.ndarray:
    """Distances in Å of every directed pair within ``cutoff`` (both i-j and j-i).

    Args: as `neighbor_list`. Returns ``(n_edges,)`` float64.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    ij, shift = neighbor_list(positions, cell, pbc, cutoff)
    return np.linalg.norm(positions[ij[1]] - positions[ij[0]] + shift @ cell, axis=1)


def batch_neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    system_idx: torch.Tensor,
    cutoff: float,
    *,
    source: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full neighbour lists of a batch of structures (vesin, on the CPU).

    Args:
        positions: ``(n_atoms, 3)`` Å (any device; not differentiated).
        cell: ``(n_systems, 3, 3)`` Å, lattice vectors as rows.
        pbc: ``(n_systems, 3)`` bool.
        system_idx: ``(n_atoms,)`` int64, sorted structure index of each atom.
        cutoff: cutoff radius in Å.
        source: name for error messages (structure ``k`` is named by its index).

    Returns:
        ``edge_index`` ``(2, n_edges)`` int64 with batch-wide atom indices and
        ``edge_shift`` ``(n_edges, 3)`` int64, on the device of ``positions``.
    """
    pos = positions.detach().cpu().numpy()
    cells = cell.detach().cpu().numpy()
    periodic = pbc.cpu().numpy()
    idx = system_idx.cpu().numpy()
    index, shift, offset = [], [], 0
    for k in range(cells.shape[0]):
        sel = np.flatnonzero(idx == k)
        ei, es = neighbor_list(pos[sel], cells[k], periodic[k], cutoff, source=source, index=k)
        index.append(ei + offset)
        shift.append(es)
        offset += len(sel)
    device = positions.device
    return (torch.as_tensor(np.concatenate(index, axis=1), device=device),
            torch.as_tensor(np.concatenate(shift), device=device))

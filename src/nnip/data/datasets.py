"""Training datasets: structures with cached neighbour lists, or streamed from disk.

For structures in memory, neighbour lists are computed once per structure (vesin) when
the dataset is built and reused every epoch; a batch is collated from the cached
per-structure graphs. For an on-disk store (`nnip.data.store.FrameStore`) nothing is
cached: each batch reads its structures and builds their neighbour lists, so memory
does not grow with the data set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from nnip.data.graph import AtomicGraph, Targets, collate

__all__ = ["StructureDataset", "batches_by_atoms"]

_NEIGHBOUR_SAMPLE = 2000  # structures of a store sampled for the mean neighbour count


class StructureDataset:
    """Labelled structures as cached single-structure graphs and targets.

    Args:
        frames: structures with labels (as returned by `nnip.data.read`).
        cutoff: neighbour cutoff in Å.
        progress: show a progress bar while building neighbour lists.
    """

    def __init__(self, frames: Sequence[Atoms], cutoff: float, *, progress: bool = False
                 ) -> None:
        self.cutoff = float(cutoff)
        self.streamed = hasattr(frames, "n_atoms_each")  # a FrameStore
        self.frames = frames if self.streamed else list(frames)
        self.graphs: list[AtomicGraph] = []
        self.targets: list[Targets] = []
        if self.streamed:
            self.atom_counts = np.asarray(frames.n_atoms_each, dtype=np.int64)
            self.edge_counts = None  # unknown until each neighbour list is built
            return
        iterator = self.frames
        if progress and len(self.frames) > 50:
            from rich.progress import track

            iterator = track(self.frames, description="neighbour lists", transient=True)
        for k, atoms in enumerate(iterator):
            self.graphs.append(AtomicGraph.from_atoms(_indexed(atoms, k), self.cutoff))
            self.targets.append(Targets.from_atoms(_indexed(atoms, k)))
        self.atom_counts = np.array([g.n_atoms for g in self.graphs], dtype=np.int64)
        self.edge_counts = np.array([g.n_edges for g in self.graphs], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frames)

    def _parts(self, indices: Sequence[int]) -> tuple[list[AtomicGraph], list[Targets]]:
        if not self.streamed:
            return [self.graphs[i] for i in indices], [self.targets[i] for i in indices]
        frames = [self.frames[int(i)] for i in indices]
        return ([AtomicGraph.from_atoms(a, self.cutoff) for a in frames],
                [Targets.from_atoms(a) for a in frames])

    def batch(self, indices: Sequence[int], device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float64) -> tuple[AtomicGraph, Targets]:
        """Collate structures ``indices`` into one batch on ``device``."""
        graphs, targets = self._parts(indices)
        return (collate(graphs).to(device=device, dtype=dtype),
                collate(targets).to(device=device))

    @property
    def n_atoms(self) -> int:
        """Total number of atoms."""
        return int(self.atom_counts.sum())

    def average_num_neighbors(self) -> float:
        """Mean number of neighbours within the cutoff per atom.

        Over all structures in memory; over a fixed random sample of 2000 structures of
        a store.
        """
        if self.streamed:
            n = len(self.frames)
            pick = np.sort(np.random.default_rng(0).choice(n, min(n, _NEIGHBOUR_SAMPLE),
                                                           replace=False))
            graphs, _ = self._parts(pick.tolist())
        else:
            graphs = self.graphs
        edges = sum(g.n_edges for g in graphs)
        atoms = sum(g.n_atoms for g in graphs)
        return max(edges / max(atoms, 1), 1.0)


def batches_by_atoms(order: Sequence[int], atom_counts: np.ndarray, max_atoms: int,
                     edge_counts: np.ndarray | None = None, max_edges: int = 0
                     ) -> list[list[int]]:
    """Cut an order of structures into consecutive batches within atom (and edge) budgets.

    A structure larger than a budget forms a batch of its own.

    Args:
        order: structure indices in the order they are visited.
        atom_counts: ``(n_structures,)`` atoms of each structure.
        max_atoms: atom budget of one batch (0: none).
        edge_counts: ``(n_structures,)`` neighbour-list edges of each structure.
        max_edges: edge budget of one batch (0: none).

    Returns:
        The batches, each a list of structure indices, in ``order``.
    """
    budgets = [(atom_counts, max_atoms), (edge_counts, max_edges)]
    budgets = [(np.asarray(c), m) for c, m in budgets if m > 0 and c is not None]
    batches: list[list[int]] = []
    current: list[int] = []
    filled = [0] * len(budgets)
    for i in order:
        sizes = [int(c[i]) for c, _ in budgets]
        if current and any(f + n > m for f, n, (_, m) in zip(filled, sizes, budgets)):
            batches.append(current)
            current, filled = [], [0] * len(budgets)
        current.append(int(i))
        filled = [f + n for f, n in zip(filled, sizes)]
    if current:
        batches.append(current)
    return batches


def _indexed(atoms: Atoms, k: int) -> Atoms:
    """Give a frame its index for error messages when it has no source information."""
    if "frame_index" in atoms.info:
        return atoms
    atoms = atoms.copy()
    atoms.info["frame_index"] = k
    return atoms

"""In-memory datasets of structures with cached neighbour lists.

Neighbour lists are computed once per structure (vesin) when the dataset is built and
reused every epoch; a batch is collated from the cached per-structure graphs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase import Atoms

from nnip.data.graph import AtomicGraph, Targets, collate

__all__ = ["StructureDataset"]


class StructureDataset:
    """Labelled structures as cached single-structure graphs and targets.

    Args:
        frames: structures with labels (as returned by `nnip.data.read`).
        cutoff: neighbour cutoff in Å.
        progress: show a progress bar while building neighbour lists.
    """

    def __init__(self, frames: Sequence[Atoms], cutoff: float, *, progress: bool = False
                 ) -> None:
        self.frames = list(frames)
        self.cutoff = float(cutoff)
        self.graphs: list[AtomicGraph] = []
        self.targets: list[Targets] = []
        iterator = self.frames
        if progress and len(self.frames) > 50:
            from rich.progress import track

            iterator = track(self.frames, description="neighbour lists", transient=True)
        for k, atoms in enumerate(iterator):
            self.graphs.append(AtomicGraph.from_atoms(_indexed(atoms, k), self.cutoff))
            self.targets.append(Targets.from_atoms(_indexed(atoms, k)))

    def __len__(self) -> int:
        return len(self.frames)

    def batch(self, indices: Sequence[int], device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float64) -> tuple[AtomicGraph, Targets]:
        """Collate structures ``indices`` into one batch on ``device``."""
        graph = collate([self.graphs[i] for i in indices]).to(device=device, dtype=dtype)
        targets = collate([self.targets[i] for i in indices]).to(device=device)
        return graph, targets

    @property
    def n_atoms(self) -> int:
        """Total number of atoms."""
        return sum(g.n_atoms for g in self.graphs)

    def average_num_neighbors(self) -> float:
        """Mean number of neighbours within the cutoff per atom."""
        edges = sum(g.n_edges for g in self.graphs)
        return max(edges / max(self.n_atoms, 1), 1.0)


def _indexed(atoms: Atoms, k: int) -> Atoms:
    """Give a frame its index for error messages when it has no source information."""
    if "frame_index" in atoms.info:
        return atoms
    atoms = atoms.copy()
    atoms.info["frame_index"] = k
    return atoms

"""Structures, labels, batching and neighbour lists.

`read` turns any supported file into a list of `ase.Atoms` with labels;
`AtomicGraph.from_atoms` and `Targets.from_atoms` turn those into batched tensors.
"""

from nnip.data.graph import AtomicGraph, Targets, collate
from nnip.data.io import read, require_labels, write
from nnip.data.neighbors import neighbor_list

__all__ = ["AtomicGraph", "Targets", "collate", "neighbor_list", "read", "require_labels",
           "write"]

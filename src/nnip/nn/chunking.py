"""Message sums over edges, optionally in memory-bounded chunks (large structures).

A message-passing layer computes per-edge messages ``m_e`` (tensors of width ~3-10 × the
feature size per edge) and sums them onto each edge's centre atom. For inference of a
large structure, the tensors that autograd keeps for the forces dominate memory: PaiNN
64×3 keeps ~16 kB per edge, 0.7 MB per atom at 40 neighbours, i.e. 70 GB for 100k atoms.
`aggregate` can instead cut the edges (sorted by centre) into chunks of whole atoms: the
forward pass keeps only each chunk's node-level sums, and the backward pass recomputes
one chunk's messages at a time and differentiates them (activation checkpointing by
chunk). Memory then grows by tens of kB per atom (node features, radial bases), and the
results are the same sums, to rounding.

Chunking is off unless switched on by `edge_chunks`, as `Potential` does for inference
(`auto_chunk`); it is never used inside ``torch.compile`` or ``torch.export`` graphs, nor
for training (``create_graph``: the chunks' backward pass gives no weight gradients and
cannot be differentiated again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["AUTO_EDGES", "CHUNK_EDGES", "aggregate", "auto_chunk", "chunked", "edge_chunks"]

# Inference of structures with more than AUTO_EDGES edges sums messages in chunks of
# about CHUNK_EDGES edges (whole atoms). On a CPU that is faster as well as smaller: the
# chunks' edge tensors stay in cache (PaiNN 64x3 float32, 1 thread, energy+forces+stress
# of 16k Cu atoms: 38 -> 5.9 s and 11.8 -> 1.5 GB; 108k atoms in 41 s and 5.3 GB;
# benchmarks/speed/README.md). On a GPU only where memory demands it (not measured yet).
CHUNK_EDGES = {"cpu": 8_192, "cuda": 1_048_576}
AUTO_EDGES = {"cpu": 16_384, "cuda": 4_194_304}


def auto_chunk(n_edges: int, device: torch.device) -> int | None:
    """Edges per chunk for inference of a graph of ``n_edges`` edges on ``device``.

    ``None`` (no chunking) for graphs below `AUTO_EDGES` of the device type.
    """
    kind = "cuda" if device.type == "cuda" else "cpu"
    return CHUNK_EDGES[kind] if n_edges > AUTO_EDGES[kind] else None


class _State:
    """The chunk size in force (edges), or ``None``.

    A plain global, which graph capture sees as a constant (``None`` in every graph).
    """

    chunk: int | None = None


_STATE = _State()


@contextmanager
def edge_chunks(n_edges: int | None) -> Iterator[None]:
    """Within the block, `aggregate` sums messages in chunks of about ``n_edges`` edges.

    Args:
        n_edges: edges per chunk (rounded to whole centre atoms); ``None`` switches
            chunking off.
    """
    if n_edges is not None and n_edges < 1:
        raise ValueError(f"edge chunk size must be >= 1, got {n_edges}")
    previous, _STATE.chunk = _STATE.chunk, n_edges
    try:
        yield
    finally:
        _STATE.chunk = previous


def chunked(n_edges: int) -> bool:
    """Whether `aggregate` sums the messages of a graph of ``n_edges`` edges in chunks."""
    return _STATE.chunk is not None and n_edges > _STATE.chunk


def aggregate(
    messages: Callable[..., Sequence[torch.Tensor]],
    centres: torch.Tensor,
    neighbours: torch.Tensor,
    n_nodes: int,
    edge_inputs: Sequence[torch.Tensor],
    node_inputs: Sequence[torch.Tensor] = (),
) -> list[torch.Tensor]:
    """Sum per-edge messages onto their centre atoms.

    Args:
        messages: ``messages(*edge_rows, *neighbour_rows) -> [m_1, m_2, ...]`` with each
            ``m_k`` of shape ``(n, ...)`` for the ``n`` edges it is given: the rows of
            ``edge_inputs`` and of ``node_inputs`` gathered at the edges' neighbours.
            A pure function of its arguments and the module's weights (chunked, it is
            called again in the backward pass).
        centres: ``(n_edges,)`` int64 centre atom of each edge (row 0 of ``edge_index``),
            sorted when chunking is on (as `nnip.data.neighbors` returns it).
        neighbours: ``(n_edges,)`` int64 neighbour atom of each edge (row 1).
        n_nodes: rows of the sums.
        edge_inputs: float tensors with ``n_edges`` rows (radial bases, unit vectors).
        node_inputs: float tensors with ``n_nodes`` rows, gathered at ``neighbours``.

    Returns:
        ``[s_1, s_2, ...]`` with ``s_k`` of shape ``(n_nodes, ...)``:
        ``s_k[a] = Σ_{e: centres[e] = a} m_k[e]``.
    """
    chunk = _STATE.chunk
    if not chunked(centres.shape[0]):
        parts = messages(*edge_inputs, *(x[neighbours] for x in node_inputs))
        return [m.new_zeros((n_nodes, *m.shape[1:])).index_add(0, centres, m) for m in parts]
    return list(_ChunkedSum.apply(messages, centres, neighbours, n_nodes, chunk,
                                  len(edge_inputs), *edge_inputs, *node_inputs))


def _bounds(centres: torch.Tensor, n_nodes: int, chunk: int) -> list[tuple[int, int, int, int]]:
    """``(a, b, lo, hi)`` per chunk: centre atoms ``a:b`` own edges ``lo:hi``."""
    if bool((centres[1:] < centres[:-1]).any()):
        raise ValueError("chunked message sums need edges sorted by centre atom "
                         "(edge_index[0]); build graphs with AtomicGraph.from_atoms")
    # CSR offsets: the edges of atom a are ptr[a]:ptr[a + 1]; chunks end at whole atoms
    ptr = torch.searchsorted(centres, torch.arange(n_nodes + 1, device=centres.device))
    targets = torch.arange(chunk, centres.shape[0], chunk, device=centres.device)
    cuts = torch.searchsorted(ptr, targets, right=True) - 1
    atoms = sorted({0, n_nodes, *cuts.tolist()})
    edges = ptr[atoms].tolist()
    return list(zip(atoms[:-1], atoms[1:], edges[:-1], edges[1:]))


class _ChunkedSum(torch.autograd.Function):
    """`aggregate` chunk by chunk; the backward pass recomputes each chunk's messages.

    First derivatives only (forces, stress), with respect to the float inputs; the
    weights used inside ``messages`` get no gradient (inference).
    """

    @staticmethod
    def forward(ctx: Any, messages: Callable[..., Sequence[torch.Tensor]],
                centres: torch.Tensor, neighbours: torch.Tensor, n_nodes: int, chunk: int,
                n_edge_inputs: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bounds = _bounds(centres, n_nodes, chunk)
        edge_inputs, node_inputs = inputs[:n_edge_inputs], inputs[n_edge_inputs:]
        pieces: list[list[torch.Tensor]] = []
        for a, b, lo, hi in bounds:
            nb = neighbours[lo:hi]
            parts = messages(*(t[lo:hi] for t in edge_inputs),
                             *(x[nb] for x in node_inputs))
            local = centres[lo:hi] - a
            pieces.append([m.new_zeros((b - a, *m.shape[1:])).index_add_(0, local, m)
                           for m in parts])
        ctx.messages, ctx.bounds, ctx.n_edge_inputs = messages, bounds, n_edge_inputs
        ctx.save_for_backward(centres, neighbours, *inputs)
        return tuple(torch.cat(rows) for rows in zip(*pieces))

    @staticmethod
    def backward(ctx: Any, *grad_sums: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: derivatives of forces (training)
            raise RuntimeError("chunked message sums (nnip.nn.chunking) give first "
                               "derivatives only; evaluate without edge_chunks to "
                               "differentiate forces again (training)")
        centres, neighbours, *inputs = ctx.saved_tensors
        wanted = ctx.needs_input_grad[6:]
        grads = [torch.zeros_like(x) if w else None for x, w in zip(inputs, wanted)]
        n_edge = ctx.n_edge_inputs
        for _, _, lo, hi in ctx.bounds:
            nb = neighbours[lo:hi]
            with torch.enable_grad():
                leaves = [t[lo:hi].detach().requires_grad_(w)
                          for t, w in zip(inputs[:n_edge], wanted[:n_edge])]
                leaves += [x.detach()[nb].requires_grad_(w)
                           for x, w in zip(inputs[n_edge:], wanted[n_edge:])]
                parts = ctx.messages(*leaves)
                # d(sum at centre a)/d(message e) = 1 for a = centres[e]
                grad_parts = [g[centres[lo:hi]] for g in grad_sums]
                needed = [x for x in leaves if x.requires_grad]
                if not needed:
                    continue
                found = iter(torch.autograd.grad(parts, needed, grad_parts,
                                                 allow_unused=True))
            for k, leaf in enumerate(leaves):
                if not leaf.requires_grad:
                    continue
                g = next(found)
                if g is None:
                    continue
                if k < n_edge:
                    grads[k][lo:hi] = g
                else:
                    grads[k].index_add_(0, nb, g)
        return (None, None, None, None, None, None, *grads)

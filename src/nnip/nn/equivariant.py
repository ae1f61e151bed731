"""Building blocks shared by the e3nn models (NequIP-style and MACE-style).

- `EdgeEmbedding`: spherical harmonics of the edge direction, Bessel radial basis and
  smooth cutoff envelope of the edge length.
- `Convolution`: the equivariant point convolution
  ``m_i = Σ_j R(|r_ij|) f_cut(|r_ij|) · (Linear(h)_j ⊗ Y(r̂_ij)) / n_avg``
  (Thomas et al. 2018, tensor-field networks; NequIP and MACE use it as their message).
- `with_isolated_atoms`: node types extended by one edge-less node per element, whose
  output the models subtract so that a learned term vanishes for an isolated atom.
- `edge_pairs`: the two directions of each pair in a full neighbour list, so that the
  radial networks run once per pair instead of once per directed edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.chunking import aggregate, chunked
from nnip.nn.cutoff import CUTOFFS
from nnip.nn.radial import BesselBasis

__all__ = ["EdgeEmbedding", "Convolution", "edge_pairs", "with_isolated_atoms"]


class EdgeEmbedding(nn.Module):
    """Per-edge inputs of an equivariant convolution.

    Args:
        irreps_sh: irreps of the spherical harmonics (e.g. ``1x0e+1x1o+1x2e``).
        cutoff: radial cutoff in Å.
        n_basis: Bessel radial basis functions.
        cutoff_fn: name of the cutoff envelope (key of `nnip.nn.cutoff.CUTOFFS`).

    Shapes:
        ``graph -> sh (n_edges, irreps_sh.dim), radial (n_edges, n_basis),
        envelope (n_edges,), slot None``; lengths in Å. With `pair_edges` (the default,
        except for chunked message sums), radial and envelope are those of the
        ``n_pairs`` representative edges of `edge_pairs` and ``slot (n_edges,)`` gives
        each edge's row in them.
    """

    def __init__(self, irreps_sh: o3.Irreps, cutoff: float, n_basis: int,
                 cutoff_fn: str) -> None:
        super().__init__()
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True,
                                                         normalization="component")
        self.basis = BesselBasis(cutoff, n_basis)
        self.envelope = CUTOFFS[cutoff_fn](cutoff)
        self.pair_edges = True
        """Radial features once per pair of edges (`edge_pairs`); ``False`` (static
        shapes: `nnip.models.potential.use_static_shapes`) once per edge."""

    def forward(self, graph: AtomicGraph
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Spherical harmonics, radial basis and envelope (of each pair when paired)."""
        vectors = graph.edge_vectors()  # (n_edges, 3)
        r = torch.linalg.vector_norm(vectors, dim=-1)  # (n_edges,)
        slot = None
        # not with chunked sums: a chunk's backward recomputes its own edges' radial weights
        if self.pair_edges and not chunked(graph.n_edges):
            first, slot = edge_pairs(graph.edge_index, graph.edge_shift, graph.n_atoms)
            r = r[first]  # (n_pairs,): |r_ij| = |r_ji|
        return self.spherical_harmonics(vectors), self.basis(r), self.envelope(r), slot


def edge_pairs(edge_index: torch.Tensor, edge_shift: torch.Tensor, n_atoms: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One representative edge for each pair ``(i, j, S)`` / ``(j, i, -S)``.

    A full neighbour list holds every pair twice, with the same length; a function of
    the length alone (the radial networks: ~20 % of a MACE-style call on 108 Cu atoms)
    need only be evaluated on one of the two: ``f(r[first])[slot] == f(r)``.
    An edge whose reverse is missing (a list built otherwise) represents itself.

    Args:
        edge_index: ``(2, n_edges)`` int64 centre and neighbour.
        edge_shift: ``(n_edges, 3)`` int64 lattice images.
        n_atoms: atoms in the batch (bound of ``edge_index``).

    Returns:
        ``first (n_pairs,)`` int64, the lower-numbered edge of each pair, and
        ``slot (n_edges,)`` int64, the row in ``first`` of each edge's pair.
    """
    with torch.no_grad():
        i, j = edge_index
        n_edges = i.shape[0]
        edges = torch.arange(n_edges, device=i.device)
        if n_edges == 0:
            return edges, edges
        smax = edge_shift.abs().max()
        base = 2 * smax + 1

        def key(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            image = ((s[:, 0] + smax) * base + s[:, 1] + smax) * base + s[:, 2] + smax
            # unique per (i, j, S); within int64 while n_atoms² · base³ < 9e18
            return (a * n_atoms + b) * base**3 + image

        keys, order = torch.sort(key(i, j, edge_shift))
        wanted = key(j, i, -edge_shift)  # the key of each edge's reverse
        at = torch.searchsorted(keys, wanted).clamp(max=n_edges - 1)
        reverse = torch.where(keys[at] == wanted, order[at], edges)
        is_first = edges <= reverse
        rank = torch.cumsum(is_first, 0) - 1
        return torch.nonzero(is_first).squeeze(1), torch.where(is_first, rank, rank[reverse])


def with_isolated_atoms(types: torch.Tensor, n_types: int, dtype: torch.dtype
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Append one edge-less node per element to the nodes of a graph.

    Args:
        types: ``(n_atoms,)`` element indices.
        n_types: number of elements.
        dtype: float dtype of the one-hot encoding.

    Returns:
        ``all_types (n_atoms + n_types,)`` and its one-hot ``(n_atoms + n_types,
        n_types)``; node ``n_atoms + t`` is an isolated atom of element ``t``.
    """
    all_types = torch.cat([types, torch.arange(n_types, device=types.device)])
    return all_types, torch.nn.functional.one_hot(all_types, n_types).to(dtype)


class Convolution(nn.Module):
    """Equivariant point convolution with radial-MLP path weights ("uvu" paths).

    For every input irrep ``i`` (multiplicity ``U``), spherical harmonic ``j`` and output
    irrep ``k`` in ``ir_i ⊗ ir_j`` that appears in ``irreps_target``, a path gives ``U``
    output channels, summed over the neighbours ``s`` of node ``t``:

        ``m_k[t, u, c] = Σ_s w[ts, path, u] · sqrt(2 l_k + 1)
                         · Σ_ab C^{l_i l_j l_k}_{abc} x_i[s, u, a] Y_j[ts, b] / n_avg``

    with ``C`` the Wigner 3j symbols (``e3nn.o3.wigner_3j``), ``x = Linear(h)`` and ``w``
    the radial MLP of the edge's Bessel features times its cutoff envelope: e3nn's
    ``TensorProduct`` with ``uvu`` instructions and default (component/element)
    normalization, followed by the sum over neighbours.

    It is evaluated without e3nn's per-path code, so that the cost stays proportional to
    the size of the messages: for every input irrep, the spherical harmonics are first
    contracted with the 3j symbols of all its paths (``(n_edges, K_i, d_i)``, small), one
    batched matrix product then gives all its paths at once as ``(n_edges, K_i, U)``
    (channels innermost), one multiplication applies the weights and one ``index_add``
    sums over neighbours; the blocks are rearranged into e3nn's layout on the nodes.

    Args:
        irreps_in: node feature irreps.
        irreps_sh: spherical harmonics irreps (multiplicity 1 each).
        irreps_target: keep only tensor-product outputs whose irrep appears here.
        n_basis: radial basis functions (input of the radial MLP).
        radial_hidden: widths of the radial MLP's hidden layers.
        avg_num_neighbors: the sum over neighbours is divided by this.

    Shapes:
        ``h (n_nodes, irreps_in.dim), sh (n_edges, sh.dim), radial (n_edges, n_basis),
        envelope (n_edges,), edge_index (2, n_edges) -> (n_nodes, irreps_out.dim)``;
        with ``slot (n_edges,)`` (`EdgeEmbedding` with ``paired=True``), radial and
        envelope have one row per pair and the radial MLP runs once per pair.
        ``irreps_out`` are the (unsimplified, sorted by irrep) irreps of the aggregated
        messages: the paths from input irrep ``i`` to output irrep ``k`` form one block
        ``(n_paths * U) x ir_k`` (channel ``path * U + u``).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps,
                 n_basis: int, radial_hidden: Sequence[int], avg_num_neighbors: float) -> None:
        super().__init__()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        targets = {ir for _, ir in o3.Irreps(irreps_target)}
        if any(mul != 1 for mul, _ in irreps_sh):
            raise ValueError(f"Convolution: irreps_sh must have multiplicity 1, got {irreps_sh}")
        self.linear_in = o3.Linear(irreps_in, irreps_in)
        # Paths grouped by (input irrep, output irrep): the spherical harmonics j of each.
        groups: list[tuple[int, o3.Irrep, list[int]]] = []
        for i, (mul, ir_in) in enumerate(irreps_in):
            by_out: dict[o3.Irrep, list[int]] = {}
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in targets:
                        by_out.setdefault(ir_out, []).append(j)
            if mul > 0:
                groups += [(i, ir_out, js) for ir_out, js in by_out.items()]
        # Output blocks sorted by irrep as Irreps.sort() does (then by input irrep), so
        # that simplify() merges all blocks of an irrep.
        order = sorted(range(len(groups)), key=lambda g: (groups[g][1], g))
        self.irreps_out = o3.Irreps([(len(groups[g][2]) * irreps_in[groups[g][0]].mul,
                                      groups[g][1]) for g in order])
        position = {g: n for n, g in enumerate(order)}
        # Per input irrep i with paths: _plan entry (i, U, d_i, n_paths, K_i, [(position in
        # irreps_out, n_paths, d_k) per group]); buffer cg_i (sh.dim, K_i * d_i) with
        # cg_i[b, (path, c), a] = sqrt(d_k) C_abc; buffer path_i (K_i,): the path of each
        # of the K_i output components (which radial weight multiplies it).
        self._plan: list[tuple[int, int, int, int, int, list[tuple[int, int, int]]]] = []
        sh_slices = irreps_sh.slices()
        for i, (mul, ir_in) in enumerate(irreps_in):
            mine = [g for g, (gi, _, _) in enumerate(groups) if gi == i]
            if not mine:
                continue
            k_total = sum(len(groups[g][2]) * groups[g][1].dim for g in mine)
            cg = torch.zeros(irreps_sh.dim, k_total, ir_in.dim, dtype=torch.float64)
            path_of: list[int] = []  # path index of every output component
            n_paths, blocks = 0, []
            for g in mine:
                _, ir_out, js = groups[g]
                for j in js:
                    w3j = o3.wigner_3j(ir_in.l, irreps_sh[j].ir.l, ir_out.l,
                                       dtype=torch.float64)  # (d_i, d_j, d_k)
                    cols = slice(len(path_of), len(path_of) + ir_out.dim)
                    cg[sh_slices[j], cols] = ir_out.dim ** 0.5 * w3j.permute(1, 2, 0)
                    path_of += [n_paths] * ir_out.dim
                    n_paths += 1
                blocks.append((position[g], len(js), ir_out.dim))
            # float64 (exact to ~1e-16) until the module is cast to the model's dtype
            self.register_buffer(f"cg_{i}", cg.reshape(irreps_sh.dim, -1), persistent=False)
            self.register_buffer(f"path_{i}", torch.tensor(path_of), persistent=False)
            self._plan.append((i, mul, ir_in.dim, n_paths, k_total, blocks))
        self._in_dims = [mul_ir.dim for mul_ir in irreps_in]
        # Radial weights: per input irrep, (n_paths, U) each.
        self._weight_sizes = [n_paths * mul for _, mul, _, n_paths, _, _ in self._plan]
        self.weight_numel = sum(self._weight_sizes)
        self.radial = e3nn_nn.FullyConnectedNet(
            [n_basis, *radial_hidden, self.weight_numel], torch.nn.functional.silu)
        self.norm = 1.0 / avg_num_neighbors

    def forward(self, h: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor,
                envelope: torch.Tensor, edge_index: torch.Tensor,
                slot: torch.Tensor | None = None) -> torch.Tensor:
        """Sum the messages of every node's neighbours (shapes in the class docstring)."""
        dst, src = edge_index
        n_nodes = h.shape[0]
        if slot is None:  # radial weights inside the messages (recomputed per chunk)
            sums = aggregate(self._messages, dst, src, n_nodes, (sh, radial, envelope),
                             (self.linear_in(h),))  # per input irrep (n_nodes, K_i * U)
        else:  # once per pair, then to both of its edges
            weights = self._radial_weights(radial, envelope)[slot]
            sums = aggregate(self._coupled, dst, src, n_nodes, (sh, weights),
                             (self.linear_in(h),))
        blocks: list[tuple[int, torch.Tensor]] = []  # (position in irreps_out, block)
        for agg, (_, mul, _, _, k_total, outs) in zip(sums, self._plan):
            parts = agg.view(n_nodes, k_total, mul).split([p * d for _, p, d in outs], 1)
            for (pos, p, d), part in zip(outs, parts):  # -> e3nn layout, on the nodes
                blocks.append((pos, part.reshape(n_nodes, p, d, mul).transpose(2, 3).reshape(
                    n_nodes, p * mul * d)))
        if not blocks:
            return h.new_zeros((n_nodes, 0))
        blocks.sort(key=lambda pb: pb[0])
        return torch.cat([b for _, b in blocks], 1) * self.norm  # (n_nodes, out.dim)

    def _messages(self, sh: torch.Tensor, radial: torch.Tensor, envelope: torch.Tensor,
                  x_src: torch.Tensor) -> list[torch.Tensor]:
        """Messages of ``n`` edges per input irrep ``(n, K_i * U)``.

        ``x_src`` is ``linear_in(h)`` of the edges' neighbours.
        """
        return self._coupled(sh, self._radial_weights(radial, envelope), x_src)

    def _radial_weights(self, radial: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """Path weights ``(n, weight_numel)`` of ``n`` edges (or pairs): MLP × envelope."""
        return self.radial(radial) * envelope.unsqueeze(-1)

    def _coupled(self, sh: torch.Tensor, radial_weights: torch.Tensor, x_src: torch.Tensor
                 ) -> list[torch.Tensor]:
        """`_messages` from the radial MLP's output ``(n, weight_numel)``."""
        n_edges = sh.shape[0]
        # Splits, not one slice per path: the backward of a split is one concatenation.
        weights = radial_weights.split(self._weight_sizes, 1)
        x = x_src.split(self._in_dims, 1)  # per input irrep (n, U*d_i)
        out = []
        for n, (i, mul, d_in, n_paths, k_total, _) in enumerate(self._plan):
            cg = getattr(self, f"cg_{i}").to(sh.dtype)  # no-op once cast with the model
            coupling = (sh @ cg).view(n_edges, k_total, d_in)  # (n, K_i, d_i)
            if d_in == 1:  # scalars: an outer product (faster than bmm)
                y = coupling * x[i].view(n_edges, 1, mul)  # (n, K_i, U)
            elif torch.compiler.is_compiling():
                # a sum of d_i broadcast products, which the compiler fuses with the
                # weights and the sum over neighbours (a bmm of (K_i, d_i) by (d_i, U)
                # blocks per edge is the largest single kernel of a compiled call)
                xi = x[i].view(n_edges, 1, mul, d_in)
                y = coupling[:, :, :1] * xi[..., 0]
                for a in range(1, d_in):
                    y = y + coupling[:, :, a:a + 1] * xi[..., a]
            else:
                y = torch.bmm(coupling, x[i].view(n_edges, mul, d_in).transpose(1, 2))
            w = weights[n].view(n_edges, n_paths, mul).index_select(1, getattr(self, f"path_{i}"))
            out.append((y * w).view(n_edges, k_total * mul))
        return out

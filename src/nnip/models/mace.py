"""MACE-style model: higher body-order equivariant messages by symmetric contraction.

I. Batatia, D. P. Kovács, G. N. C. Simm, C. Ortner, G. Csányi, "MACE: Higher order
equivariant message passing neural networks for fast and accurate force fields",
NeurIPS 2022; atomic cluster expansion: R. Drautz, Phys. Rev. B 99, 014104 (2019).
Irreps, tensor products and Wigner 3j symbols come from e3nn; the generalised
Clebsch-Gordan couplings of the product basis are built here in float64.

Each layer builds, per atom i and channel c, the one-particle basis (the "A" features)

    A_{i,c,lm} = Σ_j R_{c,l}(r_ij) Y_lm(r̂_ij) h_{j,c} / n_avg

then the many-body basis by a symmetric contraction of up to ``correlation`` copies of
A with element-dependent weights (MACE eq. 10-11),

    B_{i,c,LM} = Σ_{ν=1..N} Σ_η w^{(ν)}_{z_i,c,η} Σ_{lm} U^{(ν)}_{LM,η; lm_1..lm_ν} Π_k A_{i,c,lm_k}

where U^{(ν)} couples ν-fold symmetric products of A into irreps LM. New features are
``Linear(B) + SelfConnection(h, species)``; every layer adds a scalar readout to the
per-atom energy. The isolated-atom output of the network is subtracted, so the term
vanishes for isolated atoms (E(isolated atom) = E0).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from e3nn import o3
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.cutoff import CUTOFFS
from nnip.nn.embedding import TypeMap, head_minus_isolated, minus_isolated
from nnip.nn.equivariant import Convolution, EdgeEmbedding, with_isolated_atoms
from nnip.nn.mlp import MLP

__all__ = ["MACEConfig", "MACE", "SymmetricContraction"]

_LETTERS = "ijkl"


@dataclass
class MACEConfig:
    """Hyperparameters of the MACE-style model.

    Attributes:
        n_features: channels K (MACE's "128x0e" small model uses 128; 32-64 on CPU).
        l_max: highest order of the spherical harmonics and the A features (3 in MACE;
            2 is faster).
        hidden_l_max: highest order of the hidden node features (0: invariant
            messages between layers, 1: MACE's default equivariant model).
        correlation: body order of the product basis minus one (ν ≤ correlation; 3 in
            MACE, i.e. four-body messages).
        n_interactions: layers (2 in MACE).
        n_basis: Bessel radial basis functions.
        radial_hidden: width of the radial MLP hidden layers.
        cutoff_fn: ``polynomial`` (MACE, p = 5-6) or ``cosine``.
        avg_num_neighbors: A features are divided by this (data-derived).
    """

    n_features: int = 32
    l_max: int = 2
    hidden_l_max: int = 1
    correlation: int = 3
    n_interactions: int = 2
    n_basis: int = 8
    radial_hidden: int = 64
    cutoff_fn: str = "polynomial"
    avg_num_neighbors: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_features", "n_interactions", "n_basis", "radial_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"MACEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.l_max <= 3:
            raise ValueError(f"MACEConfig.l_max must be in 0..3, got {self.l_max}")
        if not 0 <= self.hidden_l_max <= self.l_max:
            raise ValueError(f"MACEConfig.hidden_l_max must be in 0..l_max ({self.l_max}), "
                             f"got {self.hidden_l_max}")
        if not 1 <= self.correlation <= 4:
            raise ValueError(f"MACEConfig.correlation must be in 1..4, got {self.correlation}")
        if self.cutoff_fn not in CUTOFFS:
            raise ValueError(f"MACEConfig.cutoff_fn {self.cutoff_fn!r} not in {sorted(CUTOFFS)}")
        if not self.avg_num_neighbors > 0:
            raise ValueError(f"MACEConfig.avg_num_neighbors must be > 0, got "
                             f"{self.avg_num_neighbors}")


def _irreps_up_to(l_max: int, mul: int = 1) -> o3.Irreps:
    """``mul`` copies of each l ≤ l_max with the parity of the spherical harmonics."""
    return o3.Irreps([(mul, (ell, (-1) ** ell)) for ell in range(l_max + 1)])


def symmetric_couplings(irreps_in: o3.Irreps, nu: int, irreps_out: o3.Irreps,
                        eps: float = 1e-9) -> list[tuple[o3.Irrep, torch.Tensor]]:
    """Equivariant maps from ν-fold *symmetric* products of ``irreps_in`` to ``irreps_out``.

    Built in float64 from Clebsch-Gordan (Wigner 3j) couplings along every intermediate
    path, symmetrised over permutations of the ν factors, and reduced to an orthonormal
    basis per output irrep (the generalised CG coefficients of ACE/MACE).

    Args:
        irreps_in: irreps of one factor (dimension d).
        nu: number of factors.
        irreps_out: wanted output irreps.
        eps: relative singular-value threshold for linear dependence.

    Returns:
        ``(irrep, C)`` pairs, ``C`` of shape ``(irrep.dim, d, ..., d)`` (ν times d), float64,
        normalised to ``sum(C**2) = irrep.dim``.
    """
    irreps_in = o3.Irreps(irreps_in)
    d = irreps_in.dim
    selectors = []
    for (_, ir), sl in zip(irreps_in, irreps_in.slices()):
        select = torch.zeros(ir.dim, d, dtype=torch.float64)
        select[:, sl] = torch.eye(ir.dim, dtype=torch.float64)
        selectors.append((ir, select))
    paths = list(selectors)  # ν = 1: the slice of each irrep
    for _ in range(nu - 1):  # couple one more factor along every path
        longer = []
        for ir_left, c_left in paths:
            for ir, select in selectors:
                for ir_out in ir_left * ir:
                    w = o3.wigner_3j(ir_left.l, ir.l, ir_out.l, dtype=torch.float64)
                    longer.append((ir_out, torch.einsum("abo,a...,bk->o...k", w, c_left, select)))
        paths = longer
    out = []
    for ir in sorted({ir for _, ir in o3.Irreps(irreps_out)}):
        group = [_symmetrise(c, nu) for ir_c, c in paths if ir_c == ir]
        if not group:
            continue
        flat = torch.stack(group).reshape(len(group), -1)  # (m, ir.dim * d**nu)
        _, sigma, vh = torch.linalg.svd(flat, full_matrices=False)
        for row in vh[sigma > eps * max(float(sigma.max()), 1.0)]:
            c = row.reshape(ir.dim, *([d] * nu))
            out.append((ir, c * (ir.dim / c.pow(2).sum()) ** 0.5))
    return out


def _symmetrise(c: torch.Tensor, nu: int) -> torch.Tensor:
    """Average of ``c (o, d, ..., d)`` over all permutations of its ν input indices."""
    perms = list(itertools.permutations(range(1, nu + 1)))
    return sum(c.permute(0, *p) for p in perms) / len(perms)


class SymmetricContraction(nn.Module):
    """Channel-wise symmetric contraction of A features into irreps (MACE eq. 10-11).

    The element- and channel-dependent weights are first folded into the couplings,
    ``W_ν[z, c, m, i..] = Σ_p w_ν[z, c, p] U_ν[p, m, i..]`` (cheap: per element, not per
    atom), and all orders are then contracted with A in one nested (Horner) pass,
    ``B = ((W_N·A + W_{N-1})·A + ...)·A``, so the cost per atom is
    ``K · dim(out) · d^N`` instead of ``K · n_paths · d^N``.

    Args:
        irreps_in: irreps of one channel of A (e.g. ``0e+1o+2e``).
        irreps_out: irreps of one channel of the output (e.g. ``0e+1o``).
        correlation: highest number ν of A factors.
        n_types: number of elements (weights depend on the centre's element).
        n_channels: number of channels K.

    Shapes:
        ``A (n_nodes, K, irreps_in.dim), types (n_nodes,) -> (n_nodes, K * irreps_out.dim)``
        in e3nn layout of ``K x irreps_out``.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, correlation: int,
                 n_types: int, n_channels: int) -> None:
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        self.correlation = correlation
        self.n_types = n_types
        self.gather_by_element = True
        """Contract each element's nodes only (eager default, cheapest); ``False``
        contracts all nodes with every element's weights and masks (n_types x the work,
        static shapes: what `nnip.export.compiled` traces)."""
        d, m = o3.Irreps(irreps_in).dim, self.irreps_out.dim
        # output blocks as plain ints (start, stop, dim): torch.compile guards no e3nn objects
        self._out_blocks = [(sl.start, sl.stop, ir.dim) for (_, ir), sl in
                            zip(self.irreps_out, self.irreps_out.slices())]
        self._out_dim = m
        offsets = dict(zip([str(ir) for _, ir in self.irreps_out],
                           [sl.start for sl in self.irreps_out.slices()]))
        self.weights = nn.ParameterList()
        for nu in range(1, correlation + 1):
            couplings = symmetric_couplings(irreps_in, nu, self.irreps_out)
            # Q[p, m, i..]: coupling p placed in the rows of its output irrep.
            q = torch.zeros(max(len(couplings), 1), m, *([d] * nu), dtype=torch.float64)
            for p, (ir, c) in enumerate(couplings):
                q[p, offsets[str(ir)]:offsets[str(ir)] + ir.dim] = c
            self.register_buffer(f"Q{nu}", q)
            n_paths = q.shape[0]
            self.weights.append(nn.Parameter(
                torch.randn(n_types, n_channels, n_paths) / n_paths**0.5))

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]  # noqa: ANN001
        # The couplings are exact in float64; a float32 model casts them where used.
        keep = {nu: getattr(self, f"Q{nu}") for nu in range(1, self.correlation + 1)}
        super()._apply(fn, recurse)
        for nu, q in keep.items():
            setattr(self, f"Q{nu}", q.to(device=getattr(self, f"Q{nu}").device))
        return self

    def forward(self, A: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Contract (shapes in the class docstring)."""
        k, d = A.shape[1], A.shape[2]
        # W[ν-1]: (n_types, K, M * d^(ν-1), d), the contracted index last
        W = [torch.einsum("zcp,pm...->zcm...", self.weights[nu - 1],
                          getattr(self, f"Q{nu}").to(A.dtype)).reshape(self.n_types, k, -1, d)
             for nu in range(1, self.correlation + 1)]
        n = A.shape[0]
        out = A.new_zeros((n, k, self._out_dim))  # (n_nodes, K, M)
        gather = self.gather_by_element and self.n_types > 1
        for z in range(self.n_types):
            if gather:  # only the nodes of element z (a data-dependent count)
                idx = torch.nonzero(types == z).squeeze(-1)
                rows = idx
                if torch.compiler.is_compiling():
                    # two padding rows (dropped below): the compiler must know that the
                    # count is not 1 to choose its matrix-product layout
                    rows = torch.cat([idx, idx.new_zeros(2)])
                a = A[rows].transpose(0, 1)  # (K, n_z, d)
            else:
                a = A.transpose(0, 1)  # (K, n, d)
            # channels first, so that every step is a batched product or a fused sum
            # without permutes (1.1-1.6x faster than an einsum over (n, K, ...) in eager)
            t = torch.matmul(a, W[-1][z].transpose(1, 2))  # (K, n, M * d^(N-1))
            for nu in range(self.correlation - 1, 0, -1):
                t = t.unflatten(-1, (-1, d)) + W[nu - 1][z].unsqueeze(1)
                t = (t * a.unsqueeze(2)).sum(-1)  # (K, n, M * d^(ν-1))
            t = t.transpose(0, 1)[:idx.shape[0]] if gather else t.transpose(0, 1)  # (n_z, K, M)
            if gather:
                out = out.index_copy(0, idx, t)
            elif self.n_types == 1:
                out = t
            else:  # every element's contraction on every node, kept where it applies
                out = out + (types == z).to(t.dtype)[:, None, None] * t
        return torch.cat([out[:, :, start:stop].reshape(n, k * dim)
                          for start, stop, dim in self._out_blocks],
                         dim=-1)  # (n_nodes, K * irreps_out.dim)


class MACELayer(nn.Module):
    """A-features, symmetric contraction, linear update and self-connection.

    Shapes:
        ``h (n_nodes, irreps_in.dim), one_hot (n_nodes, n_types), types (n_nodes,),
        sh (n_edges, sh.dim), radial (n_edges, n_basis), envelope (n_edges,),
        edge_index (2, n_edges) -> (n_nodes, irreps_out.dim)``; with ``slot``, radial
        and envelope per pair of edges (`nnip.nn.equivariant.Convolution`).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps,
                 n_types: int, config: MACEConfig) -> None:
        super().__init__()
        k = config.n_features
        self.k, self.irreps_sh = k, irreps_sh
        self._sh_dims = [ir.dim for _, ir in irreps_sh]
        self.conv = Convolution(irreps_in, irreps_sh, irreps_sh, config.n_basis,
                                [config.radial_hidden] * 2, config.avg_num_neighbors)
        irreps_mid = self.conv.irreps_out
        # A in K channels of every spherical-harmonic irrep: "K x 0e + K x 1o + ..."
        irreps_A = o3.Irreps([(k, ir) for _, ir in irreps_sh])
        self.linear_A = o3.Linear(irreps_mid.simplify(), irreps_A)
        single_out = o3.Irreps([(1, ir) for _, ir in irreps_out])
        self.product = SymmetricContraction(irreps_sh, single_out, config.correlation,
                                            n_types, k)
        self.linear_out = o3.Linear(o3.Irreps([(k, ir) for _, ir in single_out]), irreps_out)
        self.self_connection = o3.FullyConnectedTensorProduct(
            irreps_in, o3.Irreps(f"{n_types}x0e"), irreps_out)

    def _to_channels(self, x: torch.Tensor) -> torch.Tensor:
        """e3nn layout of ``K x (0e + 1o + ...)`` (sorted) -> ``(n_nodes, K, sh.dim)``."""
        blocks, start = [], 0
        for dim in self._sh_dims:  # plain ints: torch.compile need not guard e3nn objects
            width = self.k * dim
            blocks.append(x[:, start:start + width].reshape(-1, self.k, dim))
            start += width
        return torch.cat(blocks, dim=-1)

    def forward(self, h: torch.Tensor, one_hot: torch.Tensor, types: torch.Tensor,
                sh: torch.Tensor, radial: torch.Tensor, envelope: torch.Tensor,
                edge_index: torch.Tensor, slot: torch.Tensor | None = None) -> torch.Tensor:
        """Update node features (shapes in the class docstring)."""
        agg = self.conv(h, sh, radial, envelope, edge_index, slot)  # (n_nodes, mid.dim)
        A = self._to_channels(self.linear_A(agg))  # (n_nodes, K, sh.dim)
        B = self.product(A, types)  # (n_nodes, K * out.dim)
        return self.linear_out(B) + self.self_connection(h, one_hot)


class MACE(nn.Module):
    """MACE-style energy term: ``graph -> per-atom energy (n_atoms,)``.

    Outputs are of order one; `Scaled` turns them into eV.

    Args:
        type_map: the model's elements.
        cutoff: radial cutoff in Å.
        config: hyperparameters.
    """

    def __init__(self, type_map: TypeMap, cutoff: float, config: MACEConfig) -> None:
        super().__init__()
        c = config
        self.type_map = type_map
        self.n_types = type_map.n_types
        self.irreps_sh = _irreps_up_to(c.l_max)
        self.edges = EdgeEmbedding(self.irreps_sh, cutoff, c.n_basis, c.cutoff_fn)
        self.embedding = o3.Linear(o3.Irreps(f"{self.n_types}x0e"),
                                   o3.Irreps(f"{c.n_features}x0e"))
        irreps = o3.Irreps(f"{c.n_features}x0e")
        layers, readouts = [], []
        for t in range(c.n_interactions):
            last = t == c.n_interactions - 1
            out = _irreps_up_to(0 if last else c.hidden_l_max, c.n_features)
            layers.append(MACELayer(irreps, out, self.irreps_sh, self.n_types, c))
            readouts.append(o3.Linear(out, o3.Irreps("1x0e")) if not last else
                            MLP([c.n_features, max(c.n_features // 2, 1), 1], "silu"))
            irreps = out
        self.layers = nn.ModuleList(layers)
        self.readouts = nn.ModuleList(readouts)
        self.n_features = c.n_features

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in the model dtype."""
        return self.energies_and_extra(graph)[0]

    def energies_and_extra(self, graph: AtomicGraph, head: nn.Module | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-atom energies ``(n_atoms,)`` and ``head`` on the final scalar features.

        ``head`` maps ``(n, n_features) -> (n, k)`` (e.g. a charge readout sharing this
        network's representation); see `nnip.nn.embedding.head_minus_isolated`.
        """
        # radial features once per pair of edges i->j, j->i: slot (n_edges,), or None
        sh, radial, envelope, slot = self.edges(graph)
        types = self.type_map(graph.atomic_numbers)  # (n_atoms,)
        n_atoms = graph.n_atoms
        # One extra node per element, without edges: the isolated atom of that element.
        all_types, one_hot = with_isolated_atoms(types, self.n_types, sh.dtype)
        h = self.embedding(one_hot)  # (n_nodes, K)
        energy = h.new_zeros(h.shape[0])  # (n_nodes,)
        for layer, readout in zip(self.layers, self.readouts):
            h = layer(h, one_hot, all_types, sh, radial, envelope, graph.edge_index, slot)
            energy = energy + readout(h).squeeze(-1)
        # the last layer's features are scalars only (n_nodes, n_features)
        return (minus_isolated(energy, n_atoms, types),  # (n_atoms,)
                head_minus_isolated(head, h, n_atoms, types))

"""NequIP-style E(3)-equivariant interatomic potential on e3nn.

S. Batzner, A. Musaelian, L. Sun, M. Geiger, J. P. Mailoa, M. Kornbluth, N. Molinari,
T. E. Smidt, B. Kozinsky, "E(3)-equivariant graph neural networks for data-efficient and
accurate interatomic potentials", Nat. Commun. 13, 2453 (2022); irreps, tensor products
and gates from e3nn (M. Geiger, T. Smidt, arXiv:2207.09453).

Node features are direct sums of irreducible representations of O(3) (``l`` up to
``l_max``, both parities when ``parity`` is on). Each interaction layer

    m_i   = Σ_j  R(|r_ij|) f_cut(|r_ij|) · ( Linear(h)_j ⊗ Y(r̂_ij) ) / n_avg
    h_i  <- h_i + Gate( Linear(m_i) + SelfConnection(h_i, species_i) )

uses a "uvu" tensor product (every channel of every input irrep times every spherical
harmonic Y of the edge direction, for the output irreps among the hidden ones) whose
per-path, per-channel weights come from a radial MLP R of a Bessel basis
(`nnip.nn.equivariant.Convolution`), and an equivariant gated nonlinearity. The residual
``h_i + ...`` is taken where the layer's output irreps equal its input irreps (once
every hidden irrep is reachable; with both parities, from the fourth layer on).

Only outputs that can reach the energy are computed: the readout uses the even scalars
of the last layer, so the last layer computes only scalar (0e) messages and outputs (as
nequip does), the layer before it only irreps with a path to 0e (those of the spherical
harmonics: 0e, 1o, 2e, ...), and so on backwards (`needed_irreps`). The energy is the
same function of the remaining parameters as with every hidden irrep in every layer;
the dropped outputs and their weights would not affect it. (With 3 layers the odd-parity
irreps 0o, 1e, 2o then never appear; ``parity`` matters from 4 layers on.)
The per-atom energy is a scalar (0e) readout, minus the network's output for an
isolated atom of the same element, so the term vanishes for isolated atoms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.cutoff import CUTOFFS
from nnip.nn.embedding import TypeMap, head_minus_isolated, minus_isolated
from nnip.nn.equivariant import Convolution, EdgeEmbedding, with_isolated_atoms
from nnip.nn.mlp import MLP

__all__ = ["NequIPConfig", "NequIP"]


@dataclass
class NequIPConfig:
    """Hyperparameters of the NequIP-style model.

    Attributes:
        n_features: multiplicity of every irrep in the hidden features (32 in the
            paper's small models; raise for accuracy, lower for speed).
        l_max: highest rotation order of features and spherical harmonics (1 is fast,
            2 is the usual accuracy choice, 3 for the last meV).
        parity: keep both parities (full O(3)); ``False`` keeps only l with parity
            (-1)^l, which is cheaper. With up to 3 layers the other parities have no path
            to the energy and are not computed, so the two settings give the same model.
        n_interactions: interaction layers (receptive field n_interactions × cutoff).
        n_basis: Bessel radial basis functions (8 in the paper).
        radial_hidden: width of the radial MLP's hidden layers.
        radial_layers: hidden layers of the radial MLP.
        cutoff_fn: ``polynomial`` (paper, p = 6) or ``cosine``.
        avg_num_neighbors: messages are divided by this (data-derived).
    """

    n_features: int = 32
    l_max: int = 2
    parity: bool = True
    n_interactions: int = 3
    n_basis: int = 8
    radial_hidden: int = 64
    radial_layers: int = 2
    cutoff_fn: str = "polynomial"
    avg_num_neighbors: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_features", "n_interactions", "n_basis", "radial_hidden",
                     "radial_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"NequIPConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.l_max <= 4:
            raise ValueError(f"NequIPConfig.l_max must be in 0..4, got {self.l_max}")
        if self.cutoff_fn not in CUTOFFS:
            raise ValueError(f"NequIPConfig.cutoff_fn {self.cutoff_fn!r} not in {sorted(CUTOFFS)}")
        if not self.avg_num_neighbors > 0:
            raise ValueError(f"NequIPConfig.avg_num_neighbors must be > 0, got "
                             f"{self.avg_num_neighbors}")


def hidden_irreps(n_features: int, l_max: int, parity: bool) -> o3.Irreps:
    """Hidden feature irreps: ``n_features`` copies of each (l, p) up to ``l_max``."""
    parities = (1, -1) if parity else None
    out = []
    for ell in range(l_max + 1):
        for p in (parities or ((-1) ** ell,)):
            out.append((n_features, (ell, p)))
    return o3.Irreps(out)


def layer_irreps(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps
                 ) -> o3.Irreps:
    """Output irreps of an interaction layer (scalars first, the gate's layout).

    Those of ``irreps_target`` that some tensor-product path ``irreps_in ⊗ irreps_sh``
    reaches.
    """
    reached = {ir for mul, a in o3.Irreps(irreps_in) if mul > 0
               for _, b in o3.Irreps(irreps_sh) for ir in a * b}
    kept = [(mul, ir) for mul, ir in o3.Irreps(irreps_target) if ir in reached]
    return o3.Irreps([x for x in kept if x[1].l == 0] + [x for x in kept if x[1].l > 0])


def needed_irreps(hidden: o3.Irreps, irreps_sh: o3.Irreps, n_features: int,
                  n_interactions: int) -> list[o3.Irreps]:
    """The irreps of ``hidden`` that each layer's output needs to have.

    The readout uses only the even scalars of the last layer; a layer's output irrep
    matters only if a tensor-product path (through the spherical harmonics) leads from
    it to an irrep the next layer needs (the self-connection and the residual keep
    irreps, and ``irreps_sh`` contains ``0e``). Other outputs would not change the energy.
    """
    needed = [o3.Irreps(f"{n_features}x0e")]
    for _ in range(n_interactions - 1):
        after = {ir for _, ir in needed[0]}
        needed.insert(0, o3.Irreps([(mul, ir) for mul, ir in hidden
                                    if any(x in after for _, b in irreps_sh for x in ir * b)]))
    return needed


class Interaction(nn.Module):
    """One NequIP interaction block (convolution, self-connection, gate, residual).

    The residual adds to every output irrep the input's channels of the same irrep;
    by default it is on when ``irreps_out == irreps_in``.

    Args:
        irreps_in: input node irreps.
        irreps_target: the irreps the output is drawn from (those of the hidden irreps
            that the next layers need).
        irreps_sh: spherical harmonics irreps.
        n_types: number of elements (for the self-connection).
        config: hyperparameters.
        residual: add the residual (``None``: when ``irreps_out == irreps_in``); needs
            every output irrep in the input with the same multiplicity.

    Shapes:
        ``h (n_nodes, irreps_in.dim), one_hot (n_nodes, n_types), sh (n_edges, sh.dim),
        radial (n_edges, n_basis), envelope (n_edges,), edge_index (2, n_edges)
        -> (n_nodes, irreps_out.dim)``; with ``slot``, radial and envelope per pair of
        edges (`nnip.nn.equivariant.Convolution`).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_target: o3.Irreps, irreps_sh: o3.Irreps,
                 n_types: int, config: NequIPConfig, residual: bool | None = None) -> None:
        super().__init__()
        self.irreps_in = irreps_in
        self.conv = Convolution(irreps_in, irreps_sh, irreps_target, config.n_basis,
                                [config.radial_hidden] * config.radial_layers,
                                config.avg_num_neighbors)
        irreps_mid = self.conv.irreps_out
        reachable = o3.Irreps([(m, ir) for m, ir in irreps_target
                               if any(ir == x for _, x in irreps_mid)])
        scalars = o3.Irreps([(m, ir) for m, ir in reachable if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in reachable if ir.l > 0])
        gates = o3.Irreps([(m, "0e") for m, _ in gated])
        # Odd scalars need an odd activation (tanh) to keep parity; even ones use SiLU.
        act = {1: torch.nn.functional.silu, -1: torch.tanh}
        self.gate = e3nn_nn.Gate(scalars, [act[ir.p] for _, ir in scalars],
                                 gates, [torch.sigmoid] * len(gates), gated)
        self.linear_out = o3.Linear(irreps_mid.simplify(), self.gate.irreps_in)
        self.self_connection = o3.FullyConnectedTensorProduct(
            irreps_in, o3.Irreps(f"{n_types}x0e"), self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.residual = self.irreps_out == irreps_in if residual is None else residual
        self._residual_all = self.irreps_out == irreps_in  # the residual is h itself
        if self.residual and not self._residual_all:
            where = {ir: (mul, sl) for (mul, ir), sl in zip(irreps_in, irreps_in.slices())}
            if any(where.get(ir, (None,))[0] != mul for mul, ir in self.irreps_out):
                raise ValueError(f"Interaction: no residual from {irreps_in} to "
                                 f"{self.irreps_out}")
            index = torch.cat([torch.arange(where[ir][1].start, where[ir][1].stop)
                               for _, ir in self.irreps_out])
            self.register_buffer("residual_index", index, persistent=False)

    def forward(self, h: torch.Tensor, one_hot: torch.Tensor, sh: torch.Tensor,
                radial: torch.Tensor, envelope: torch.Tensor, edge_index: torch.Tensor,
                slot: torch.Tensor | None = None) -> torch.Tensor:
        """Update node features (shapes in the class docstring)."""
        agg = self.conv(h, sh, radial, envelope, edge_index, slot)  # (n_nodes, mid.dim)
        out = self.gate(self.linear_out(agg) + self.self_connection(h, one_hot))
        if self.residual:
            out = out + (h if self._residual_all else h.index_select(1, self.residual_index))
        return out  # (n_nodes, irreps_out.dim)


class NequIP(nn.Module):
    """NequIP-style energy term: ``graph -> per-atom energy (n_atoms,)``.

    Outputs are of order one; `Scaled` turns them into eV.

    Args:
        type_map: the model's elements.
        cutoff: radial cutoff in Å.
        config: hyperparameters.
    """

    def __init__(self, type_map: TypeMap, cutoff: float, config: NequIPConfig) -> None:
        super().__init__()
        c = config
        self.type_map = type_map
        self.n_types = type_map.n_types
        self.irreps_sh = o3.Irreps.spherical_harmonics(c.l_max)
        self.edges = EdgeEmbedding(self.irreps_sh, cutoff, c.n_basis, c.cutoff_fn)
        self.embedding = o3.Linear(o3.Irreps(f"{self.n_types}x0e"),
                                   o3.Irreps(f"{c.n_features}x0e"))
        hidden = hidden_irreps(c.n_features, c.l_max, c.parity)
        # Every layer computes only the outputs that reach the energy: the last one only
        # its even scalars (as in nequip), the one before only irreps coupling to them
        # (0e, 1o, 2e, ...), and so on. The residual is where a layer computing all the
        # reachable hidden irreps ("full") would have input irreps == output irreps.
        needed = needed_irreps(hidden, self.irreps_sh, c.n_features, c.n_interactions)
        irreps = full = o3.Irreps(f"{c.n_features}x0e")
        layers = []
        for target in needed:
            full_out = layer_irreps(full, self.irreps_sh, hidden)
            layer = Interaction(irreps, target, self.irreps_sh, self.n_types, c,
                                residual=full_out == full)
            layers.append(layer)
            irreps, full = layer.irreps_out, full_out
        self.interactions = nn.ModuleList(layers)
        self.to_scalars = o3.Linear(irreps, o3.Irreps(f"{c.n_features}x0e"))
        self.readout = MLP([c.n_features, max(c.n_features // 2, 1), 1], "silu")

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
        _, one_hot = with_isolated_atoms(types, self.n_types, sh.dtype)
        h = self.embedding(one_hot)  # (n_nodes, n_features)
        for layer in self.interactions:
            h = layer(h, one_hot, sh, radial, envelope, graph.edge_index, slot)
        scalars = self.to_scalars(h)  # (n_nodes, n_features)
        energy = self.readout(scalars).squeeze(-1)  # (n_nodes,)
        return (minus_isolated(energy, n_atoms, types),  # (n_atoms,)
                head_minus_isolated(head, scalars, n_atoms, types))

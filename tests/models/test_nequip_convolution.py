"""The equivariant convolution of the NequIP-style (and MACE-style) models.

`nnip.nn.equivariant.Convolution` evaluates the "uvu" tensor product itself (one batched
product per input irrep instead of e3nn's per-path code); here it is compared with
e3nn's ``TensorProduct`` on the same inputs and weights.
"""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule
from e3nn import o3

from nnip.data.graph import AtomicGraph
from nnip.models import build
from nnip.nn.equivariant import Convolution, edge_pairs


def _e3nn_messages(conv: Convolution, irreps_in: o3.Irreps, irreps_sh: o3.Irreps,
                   targets: set[o3.Irrep], x: torch.Tensor, sh: torch.Tensor,
                   weights: list[torch.Tensor]) -> torch.Tensor:
    """Per-edge messages of e3nn's TensorProduct, in the layout of ``conv.irreps_out``."""
    n_edges = x.shape[0]
    mid, instructions, path_weights, members = [], [], [], {}
    for n, (i, mul, _, n_paths, _, outs) in enumerate(conv._plan):
        by_out: dict[o3.Irrep, list[int]] = {}
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in irreps_in[i].ir * ir_sh:
                if ir_out in targets:
                    by_out.setdefault(ir_out, []).append(j)
        w = weights[n].view(n_edges, n_paths, mul)
        path = 0
        for (position, _, _), (ir_out, js) in zip(outs, by_out.items(), strict=True):
            for j in js:
                members.setdefault(position, []).append(len(mid))
                instructions.append((i, j, len(mid), "uvu", True))
                mid.append((mul, ir_out))
                path_weights.append(w[:, path])
                path += 1
    mid = o3.Irreps(mid)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn's 3j constants in float64
    try:
        tp = o3.TensorProduct(irreps_in, irreps_sh, mid, instructions,
                              shared_weights=False, internal_weights=False)
    finally:
        torch.set_default_dtype(default)
    out = tp(x, sh, torch.cat(path_weights, 1))
    per_path = [out[:, sl].view(n_edges, mul, ir.dim) for (mul, ir), sl in zip(mid, mid.slices())]
    return torch.cat([torch.cat([per_path[k] for k in members[position]], 1).reshape(n_edges, -1)
                      for position in range(len(conv.irreps_out))], 1)


@pytest.mark.parametrize("irreps_in", ["4x0e", "3x0e+2x1o+2x2e+1x1e+2x0o", "2x0e+0x1o+3x1o"])
def test_nequip_convolution_matches_e3nn_tensor_product(irreps_in):
    torch.manual_seed(0)
    irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps.spherical_harmonics(2)
    target = o3.Irreps("0e+0o+1o+1e+2e+2o")
    conv = Convolution(irreps_in, irreps_sh, target, 4, [8], 1.0).double()
    n_edges = 11
    h = torch.randn(n_edges, irreps_in.dim, dtype=torch.float64)
    sh = torch.randn(n_edges, irreps_sh.dim, dtype=torch.float64)
    radial = torch.randn(n_edges, 4, dtype=torch.float64)
    envelope = torch.rand(n_edges, dtype=torch.float64)
    src = torch.randint(0, n_edges, (n_edges,))
    # every edge into its own node: the aggregated messages are the messages
    out = conv(h, sh, radial, envelope, torch.stack([torch.arange(n_edges), src]))
    assert out.shape == (n_edges, conv.irreps_out.dim)
    assert conv.irreps_out == conv.irreps_out.sort().irreps  # sorted: simplify() merges
    weights = (conv.radial(radial) * envelope[:, None]).split(conv._weight_sizes, 1)
    expected = _e3nn_messages(conv, irreps_in, irreps_sh, {ir for _, ir in target},
                              conv.linear_in(h)[src], sh, list(weights))
    assert (out - expected).abs().max() < 1e-12 * (1 + expected.abs().max())


def test_nequip_convolution_sums_over_neighbours_without_edges_too():
    irreps_in, irreps_sh = o3.Irreps("3x0e+3x1o"), o3.Irreps.spherical_harmonics(1)
    conv = Convolution(irreps_in, irreps_sh, irreps_in, 4, [8], 2.0).double()
    h = torch.randn(3, irreps_in.dim, dtype=torch.float64)
    edges = torch.tensor([[0, 0, 1], [1, 2, 0]])
    sh = torch.randn(3, irreps_sh.dim, dtype=torch.float64)
    radial, envelope = torch.randn(3, 4, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    out = conv(h, sh, radial, envelope, edges)
    one = [conv(h, sh[k:k + 1], radial[k:k + 1], envelope[k:k + 1], edges[:, k:k + 1])
           for k in range(3)]
    assert torch.allclose(out, sum(one), atol=1e-13)
    assert out[2].abs().max() == 0
    empty = conv(h, sh[:0], radial[:0], envelope[:0], edges[:, :0])
    assert empty.shape == out.shape and empty.abs().max() == 0


def _nequip(n_interactions: int):
    model = build("nequip", elements=["Cu", "Ni"], cutoff=4.0, e0={"Cu": 0.0, "Ni": 0.0},
                  scale=1.0, seed=0, n_features=4, l_max=2, n_interactions=n_interactions)
    return next(m for m in model.modules() if type(m).__name__ == "NequIP")


def test_nequip_layers_compute_only_the_irreps_that_reach_the_energy():
    first, middle, last = _nequip(3).interactions
    assert str(first.irreps_out) == "4x0e+4x1o+4x2e"
    assert str(middle.irreps_out) == "4x0e+4x1o+4x2e"  # 1e, 2o have no path to 0e
    assert str(last.conv.irreps_out.simplify()) == "12x0e"  # 0e x 0e, 1o x 1o, 2e x 2e
    assert str(last.irreps_out) == "4x0e"
    # the residual where the layers with every hidden irrep had it: none with 3 layers
    assert [layer.residual for layer in (first, middle, last)] == [False, False, False]
    layers = _nequip(5).interactions
    assert [str(layer.irreps_out) for layer in layers] == [
        "4x0e+4x1o+4x2e", "4x0e+4x1e+4x1o+4x2e+4x2o", "4x0e+4x1e+4x1o+4x2e+4x2o",
        "4x0e+4x1o+4x2e", "4x0e"]
    assert [layer.residual for layer in layers] == [False, False, False, True, True]


@pytest.mark.parametrize("n_interactions", [1, 3, 4])
def test_nequip_every_parameter_affects_the_energy(n_interactions):
    from ase.build import bulk

    from nnip.data.graph import AtomicGraph

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.2, seed=3)
    atoms.numbers[::3] = 28
    net = _nequip(n_interactions).double()
    graph = AtomicGraph.from_atoms(atoms, 4.0, dtype=torch.float64)
    named = [(n, p) for n, p in net.named_parameters() if n != "readout.2.bias"]
    grads = torch.autograd.grad(net(graph).sum(), [p for _, p in named], allow_unused=True)
    dead = {n: int((g == 0).sum()) if g is not None else p.numel()
            for (n, p), g in zip(named, grads)}
    # (the readout's last bias cancels against the isolated atoms' energies)
    assert {n: k for n, k in dead.items() if k} == {}


def test_nequip_convolution_first_and_second_derivatives():
    # forces are first derivatives; training on forces needs the second ones
    torch.manual_seed(1)
    irreps_in, irreps_sh = o3.Irreps("2x0e+1x1o+1x2e"), o3.Irreps.spherical_harmonics(2)
    conv = Convolution(irreps_in, irreps_sh, o3.Irreps("0e+1o+1e+2e"), 3, [4], 3.0).double()
    edges = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
    h = torch.randn(3, irreps_in.dim, dtype=torch.float64, requires_grad=True)
    sh = torch.randn(4, irreps_sh.dim, dtype=torch.float64, requires_grad=True)
    radial = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    envelope = torch.rand(4, dtype=torch.float64, requires_grad=True)

    def f(h, sh, radial, envelope):
        return conv(h, sh, radial, envelope, edges)

    assert torch.autograd.gradcheck(f, (h, sh, radial, envelope))
    assert torch.autograd.gradgradcheck(f, (h, sh, radial, envelope))


def _pair_frames() -> list:
    small = bulk("Cu", "fcc", a=3.6)  # one atom: it sees its own periodic images
    small.rattle(0.05, seed=1)
    skewed = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    skewed.set_cell(skewed.cell.array + [[0, 0.4, 0.2], [0.3, 0, 0], [0, 0, 0]],
                    scale_atoms=True)  # triclinic
    skewed.rattle(0.05, seed=2)
    skewed.numbers[::3] = 28
    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=3)
    return [small, skewed, mol]


def test_edge_pairs_maps_both_directions_of_a_pair_to_one_row():
    graph = AtomicGraph.from_atoms(_pair_frames(), 4.5)
    first, slot = edge_pairs(graph.edge_index, graph.edge_shift, graph.n_atoms)
    assert 2 * first.shape[0] == graph.n_edges  # a full list: every pair twice
    assert torch.equal(slot[first], torch.arange(first.shape[0]))
    counts = torch.bincount(slot)
    assert bool((counts == 2).all())
    # the two edges of a row are each other's reverse: i <-> j and S -> -S
    i, j = graph.edge_index
    order = torch.argsort(slot, stable=True)
    a, b = order[0::2], order[1::2]
    assert torch.equal(i[a], j[b]) and torch.equal(j[a], i[b])
    assert torch.equal(graph.edge_shift[a], -graph.edge_shift[b])
    r = graph.edge_vectors().norm(dim=-1)
    assert torch.allclose(r[a], r[b], rtol=0, atol=1e-12)
    # a list without the reverse edges (built otherwise): each edge represents itself
    half = i < j
    first, slot = edge_pairs(graph.edge_index[:, half], graph.edge_shift[half], graph.n_atoms)
    assert torch.equal(first, torch.arange(int(half.sum()))) and torch.equal(slot, first)
    empty = torch.zeros((2, 0), dtype=torch.int64)
    first, slot = edge_pairs(empty, torch.zeros((0, 3), dtype=torch.int64), 3)
    assert first.shape == slot.shape == (0,)


@pytest.mark.parametrize("arch", ["mace", "nequip"])
def test_radial_networks_once_per_pair_give_the_same_energy_forces_and_stress(arch):
    frames = _pair_frames()[:2]
    model = build(arch, ["Cu", "Ni"], 4.5, dtype=torch.float64, n_features=8,
                  n_interactions=2, l_max=2, seed=0)
    graph = AtomicGraph.from_atoms(frames, 4.5)
    outputs = []
    for paired in (True, False):
        for module in model.modules():
            if hasattr(module, "pair_edges"):
                module.pair_edges = paired
        outputs.append(model(graph, compute_forces=True, compute_stress=True))
    paired, single = outputs
    for name in ("energy", "forces", "stress"):
        assert torch.allclose(getattr(paired, name), getattr(single, name), rtol=0,
                              atol=1e-12), name

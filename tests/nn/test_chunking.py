"""Chunked message sums (`nnip.nn.chunking`) give the unchunked numbers, for every
architecture and committees, and are used for inference only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from nnip.data.graph import AtomicGraph
from nnip.models import MODELS, Committee, build
from nnip.models.functional import FunctionalForces
from nnip.nn import chunking
from nnip.nn.chunking import aggregate, auto_chunk, edge_chunks

SMALL = {"schnet": {"n_features": 16, "n_basis": 12, "n_interactions": 2},
         "painn": {"n_features": 16, "n_basis": 8, "n_interactions": 3},
         "nequip": {"n_features": 6, "l_max": 2, "n_interactions": 2, "radial_hidden": 16},
         "mace": {"n_features": 6, "l_max": 2, "correlation": 3, "radial_hidden": 16,
                  "avg_num_neighbors": 20.0}}


def _model(arch: str, seed: int = 3):
    return build(arch, elements=["Cu", "Au"], cutoff=4.2, dtype=torch.float64,
                 e0={"Cu": -3.5, "Au": -2.25}, scale=0.7, seed=seed, **SMALL[arch])


def _structures() -> list[Atoms]:
    """A triclinic periodic alloy, and a cluster with an atom far from the others (an
    atom without edges in the middle of the batch)."""
    crystal = bulk("Cu", "fcc", a=3.7).repeat((3, 2, 2))
    crystal.set_cell(crystal.cell.array + np.array([[0, 0, 0], [0.4, 0, 0], [0.3, -0.2, 0]]),
                     scale_atoms=True)
    crystal.numbers[::3] = 79
    crystal.rattle(0.1, seed=1)
    cluster = Atoms("Cu4AuCu", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0], [0, 0, 2.3],
                                          [1.5, 1.5, 1.2], [30, 30, 30]])
    return [crystal, cluster]


def _max_diff(a, b) -> float:
    return float((a - b).detach().abs().max())


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_chunked_equals_unchunked(arch):
    model = _model(arch)
    graph = AtomicGraph.from_atoms(_structures(), model.cutoff)
    with edge_chunks(None):
        ref = model._evaluate(graph, True, True, False)
    for chunk in (1, 37, 500):  # one centre atom per chunk, many chunks, a few chunks
        with edge_chunks(chunk):
            out = model._evaluate(graph, True, True, False)
        assert _max_diff(out.energies, ref.energies) < 1e-12, chunk
        assert _max_diff(out.forces, ref.forces) < 1e-12, chunk
        assert _max_diff(out.stress[0], ref.stress[0]) < 1e-12, chunk
        assert torch.isnan(out.stress[1]).all()  # the cluster has no volume


def test_committee_spreads_chunked():
    committee = Committee([_model("painn", seed=s) for s in (1, 2, 3)])
    graph = AtomicGraph.from_atoms(_structures(), committee.cutoff)
    with edge_chunks(None):
        ref = committee._evaluate(graph, True, True, False)
    with edge_chunks(41):
        out = committee._evaluate(graph, True, True, False)
    for name in ("energy", "forces", "stress", "energy_uncertainty", "forces_uncertainty"):
        assert _max_diff(getattr(out, name)[0], getattr(ref, name)[0]) < 1e-12, name


def test_potential_chunks_large_graphs_for_inference_only(monkeypatch):
    model = _model("painn")
    graph = AtomicGraph.from_atoms(_structures(), model.cutoff)
    seen = []
    original = chunking._ChunkedSum.apply
    monkeypatch.setattr(chunking._ChunkedSum, "apply",
                        lambda *a: seen.append(a[4]) or original(*a))
    model(graph, compute_stress=True)
    assert not seen  # a small graph: no chunks
    monkeypatch.setitem(chunking.AUTO_EDGES, "cpu", 10)
    monkeypatch.setitem(chunking.CHUNK_EDGES, "cpu", 50)
    out = model(graph, compute_stress=True)
    assert seen and set(seen) == {50}  # inference of a "large" graph: chunked
    seen.clear()
    # training needs weight gradients through the forces: never chunked
    train = model(graph, compute_stress=True, training=True)
    assert not seen
    assert _max_diff(train.forces, out.forces) < 1e-12
    loss = (train.forces**2).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    # the compiled/functional path hands large inference graphs to the chunked one
    monkeypatch.setitem(__import__("nnip.models.functional", fromlist=["x"])
                        ._EAGER_ABOVE_EDGES, "cpu", 10)
    functional = FunctionalForces(model, compile=False)
    via = functional(graph, compute_stress=True, training=False)
    assert seen and _max_diff(via.forces, out.forces) == 0.0


def test_second_derivatives_through_chunks_are_refused():
    # documented limit: chunked sums are for forces/stress (inference); a second
    # derivative through them is refused rather than silently wrong
    model = _model("schnet")
    graph = AtomicGraph.from_atoms(_structures(), model.cutoff)
    with edge_chunks(20), pytest.raises(RuntimeError, match="first derivatives only"):
        model._evaluate(graph, True, False, True)  # forces with create_graph=True


def test_unsorted_edges_are_refused():
    centres = torch.tensor([0, 1, 0, 2])
    neighbours = torch.tensor([1, 0, 2, 0])
    x = torch.ones(3, 2, requires_grad=True)
    with edge_chunks(1), pytest.raises(ValueError, match="sorted by centre"):
        aggregate(lambda xj: [xj], centres, neighbours, 3, (), (x,))


def test_auto_chunk_thresholds():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_chunk(chunking.AUTO_EDGES["cpu"], cpu) is None
    assert auto_chunk(chunking.AUTO_EDGES["cpu"] + 1, cpu) == chunking.CHUNK_EDGES["cpu"]
    assert auto_chunk(chunking.AUTO_EDGES["cpu"] + 1, cuda) is None
    with pytest.raises(ValueError):
        with edge_chunks(0):
            pass


def test_large_crystal_matches_within_float32_rounding():
    # the case chunking is for: a crystal of many chunks, float32, auto-chunked by
    # the potential, against the unchunked evaluation of the same weights
    model = build("painn", elements=["Cu"], cutoff=5.0, dtype=torch.float32, seed=0,
                  n_features=32, n_interactions=2)
    atoms = bulk("Cu", cubic=True).repeat((6, 6, 6))
    atoms.rattle(0.05, seed=2)
    graph = AtomicGraph.from_atoms(atoms, model.cutoff)
    assert auto_chunk(graph.n_edges, torch.device("cpu")) is not None
    out = model(graph, compute_stress=True)
    with edge_chunks(None):
        ref = model._evaluate(graph, True, True, False)
    scale = float(ref.forces.abs().max())
    assert _max_diff(out.forces, ref.forces) < 1e-5 * scale
    assert abs(float(out.energy[0] - ref.energy[0])) < 1e-5 * abs(float(ref.energy[0]))


def test_md_batch_with_chunked_forces(monkeypatch):
    # the MD engine's skin neighbour lists (several systems in one batch) stay sorted by
    # centre, and trajectories with chunked forces equal the unchunked ones
    from nnip.md import MD, VelocityVerlet

    model = _model("painn")
    systems = [s.copy() for s in _structures()]

    def run():
        md = MD(model, [s.copy() for s in systems], VelocityVerlet(1.0),
                temperature_K=300, seed=4, progress=False)
        md.run(5)
        return md.state.positions.clone()

    reference = run()
    monkeypatch.setitem(chunking.AUTO_EDGES, "cpu", 10)
    monkeypatch.setitem(chunking.CHUNK_EDGES, "cpu", 64)
    assert _max_diff(run(), reference) < 1e-10

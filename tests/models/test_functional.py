"""`FunctionalForces`: torch.func derivatives equal the autograd ones, weights' grads too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from nnip.data.graph import AtomicGraph
from nnip.models import Committee, build
from nnip.models.functional import FunctionalForces


def _batch(symbol: str, cutoff: float) -> AtomicGraph:
    crystal = bulk(symbol, "fcc", a=3.6).repeat((2, 2, 2))
    crystal.rattle(0.05, seed=1)
    sheared = bulk(symbol, "fcc", a=3.7, cubic=True)
    sheared.set_cell(sheared.cell.array @ [[1, 0.05, 0], [0, 1, 0.1], [0.02, 0, 1]],
                     scale_atoms=True)
    sheared.rattle(0.05, seed=2)
    return AtomicGraph.from_atoms([crystal, sheared], cutoff)


def _loss(out) -> torch.Tensor:
    virial = 0.0 if out.virial is None else (out.virial ** 2).sum()
    return out.energy.sum() + (out.forces ** 2).sum() + virial


def _assert_same(model, out, reference, keys, tol, grad_tol):
    """``out`` equals ``reference`` in ``keys`` (rtol = atol = ``tol``), and a loss on
    each has the same gradient with respect to the weights (forces enter it):
    ``grad_tol`` = (rtol, atol)."""
    for key in keys:
        assert torch.allclose(getattr(out, key), getattr(reference, key), rtol=tol,
                              atol=tol), key
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(_loss(reference), params),
                    torch.autograd.grad(_loss(out), params)):
        assert torch.allclose(a, b, rtol=grad_tol[0], atol=grad_tol[1])


@pytest.mark.parametrize("arch, params", [
    ("schnet", {"n_features": 8, "n_interactions": 2}),
    ("painn", {"n_features": 8, "n_interactions": 2}),
    ("mace", {"n_features": 8, "n_interactions": 2, "l_max": 1}),
])
def test_functional_derivatives_equal_autograd_ones(arch, params):
    model = build(arch, ["Cu"], 4.0, zbl=True, seed=0, **params)
    graph = _batch("Cu", 4.0)
    reference = model(graph, compute_forces=True, compute_stress=True, training=True)
    out = FunctionalForces(model, compile=False)(graph, compute_stress=True)
    _assert_same(model, out, reference, ("energy", "energies", "forces", "virial", "stress"),
                 tol=1e-12, grad_tol=(1e-10, 1e-12))


def test_functional_path_keeps_predicted_charges():
    ethanol, water = molecule("CH3CH2OH"), molecule("H2O")
    water.info["total_charge"] = 0.0
    graph = AtomicGraph.from_atoms([ethanol, water], 4.0)
    model = build("painn", ["C", "H", "O"], 4.0, n_features=8, n_interactions=2,
                  electrostatics=True)
    reference = model(graph, compute_forces=True, training=True)
    out = FunctionalForces(model, compile=False)(graph)
    assert torch.allclose(out.charges, reference.charges, atol=1e-12)
    assert torch.allclose(out.forces, reference.forces, atol=1e-12)
    assert out.stress is None


@pytest.mark.parametrize("compile", [False, True])
def test_committee_mean_and_spreads_equal_the_committee_ones(compile):
    committee = Committee([build("painn", ["Cu"], 4.0, n_features=8, n_interactions=2,
                                 seed=k) for k in range(3)], calibration=1.7)
    graph = _batch("Cu", 4.0)
    reference = committee(graph, compute_forces=True, compute_stress=True)
    out = FunctionalForces(committee, compile=compile)(graph, compute_stress=True,
                                                       training=False)
    tol = 1e-10
    for key in ("energy", "energies", "forces", "stress", "energy_uncertainty",
                "forces_uncertainty"):
        assert torch.allclose(getattr(out, key), getattr(reference, key), rtol=tol,
                              atol=tol), key
    assert out.forces_uncertainty.min() > 0
    if compile:  # exploration MD with a compiled committee logs the members' spread
        from ase.build import bulk

        from nnip.md import MD, VelocityVerlet

        md = MD(committee, bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2),
                VelocityVerlet(2.0), temperature_K=600, progress=False, compile=True)
        md.run(3)
        assert md.functional.compiled and md.state.forces_uncertainty.shape == (32,)


def test_a_model_that_does_not_compile_falls_back_and_says_so(capsys, monkeypatch):
    def refuse(fn, **kwargs):
        def failing(*args):
            raise RuntimeError("no compiler here")
        return failing

    monkeypatch.setattr(torch, "compile", refuse)
    model = build("painn", ["Cu"], 4.0, n_features=8, n_interactions=2, seed=0)
    functional = FunctionalForces(model, compile=True)
    graph = _batch("Cu", 4.0)
    out = functional(graph, compute_stress=True)
    assert not functional.compiled and "no compiler here" in capsys.readouterr().err
    reference = model(graph, compute_forces=True, compute_stress=True)
    assert torch.allclose(out.forces, reference.forces, atol=1e-12)


def test_compiled_mace_style_model_equals_eager():
    # e3nn-based: its irreps bookkeeping is plain ints, so the compiler traces it
    model = build("mace", ["Cu", "Ni"], 4.0, n_features=8, n_interactions=2, l_max=1, seed=0)
    graph = _batch("Cu", 4.0)
    graph.atomic_numbers[::3] = 28  # two elements: the contraction without gathers
    reference = model(graph, compute_forces=True, compute_stress=True, training=True)
    functional = FunctionalForces(model, compile=True)
    out = functional(graph, compute_stress=True)
    assert functional.compiled
    _assert_same(model, out, reference, ("energy", "forces", "stress"), tol=1e-10,
                 grad_tol=(1e-9, 1e-10))


def test_compiled_mace_style_gathers_by_element_with_any_count():
    # compiled, the contraction still gathers each element's nodes (data-dependent counts):
    # one O atom, no N atom, then a batch with other counts reuses the compiled graph
    model = build("mace", ["H", "C", "N", "O"], 4.0, n_features=8, n_interactions=2,
                  l_max=1, seed=0)
    functional = FunctionalForces(model, compile=True)
    one = molecule("CH3CH2OH")
    one.rattle(0.05, seed=0)
    two = [one.copy(), molecule("H2O")]
    two[1].rattle(0.05, seed=1)
    for frames in ([one], two):
        graph = AtomicGraph.from_atoms(frames, 4.0)
        reference = model(graph, compute_forces=True, training=True)
        out = functional(graph)
        assert functional.compiled
        assert all(m.gather_by_element for m in model.modules()
                   if hasattr(m, "gather_by_element"))
        _assert_same(model, out, reference, ("energy", "forces"), tol=1e-10,
                     grad_tol=(1e-9, 1e-10))


def test_compiled_inference_in_the_calculator_and_md_equals_eager():
    from ase.build import bulk

    from nnip.calculators.ase import NNIPCalculator
    from nnip.md import MD, VelocityVerlet

    model = build("schnet", ["Cu"], 4.0, n_features=8, n_interactions=2, seed=1)
    compiled = NNIPCalculator(model, compile=True)
    eager = NNIPCalculator(model)
    for repeat in ((2, 2, 2), (3, 2, 2)):  # another size: no new compilation needed
        atoms = bulk("Cu", "fcc", a=3.6).repeat(repeat)
        atoms.rattle(0.05, seed=3)
        for prop in ("energy", "forces", "stress"):
            a, b = compiled.get_property(prop, atoms), eager.get_property(prop, atoms)
            assert np.abs(a - b).max() < 1e-10, prop
    assert compiled.functional is not None and compiled.functional.compiled
    start = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    runs = [MD(model, start, VelocityVerlet(2.0), temperature_K=600, progress=False,
               compile=flag) for flag in (False, True)]
    for md in runs:
        md.run(20)
    assert torch.allclose(runs[0].state.positions, runs[1].state.positions, atol=1e-10)
    assert runs[1].functional is not None


def test_compiles_vectorised_with_two_threads(capsys):
    # one structure of one element: torch 2.13's vectorised code generation failed on
    # scatters into (n_systems,) and (n_types,) buffers with more than one thread (nnip
    # then fell back to slower scalar code); the compiled graph has no such scatter now
    from ase.build import bulk

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = build("painn", ["Cu"], 4.0, n_features=8, n_interactions=2, seed=0).float()
        atoms = bulk("Cu", "fcc", a=3.6).repeat((3, 3, 3))
        atoms.rattle(0.05, seed=4)
        graph = AtomicGraph.from_atoms([atoms], 4.0)
        functional = FunctionalForces(model, compile=True)
        out = functional(graph, compute_stress=True, training=False)
    finally:
        torch.set_num_threads(threads)
    assert functional.compiled and "failed" not in capsys.readouterr().err
    reference = model(graph, compute_forces=True, compute_stress=True)
    assert torch.allclose(out.forces, reference.forces, atol=1e-4)
    assert torch.allclose(out.energy, reference.energy, rtol=1e-5)

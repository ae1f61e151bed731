"""AtomicGraph and Targets: construction, batching, dtype/device moves, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from nnip.data.graph import AtomicGraph, Targets, collate
from nnip.errors import DataError


def _labelled(atoms: Atoms, stress: bool = True) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def test_batch_offsets_and_edge_vectors():
    a = bulk("Cu", cubic=True)
    b = molecule("H2O")
    b.center(vacuum=3.0)
    single = [AtomicGraph.from_atoms(x, cutoff=3.0) for x in (a, b)]
    batch = AtomicGraph.from_atoms([a, b], cutoff=3.0)
    assert batch.n_systems == 2 and batch.n_atoms == len(a) + len(b)
    assert batch.system_idx.tolist() == [0] * len(a) + [1] * len(b)
    assert batch.n_edges == single[0].n_edges + single[1].n_edges
    np.testing.assert_array_equal(batch.edge_index[:, single[0].n_edges:].numpy(),
                                  single[1].edge_index.numpy() + len(a))
    r = batch.edge_vectors().norm(dim=1)
    assert (r < 3.0).all() and (r > 0.5).all()
    assert batch.atoms_per_system.tolist() == [len(a), len(b)]
    assert collate(single).edge_index.equal(batch.edge_index)


def test_to_casts_floats_only():
    graph = AtomicGraph.from_atoms(bulk("Cu"), cutoff=3.0)
    g32 = graph.to(dtype=torch.float32)
    assert g32.positions.dtype == torch.float32 and g32.cell.dtype == torch.float32
    assert g32.edge_index.dtype == torch.int64 and g32.pbc.dtype == torch.bool
    assert graph.positions.dtype == torch.float64, "to() must not modify the original"


def test_targets_masks_for_missing_labels():
    with_stress = _labelled(bulk("Cu", cubic=True))
    without = _labelled(bulk("Cu", cubic=True).repeat((1, 1, 2)), stress=False)
    without.info["weight"] = 2.5
    nolabel = bulk("Cu")
    t = Targets.from_atoms([with_stress, without, nolabel])
    assert t.has_energy.tolist() == [True, True, False]
    assert t.has_forces.tolist() == [True, True, False]
    assert t.has_stress.tolist() == [True, False, False]
    assert t.weight.tolist() == [1.0, 2.5, 1.0]
    assert t.forces.shape == (4 + 8 + 1, 3) and t.stress.shape == (3, 3, 3)
    np.testing.assert_allclose(t.stress[0].numpy(), with_stress.get_stress(voigt=False))
    assert torch.equal(t.stress[1], torch.zeros(3, 3))


def test_overlapping_atoms_are_an_error():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.01, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    atoms.info.update(source="bad.xyz", frame_index=7)
    with pytest.raises(DataError, match="bad.xyz, structure 7, field 'positions'.*on top"):
        AtomicGraph.from_atoms(atoms, cutoff=3.0)


def test_nan_position_and_singular_cell_are_errors():
    good = bulk("Cu")
    bad = bulk("Cu")
    bad.positions[0, 1] = np.inf
    with pytest.raises(DataError, match="structure 1, field 'positions'"):
        AtomicGraph.from_atoms([good, bad], cutoff=3.0)
    flat = Atoms("Cu", cell=[[1, 0, 0], [0, 1, 0], [1, 1, 0]], pbc=True)
    with pytest.raises(DataError, match="structure 0, field 'cell'"):
        AtomicGraph.from_atoms(flat, cutoff=3.0)


def test_non_finite_label_is_an_error():
    atoms = _labelled(bulk("Cu", cubic=True))
    forces = atoms.get_forces()
    forces[2, 0] = np.nan
    atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=forces)
    atoms.info["source"] = "f.xyz"
    with pytest.raises(DataError, match="f.xyz, structure 0, field 'forces': non-finite"):
        Targets.from_atoms(atoms)


def test_shape_validation_names_field():
    graph = AtomicGraph.from_atoms(bulk("Cu"), cutoff=3.0)
    fields = graph.items()
    fields["positions"] = fields["positions"][:, :2]
    with pytest.raises(DataError, match="field 'positions'"):
        AtomicGraph(**fields)

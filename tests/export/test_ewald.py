"""The Ewald sum that the compiled export and LAMMPS run, against nnip's own `Coulomb`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from nnip.data.graph import AtomicGraph, replace
from nnip.export._ewald import ewald, kvectors
from nnip.physics.electrostatics import Coulomb


def _cell():
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 3, 2))
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.1, 0], [0, 1, 0.05], [0.02, 0, 1.1]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=3)
    return atoms


@pytest.mark.parametrize("net_charge", [0.0, 1.3])
def test_potentials_forces_and_virial_are_the_derivatives_of_torchpme_energy(net_charge):
    """φ = dE/dq, F = -dE/dr, W = -dE/dε of nnip's torch-pme Ewald, charged cells too."""
    atoms, sigma = _cell(), 0.8
    q = np.random.default_rng(0).normal(size=len(atoms))
    q += (net_charge - q.sum()) / len(q)
    energy, phi, forces, virial = ewald(atoms.positions, q, atoms.cell.array, sigma)
    graph = AtomicGraph.from_atoms(atoms, 3.0)
    pos = graph.positions.clone().requires_grad_(True)
    strain = torch.zeros((3, 3), dtype=torch.float64, requires_grad=True)
    charges = torch.tensor(q, requires_grad=True)
    sym = 0.5 * (strain + strain.T)
    strained = replace(graph, positions=pos + pos @ sym, cell=graph.cell + graph.cell @ sym)
    reference = Coulomb(smearing=sigma, method="ewald")(strained, charges).sum()
    d_q, d_r, d_eps = torch.autograd.grad(reference, [charges, pos, strain])
    assert energy == pytest.approx(float(reference.detach()), rel=1e-9)
    assert np.abs(phi - d_q.numpy()).max() < 1e-8 * np.abs(phi).max()
    assert np.abs(forces + d_r.numpy()).max() < 1e-8 * np.abs(forces).max()
    assert np.abs(virial + d_eps.numpy()).max() < 1e-8 * np.abs(virial).max()
    assert energy == pytest.approx(0.5 * q @ phi, rel=1e-12)


def test_kvectors_are_one_of_each_pair_within_the_gaussians_reach():
    cell = _cell().cell.array
    k = kvectors(cell, 1.0, 1e-8)
    reach = np.sqrt(2 * np.log(1e8))
    assert np.linalg.norm(k, axis=1).max() <= reach
    both = np.concatenate([k, -k])
    assert len(np.unique(np.round(both, 9), axis=0)) == 2 * len(k)  # no ±k twice, no 0
    # a larger sphere holds every vector of the smaller one
    assert len(kvectors(cell, 1.0, 1e-12)) > len(k)

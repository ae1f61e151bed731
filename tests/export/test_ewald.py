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


def test_coulomb_matrix_is_the_linear_map_of_the_potentials():
    """φ = C q for any charges (charged cells: the background is in C), C symmetric."""
    from nnip.export._ewald import coulomb_matrix

    atoms, sigma = _cell(), 0.8
    matrix = coulomb_matrix(atoms.positions, atoms.cell.array, sigma)
    assert np.abs(matrix - matrix.T).max() < 1e-12 * np.abs(matrix).max()
    for seed, total in ((1, 0.0), (2, -2.1)):
        q = np.random.default_rng(seed).normal(size=len(atoms))
        q += (total - q.sum()) / len(q)
        energy, phi, _, _ = ewald(atoms.positions, q, atoms.cell.array, sigma)
        assert np.abs(matrix @ q - phi).max() < 1e-10 * np.abs(phi).max()
        assert 0.5 * q @ matrix @ q == pytest.approx(energy, rel=1e-10)


@pytest.mark.parametrize("charge_energy", [False, True])
@pytest.mark.parametrize("energy", ["coulomb", "full"])
def test_equilibrate_forces_and_virial_are_derivatives_of_its_energy(energy, charge_energy):
    """Finite differences of the equilibrated energy at fixed raw outputs q̃ (and psi =
    dE/dq̃): the adjoint (coulomb) and the stationarity (full) shortcuts are exact. With a
    charge energy ``E_q = Σ a_i q_i + c_i q_i³`` beside it (its gradient given to the
    solve), the forces, virial and psi are those of the sum."""
    from nnip.export._ewald import equilibrate

    atoms, sigma = _cell(), 0.8
    rng = np.random.default_rng(4)
    raw = rng.normal(scale=0.3, size=len(atoms))
    hardness = np.where(atoms.numbers == 11, 3.0, 6.0)
    lin, cub = rng.normal(scale=2.0, size=len(atoms)), rng.normal(scale=5.0, size=len(atoms))
    gradient = (lambda q: lin + 3 * cub * q**2) if charge_energy else None

    def run(positions, cell, raw=raw):
        out = equilibrate(positions, cell, raw, hardness, 0.7, sigma, 12.0, energy,
                          charge_gradient=gradient)
        if charge_energy:
            out["energy"] += float((lin * out["charges"] + cub * out["charges"]**3).sum())
        return out

    out = run(atoms.positions, atoms.cell.array)
    assert out["charges"].sum() == pytest.approx(0.7, abs=1e-12)
    if not charge_energy:
        assert out["energy"] == pytest.approx(out["energies"].sum(), rel=1e-12)
    else:  # the charge energy changes the forces by a real amount
        plain = equilibrate(atoms.positions, atoms.cell.array, raw, hardness, 0.7, sigma,
                            12.0, energy)
        assert np.abs(out["forces"] - plain["forces"]).max() > 1e-2
    h = 1e-5
    for atom, axis in ((0, 0), (5, 2), (17, 1)):
        shifted = [atoms.positions.copy(), atoms.positions.copy()]
        shifted[0][atom, axis] += h
        shifted[1][atom, axis] -= h
        fd = -(run(shifted[0], atoms.cell.array)["energy"] -
               run(shifted[1], atoms.cell.array)["energy"]) / (2 * h)
        assert out["forces"][atom, axis] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    for a, b in ((0, 0), (1, 2)):
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h
        plus = run(atoms.positions @ (np.eye(3) + eps), atoms.cell.array @ (np.eye(3) + eps))
        minus = run(atoms.positions @ (np.eye(3) - eps), atoms.cell.array @ (np.eye(3) - eps))
        fd = -(plus["energy"] - minus["energy"]) / (2 * h) / (1 if a == b else 2)
        assert out["virial"][a, b] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    for atom in (0, 9):
        dq = np.zeros(len(atoms))
        dq[atom] = h
        fd = (run(atoms.positions, atoms.cell.array, raw + dq)["energy"] -
              run(atoms.positions, atoms.cell.array, raw - dq)["energy"]) / (2 * h)
        assert out["psi"][atom] == pytest.approx(fd, rel=1e-6, abs=1e-9)

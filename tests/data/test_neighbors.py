"""vesin neighbour lists against ASE's reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from nnip.data.neighbors import neighbor_list
from nnip.errors import DataError


def _pairs(i, j, shifts):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(shifts).tolist())))


def _skewed(rng) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
    shear = np.array([[1.0, 0.3, -0.1], [0.2, 0.9, 0.25], [-0.15, 0.1, 1.1]])
    atoms.set_cell(atoms.cell.array @ shear, scale_atoms=True)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    return atoms


def _cases():
    rng = np.random.default_rng(0)
    skewed = _skewed(rng)
    outside = skewed.copy()
    outside.positions += np.array([7.3, -11.0, 4.2])  # atoms outside the cell, unwrapped
    small = bulk("Si", "diamond", a=5.43)  # 2 atoms, cell << 2 * cutoff
    tiny = Atoms("Li", cell=[[2.0, 0, 0], [0.9, 1.8, 0], [0.3, 0.4, 2.2]], pbc=True)
    slab = bulk("Al", "fcc", a=4.05, cubic=True) * (2, 2, 2)
    slab.pbc = (True, True, False)
    slab.center(vacuum=5.0, axis=2)
    slab_nocell = slab.copy()
    slab_nocell.cell[2] = 0.0  # zero vector along the non-periodic axis
    wire = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 3)
    wire.pbc = (False, False, True)
    wire.cell[0] = wire.cell[1] = 0.0
    mol = molecule("CH3CH2OH")
    mixed = _skewed(rng)
    mixed.pbc = (True, False, True)
    return {"skewed": skewed, "outside": outside, "small_cell": small, "tiny_triclinic": tiny,
            "slab": slab, "slab_zero_vector": slab_nocell, "wire": wire, "molecule": mol,
            "mixed_skewed": mixed}


@pytest.mark.parametrize("name", list(_cases()))
@pytest.mark.parametrize("cutoff", [2.1, 5.0, 7.5])
def test_matches_ase(name, cutoff):
    atoms = _cases()[name]
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    i, j, S = ase_neighbor_list("ijS", atoms, cutoff)
    assert edge_index.dtype == np.int64 and shifts.dtype == np.int64
    assert _pairs(edge_index[0], edge_index[1], shifts) == _pairs(i, j, S)
    # centres sorted, and the shift formula reproduces the distances
    assert (np.diff(edge_index[0]) >= 0).all()
    vec = (atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]]
           + shifts @ atoms.cell.array)
    assert (np.linalg.norm(vec, axis=1) < cutoff).all()


def test_self_images_in_small_cell():
    atoms = Atoms("Li", cell=np.eye(3) * 2.5, pbc=True)
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    assert (edge_index == 0).all() and len(shifts) > 0
    assert not (shifts == 0).all(axis=1).any(), "an atom must not neighbour itself at zero shift"


def test_errors_name_the_field():
    with pytest.raises(DataError, match="field 'positions'"):
        neighbor_list(np.array([[0, 0, np.nan]]), np.eye(3), [True] * 3, 3.0, source="x.xyz",
                      index=4)
    with pytest.raises(DataError, match="x.xyz, structure 4, field 'cell'.*singular"):
        neighbor_list(np.zeros((1, 3)), np.array([[1, 0, 0], [2, 0, 0], [0, 0, 1.0]]),
                      [True] * 3, 3.0, source="x.xyz", index=4)
    with pytest.raises(DataError, match="lattice vector 2 is zero"):
        neighbor_list(np.zeros((1, 3)), np.diag([3.0, 3.0, 0.0]), [True] * 3, 3.0)

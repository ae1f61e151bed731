"""ASE workflows through `NNIPCalculator`: relaxation and a nudged elastic band."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.mep import NEB
from ase.optimize import BFGS, FIRE

from nnip.calculators.ase import NNIPCalculator
from nnip.physics.pair import pair_potential


def test_vacancy_migration_neb_in_lj_argon():
    """Relax the two end points of a vacancy hop, then a climbing-image NEB between them:
    equal end energies, a positive barrier peaked in the middle, converged forces."""
    model = pair_potential("lj", ["Ar"], cutoff=8.0, epsilon=0.0104, sigma=3.4)
    perfect = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    hop_from, hop_to = 0, 1  # nearest neighbours; atom 1 jumps into the vacancy at 0
    initial = perfect.copy()
    del initial[hop_from]
    final = initial.copy()
    final.positions[hop_to - 1] = perfect.positions[hop_from]
    for end in (initial, final):
        end.calc = NNIPCalculator(model)
        assert BFGS(end, logfile=None).run(fmax=1e-4, steps=300)
    e_initial, e_final = initial.get_potential_energy(), final.get_potential_energy()
    assert abs(e_initial - e_final) < 1e-6  # symmetric hop
    images = [initial] + [initial.copy() for _ in range(5)] + [final]
    for image in images[1:-1]:
        image.calc = NNIPCalculator(model)
    neb = NEB(images, climb=True, method="improvedtangent")
    neb.interpolate()
    assert FIRE(neb, logfile=None).run(fmax=0.01, steps=1000)
    energies = np.array([image.get_potential_energy() for image in images])
    barrier = energies.max() - e_initial
    assert 3 * 0.0104 < barrier < 10 * 0.0104  # eV; 6.1 epsilon when written
    assert int(np.argmax(energies)) == 3  # the saddle is the middle image

"""Oracles: each spec labels real structures, failures are recorded and skipped."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from nnip.active import OracleError, PySCFCalculator, make_oracle


def _fd_forces(calc_factory, atoms, indices=(0,), eps=1e-3):
    forces = []
    for i in indices:
        row = []
        for c in range(3):
            e = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, c] += sign * eps
                a.calc = calc_factory()
                e.append(a.get_potential_energy())
            row.append(-(e[0] - e[1]) / (2 * eps))
        forces.append(row)
    return np.array(forces)


def test_emt_and_module_function_label_and_skip_failures():
    cu = bulk("Cu", cubic=True).repeat(2)
    cu.rattle(0.05, seed=1)
    si = bulk("Si")  # EMT has no parameters for Si: recorded, skipped
    for spec in ("emt", "ase.calculators.emt:EMT"):
        oracle = make_oracle(spec)
        result = oracle.label([cu, si, cu])
        assert result.indices == [0, 2]
        assert [f["index"] for f in result.failures] == [1]
        assert "Si" in result.failures[0]["error"] or "NotImplemented" in \
            result.failures[0]["error"]
        ref = cu.copy()
        ref.calc = EMT()
        labelled = result.frames[0]
        assert labelled.get_potential_energy() == pytest.approx(ref.get_potential_energy())
        np.testing.assert_allclose(labelled.get_forces(), ref.get_forces())
        np.testing.assert_allclose(labelled.get_stress(), ref.get_stress())
        assert labelled.info["label_source"] == spec
        assert cu.calc is None  # inputs untouched


def test_tblite_gfn2_forces_match_finite_differences():
    pytest.importorskip("tblite")
    oracle = make_oracle("tblite:GFN2-xTB")
    water = molecule("H2O")
    water.positions[0, 0] += 0.05
    (labelled,) = oracle.label([water]).frames
    assert labelled.get_potential_energy() < -100  # eV, GFN2 total energy of water
    fd = _fd_forces(lambda: oracle.factory(water), water, indices=(0, 1))
    np.testing.assert_allclose(labelled.get_forces()[:2], fd, atol=2e-3)
    charged = molecule("NH3")
    charged.info["total_charge"] = 1.0
    charged.append("H")
    charged.positions[-1] = [0.0, 0.0, -1.0]
    assert oracle.label([charged]).frames  # NH4+ with charge +1


def test_pyscf_forces_match_finite_differences_and_scf_failure_is_recorded():
    pytest.importorskip("pyscf")
    oracle = make_oracle("pyscf:PBE/sto-3g")
    h2o = molecule("H2O")
    h2o.positions[1] += [0.03, 0.0, 0.02]
    (labelled,) = oracle.label([h2o]).frames
    fd = _fd_forces(lambda: PySCFCalculator(xc="PBE", basis="sto-3g"), h2o, indices=(1,))
    np.testing.assert_allclose(labelled.get_forces()[1:2], fd, atol=5e-3)
    stubborn = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    stubborn.calc = PySCFCalculator(xc="PBE", basis="sto-3g", max_cycle=1)
    with pytest.raises(OracleError, match="did not converge"):
        stubborn.get_potential_energy()


def test_bad_specs_are_clear_errors():
    for spec, match in (("dft", "unknown oracle"), ("pyscf:PBE", "functional>/<basis"),
                        ("tblite:GFN9", "tblite method"), ("nosuch.module:make", "cannot import")):
        with pytest.raises(ValueError, match=match):
            make_oracle(spec)

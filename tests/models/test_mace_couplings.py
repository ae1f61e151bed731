"""The generalised Clebsch-Gordan couplings of the MACE product basis."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from nnip.models.mace import symmetric_couplings


@pytest.mark.parametrize("nu", [1, 2, 3])
def test_couplings_are_exactly_equivariant_symmetric_and_complete(nu):
    irreps_in, irreps_out = o3.Irreps("0e+1o+2e"), o3.Irreps("0e+1o+2e")
    couplings = symmetric_couplings(irreps_in, nu, irreps_out)
    R = o3.rand_matrix(dtype=torch.float64)
    D_in = irreps_in.D_from_matrix(R)
    letters = "abc"[:nu]
    for ir, C in couplings:
        assert C.dtype == torch.float64
        rotated_inputs = torch.einsum(
            f"o{letters}," + ",".join(f"{x}{x.upper()}" for x in letters)
            + f"->o{letters.upper()}", C, *([D_in] * nu))
        rotated_output = torch.einsum("po,o...->p...", ir.D_from_matrix(R), C)
        # e3nn's D_from_matrix is only float32-accurate (~1e-6); the float64 exactness of
        # the couplings is checked through whole models in test_physics.py (~1e-13).
        assert (rotated_inputs - rotated_output).abs().max() < 1e-5
        if nu > 1:
            assert torch.allclose(C, C.transpose(1, 2), atol=1e-14)
    # as many independent couplings per irrep as e3nn's reduced tensor products find
    if nu > 1:
        formula = "=".join(["abc"[:nu], "abc"[:nu][1] + "abc"[:nu][0] + "abc"[:nu][2:]]
                           + (["acb"] if nu == 3 else []))
        rtp = o3.ReducedTensorProducts(formula, filter_ir_out=[ir for _, ir in irreps_out],
                                       **{x: irreps_in for x in "abc"[:nu]})
        expected = sorted(str(ir) for mul, ir in rtp.irreps_out for _ in range(mul))
        assert sorted(str(ir) for ir, _ in couplings) == expected

"""Cutoff envelopes, radial bases, MLPs and the type map."""

from __future__ import annotations

import pytest
import torch

from nnip.errors import ModelError
from nnip.nn import MLP, BesselBasis, CosineCutoff, GaussianBasis, PolynomialCutoff, TypeMap


@pytest.mark.parametrize("envelope,smooth_order", [(CosineCutoff(4.0), 1),
                                                   (PolynomialCutoff(4.0, p=6), 2)])
def test_envelopes_vanish_smoothly_at_the_cutoff(envelope, smooth_order):
    r = torch.tensor([0.0, 4.0, 5.0], dtype=torch.float64)
    assert envelope(r).tolist() == [1.0, 0.0, 0.0]
    x = torch.tensor([4.0 - 1e-9], dtype=torch.float64, requires_grad=True)
    value = envelope(x)
    (d1,) = torch.autograd.grad(value.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    assert abs(float(d1.detach())) < 1e-6
    if smooth_order >= 2:
        assert abs(float(d2)) < 1e-6
    else:
        assert abs(float(d2)) > 0.1  # the cosine's curvature jumps at r_cut


def test_polynomial_order_is_checked():
    with pytest.raises(ValueError, match="p must be >= 2"):
        PolynomialCutoff(4.0, p=1)


def test_radial_bases_shapes_and_values():
    r = torch.linspace(0.5, 5.0, 7, dtype=torch.float64)
    g = GaussianBasis(5.0, 11)(r)
    assert g.shape == (7, 11) and torch.all(g > 0) and torch.all(g <= 1)
    b = BesselBasis(5.0, 8)(r)
    assert b.shape == (7, 8)
    expected = (2 / 5.0) ** 0.5 * torch.sin(3 * torch.pi * r / 5.0) / r
    torch.testing.assert_close(b[:, 2], expected)


def test_mlp_and_type_map():
    mlp = MLP([4, 8, 2], activation="ssp")
    assert mlp(torch.zeros(3, 4)).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown activation"):
        MLP([4, 2], activation="relu6")
    tm = TypeMap(["O", "H", 6])
    assert tm.symbols == ["H", "C", "O"]
    assert tm(torch.tensor([8, 1, 6, 1])).tolist() == [2, 0, 1, 0]
    with pytest.raises(ModelError, match=r"\['N'\] not known"):
        tm.check(torch.tensor([1, 7]))
    with pytest.raises(ModelError, match="unknown element symbol 'Xx'"):
        TypeMap(["Xx"])

"""Every registered architecture passes the physics checks of `nnip.testing`.

float64: symmetry to 1e-10 relative, finite-difference forces and stress to 1e-6.
float32: symmetry to 1e-4 relative and agreement with the same weights in float64 to 1e-4.
"""

from __future__ import annotations

import pytest
import torch

import nnip.testing as nt
from nnip.models import MODELS, build

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@pytest.fixture(scope="module", params=sorted(MODELS))
def arch(request) -> str:
    return request.param


def _small(arch: str, dtype: torch.dtype):
    # A random, untrained model with non-trivial E0: every term contributes.
    return build(arch, elements=["Cu", "Au"], cutoff=4.2, dtype=dtype,
                 e0={"Cu": -3.5, "Au": -2.25}, scale=0.7, seed=3,
                 **SMALL[arch])


SMALL = {"schnet": {"n_features": 16, "n_basis": 12, "n_interactions": 2},
         "painn": {"n_features": 16, "n_basis": 8, "n_interactions": 2},
         "nequip": {"n_features": 6, "l_max": 2, "n_interactions": 2, "radial_hidden": 16},
         # avg_num_neighbors as the trainer sets it (~20 here): without it the A features
         # are ~20x too large and their cubes cost float64 digits (1e-10 instead of 1e-13).
         "mace": {"n_features": 6, "l_max": 2, "correlation": 3, "radial_hidden": 16,
                  "avg_num_neighbors": 20.0}}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_run_all_checks(arch, dtype):
    model = _small(arch, DTYPES[dtype])
    errors = nt.run_all_checks(model)
    tol = nt.tolerances(DTYPES[dtype])
    assert errors["rotation_triclinic"] <= tol.symmetry
    if dtype == "float64":
        assert errors["forces_fd_triclinic"] <= tol.finite_difference
        assert errors["stress_fd_triclinic"] <= tol.finite_difference


def test_checks_can_fail(arch):
    """The checks catch a broken model: one that depends on absolute positions."""
    model = _small(arch, torch.float64)

    class Leaky(torch.nn.Module):
        def forward(self, graph):
            return 0.01 * graph.positions[:, 0] ** 2

    model.terms["leak"] = Leaky()
    frames = nt.example_structures(model.elements, model.cutoff)
    with pytest.raises(AssertionError, match="rotation"):
        nt.check_rotation(model, frames["molecule"])
    with pytest.raises(AssertionError, match="shifted"):
        nt.check_translation(model, frames["triclinic"])


def test_discontinuous_cutoff_is_caught(arch):
    model = _small(arch, torch.float64)

    class HardCut(torch.nn.Module):
        def forward(self, graph):
            r = graph.edge_vectors().norm(dim=1)
            e = torch.zeros(graph.n_atoms, dtype=r.dtype)
            return e.index_add(0, graph.edge_index[0], 0.05 * torch.ones_like(r))

    model.terms["hard"] = HardCut()
    with pytest.raises(AssertionError, match="not continuous"):
        nt.check_cutoff_smoothness(model)


def test_cross_talk_is_caught(arch):
    model = _small(arch, torch.float64)

    class Mixer(torch.nn.Module):
        def forward(self, graph):
            return graph.positions.sum().expand(graph.n_atoms) * 1e-3

    model.terms["mix"] = Mixer()
    frames = list(nt.example_structures(model.elements, model.cutoff).values())
    with pytest.raises(AssertionError, match="depends on other structures|batch"):
        nt.check_batch(model, frames)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(arch):
    model = _small(arch, torch.float64)
    frames = list(nt.example_structures(model.elements, model.cutoff).values())
    periodic = [a for a in frames if a.pbc.all()]
    ref = model.predict(periodic, compute_stress=True)
    gpu = model.to("cuda")
    out = gpu.predict(periodic, compute_stress=True)
    assert out.energy.device.type == "cuda"
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(getattr(out, key).cpu(), getattr(ref, key), rtol=1e-10,
                                   atol=1e-10)
    nt.run_all_checks(gpu)

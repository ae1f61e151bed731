"""Shared models for the export tests."""

from __future__ import annotations

import copy

import pytest
import torch

from nnip.models import build


def qeq_model(energy: str = "coulomb", n_interactions: int = 2, zbl: bool = False,
              **electrostatics):
    """A small Na-Cl PaiNN with charge equilibration (charges ~0.1-0.5 e).

    Args:
        energy: the term's ``qeq_energy``.
        n_interactions: PaiNN layers.
        zbl: add ZBL repulsion (keeps ions apart in MD with random weights).
        electrostatics: more settings of the term (e.g. ``charge_energy``).
    """
    model = build("painn", ["Na", "Cl"], 4.0, n_features=8, n_interactions=n_interactions,
                  seed=2, zbl=zbl,
                  electrostatics={"smearing": 1.0, "method": "ewald", "charge_model": "qeq",
                                  "hardness": 4.0, "qeq_energy": energy, **electrostatics})
    term = model.terms["electrostatics"]
    last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)
        last.bias.mul_(30.0)
        term.log_hardness.copy_(torch.log(torch.tensor([3.0, 6.0])))
    return model


def with_charge_energy(model, form: str):
    """Give ``model``'s charge energy (``linear`` or ``mlp``) weights of a few eV per e.

    The ``mlp`` network starts at zero and the linear curvatures at 0 eV/e²; the shared
    readout's charge row stays as the caller scaled it (×30), its other outputs return
    to their initial scale. Returns ``model``.
    """
    term = model.terms["electrostatics"]
    assert term.charge_energy == form
    last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight[1:].div_(30.0)  # the charge energy's inputs at their initial scale
        last.bias[1:].div_(30.0)  # (the callers scale the readout up for the charges)
        if form == "linear":
            term.charge_curvature.copy_(torch.tensor([1.5, -0.8]))
        else:
            generator = torch.Generator().manual_seed(5)
            for layer in term.charge_energy_net:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator,
                                                   dtype=layer.weight.dtype))
    return model


CHARGE_ENERGY_CASES = [("mlp", "local", "coulomb"), ("mlp", "qeq", "coulomb"),
                       ("linear", "qeq", "full")]
"""(charge_energy, charge_model, qeq_energy) of the charge-energy export tests."""


def charge_energy_model(form: str, charge_model: str, energy: str = "coulomb"):
    """Na-Cl PaiNN (2 layers, ZBL) with learned charges and a charge energy (``form``)."""
    if charge_model == "qeq":
        return with_charge_energy(qeq_model(energy, zbl=True, charge_energy=form), form)
    model = build("painn", ["Na", "Cl"], 4.0, n_features=8, n_interactions=2, seed=2,
                  zbl=True, electrostatics={"smearing": 1.0, "method": "ewald",
                                            "charge_energy": form})
    term = model.terms["electrostatics"]
    last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # charges ~0.1-0.5 e
        last.weight.mul_(30.0)
        last.bias.mul_(30.0)
        term.log_weight.copy_(torch.tensor([-0.4, 0.3]))
    return with_charge_energy(model, form)


@pytest.fixture(scope="session")
def charge_energy_packages(tmp_path_factory):
    """``{case: (model, package path)}`` for `CHARGE_ENERGY_CASES`, exported from model
    files (compiled once for the compiled-export and the LAMMPS tests)."""
    from nnip.export.compiled import export_compiled
    from nnip.export.model_file import save_model

    folder = tmp_path_factory.mktemp("charge_energy")
    out = {}
    for case in CHARGE_ENERGY_CASES:
        name = "-".join(case)
        model = charge_energy_model(*case)
        out[case] = (model, export_compiled(save_model(model, folder / f"{name}.nnip"),
                                            folder / f"{name}.pt2", progress=False))
    return out


def perturbed(model, seed: int):
    """A copy of ``model`` with every parameter moved by ~5 % of its layer's mean size
    (a committee member that differs from the others, charges and charge energy too)."""
    member = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in member.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(0.05 * parameter.abs().mean() * noise)
    return member


COMMITTEE_CHARGE_CASES = [("mlp", "local", "coulomb"), ("mlp", "qeq", "coulomb")]
"""(charge_energy, charge_model, qeq_energy) of the committee-with-electrostatics tests."""


@pytest.fixture(scope="session")
def committee_charge_packages(tmp_path_factory):
    """``{case: (committee, package path)}`` for `COMMITTEE_CHARGE_CASES`: three members
    (one `charge_energy_model` and two perturbed copies) exported from a model file."""
    from nnip.export.compiled import export_compiled
    from nnip.export.model_file import save_model
    from nnip.models import Committee

    folder = tmp_path_factory.mktemp("committee_charges")
    out = {}
    for case in COMMITTEE_CHARGE_CASES:
        name = "-".join(case)
        base = charge_energy_model(*case)
        committee = Committee([base, perturbed(base, 1), perturbed(base, 2)],
                              calibration=1.3)
        out[case] = (committee, export_compiled(
            save_model(committee, folder / f"{name}.nnip"), folder / f"{name}.pt2",
            progress=False))
    return out

"""Shared models for the export tests."""

from __future__ import annotations

import torch

from nnip.models import build


def qeq_model(energy: str = "coulomb", n_interactions: int = 2, zbl: bool = False):
    """A small Na-Cl PaiNN with charge equilibration (charges ~0.1-0.5 e).

    Args:
        energy: the term's ``qeq_energy``.
        n_interactions: PaiNN layers.
        zbl: add ZBL repulsion (keeps ions apart in MD with random weights).
    """
    model = build("painn", ["Na", "Cl"], 4.0, n_features=8, n_interactions=n_interactions,
                  seed=2, zbl=zbl,
                  electrostatics={"smearing": 1.0, "method": "ewald", "charge_model": "qeq",
                                  "hardness": 4.0, "qeq_energy": energy})
    term = model.terms["electrostatics"]
    last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)
        last.bias.mul_(30.0)
        term.log_hardness.copy_(torch.log(torch.tensor([3.0, 6.0])))
    return model

"""Per-element weights of the per-atom loss terms (``loss.element_weights``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnip.config import LossConfig, load_config
from nnip.data import read
from nnip.data.graph import AtomicGraph, Targets
from nnip.errors import ConfigError
from nnip.models.potential import PotentialOutput
from nnip.training.loss import Loss


def _batch(emt_file, n=5):
    frames = [a for a in read(emt_file) if 13 in a.numbers][:n]  # Al and Cu atoms
    rng = np.random.default_rng(0)
    for k, atoms in enumerate(frames):
        atoms.info["weight"] = 1.0 + k  # unequal structure weights
        atoms.arrays["ref_charges"] = rng.normal(0.0, 0.1, len(atoms))
    graph = AtomicGraph.from_atoms(frames, 4.0)
    targets = Targets.from_atoms(frames)
    assert bool(targets.has_charges.all())
    gen = torch.Generator().manual_seed(1)
    out = PotentialOutput(
        energy=targets.energy + torch.randn(len(frames), generator=gen, dtype=torch.float64),
        energies=torch.zeros(len(graph.positions), dtype=torch.float64),
        forces=targets.forces + torch.randn(targets.forces.shape, generator=gen,
                                            dtype=torch.float64),
        charges=targets.charges + torch.randn(targets.charges.shape, generator=gen,
                                              dtype=torch.float64))
    return frames, graph, targets, out


def test_element_weights_scale_each_atoms_force_and_charge_error(emt_file):
    frames, graph, targets, out = _batch(emt_file)
    z = graph.atomic_numbers
    assert {13, 29} <= set(z.tolist())  # both Al and Cu atoms in the batch
    factor = torch.where(z == 29, 7.0, 1.0).double()  # Cu x7, Al (unlisted) x1
    w = targets.weight[graph.system_idx] * factor  # (n_atoms,)
    d_f = ((out.forces - targets.forces) ** 2).sum(-1)  # (n_atoms,)
    d_q = (out.charges - targets.charges) ** 2
    expected_f = float((w * d_f).sum() / (3 * w.sum()))
    expected_q = float((w * d_q).sum() / w.sum())
    _, parts = Loss(LossConfig(element_weights={"Cu": 7.0}))(out, targets, graph)
    assert parts["forces"] == pytest.approx(expected_f, rel=1e-12)
    assert parts["charges"] == pytest.approx(expected_q, rel=1e-12)
    _, plain = Loss(LossConfig())(out, targets, graph)
    assert parts["energy"] == pytest.approx(plain["energy"], rel=1e-12)  # per structure
    assert abs(parts["forces"] - plain["forces"]) > 1e-6 * plain["forces"]
    # weight 0 leaves the element out entirely: only Al atoms count
    _, al_only = Loss(LossConfig(element_weights={"Cu": 0.0}))(out, targets, graph)
    al = z == 13
    w_al = targets.weight[graph.system_idx][al]
    assert al_only["forces"] == pytest.approx(
        float((w_al * d_f[al]).sum() / (3 * w_al.sum())), rel=1e-12)


def test_shard_identity_holds_with_element_weights(emt_file):
    """Data-parallel shards normalised by the global denominators still sum to the
    whole batch's loss when atoms carry element factors."""
    frames, graph, targets, out = _batch(emt_file, 6)
    loss = Loss(LossConfig(element_weights={"Al": 0.25, "Cu": 4.0}))
    whole = float(loss(out, targets, graph)[0])

    def shard(sel):
        sub = [frames[i] for i in sel]
        g, t = AtomicGraph.from_atoms(sub, 4.0), Targets.from_atoms(sub)
        atom = torch.cat([torch.arange(int(s), int(s) + int(n)) for s, n in zip(
            torch.cumsum(graph.atoms_per_system, 0)[list(sel)] - graph.atoms_per_system[list(sel)],
            graph.atoms_per_system[list(sel)])])
        o = PotentialOutput(energy=out.energy[list(sel)], energies=out.energies[atom],
                            forces=out.forces[atom], charges=out.charges[atom])
        return o, t, g

    shards = [shard([0, 2, 4]), shard([1, 3, 5])]
    den = sum(loss.denominators(t, g) for _, t, g in shards)
    assert sum(float(loss(o, t, g, den)[0]) for o, t, g in shards) == \
        pytest.approx(whole, rel=1e-12)


def test_element_weights_config_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: [x.xyz]}\nloss: {element_weights: {Au: 20}}\n")
    assert load_config(path).loss.element_weights == {"Au": 20}
    for bad, message in (("{Qx: 2}", "'Qx' is not an element symbol"),
                         ("{Au: -1}", "element_weights['Au'] must be a number >= 0")):
        path.write_text(f"data: {{train: [x.xyz]}}\nloss: {{element_weights: {bad}}}\n")
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_config(path)


def test_element_weights_for_an_element_absent_from_the_data(emt_file, tmp_path):
    from nnip.training import train

    from .conftest import small_config

    config = small_config(emt_file, tmp_path / "run")
    config["loss"] = {"element_weights": {"Au": 20}}
    with pytest.raises(ConfigError, match=r"names \['Au'\], which no structure"):
        train(config, progress=False)


def test_training_with_element_weights(emt_file, tmp_path):
    """`nnip train` honours the factors: same seed, same data, another loss."""
    from nnip.training import train

    from .conftest import small_config

    losses = []
    for k, weights in enumerate(({}, {"Cu": 5.0})):
        config = small_config(emt_file, tmp_path / f"run{k}", epochs=1)
        config["loss"] = {"element_weights": weights}
        result = train(config, progress=False)
        losses.append(result.history[0]["train_loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)

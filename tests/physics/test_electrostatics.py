"""Electrostatics from predicted charges: known answers, constraints, derivatives, files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from scipy.special import erfc

from nnip.calculators.ase import NNIPCalculator
from nnip.data.graph import AtomicGraph
from nnip.errors import ConfigError, ModelError
from nnip.export.model_file import load_model, save_model
from nnip.models import Scaled, build
from nnip.nn.mlp import MLP
from nnip.physics.electrostatics import COULOMB_CONSTANT, Coulomb
from nnip.testing import (
    check_forces_fd,
    check_rotation,
    check_stress_fd,
    check_translation,
    run_all_checks,
)

K = COULOMB_CONSTANT


def _energy(coulomb: Coulomb, atoms: Atoms, charges) -> float:
    graph = AtomicGraph.from_atoms(atoms, 3.0)
    q = torch.as_tensor(np.asarray(charges, dtype=np.float64))
    return float(coulomb(graph, q).sum())


def test_two_gaussian_charges_follow_the_damped_coulomb_law():
    sigma = 0.8
    coulomb = Coulomb(smearing=sigma)
    for r in (0.3, 1.0, 4.0, 12.0):
        atoms = Atoms("H2", positions=[[0, 0, 0], [r, 0, 0]])
        expected = K * 0.7 * -0.4 * math.erf(r / (math.sqrt(2) * sigma)) / r
        assert _energy(coulomb, atoms, [0.7, -0.4]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_rock_salt_madelung_energy(method):
    """Smeared energy + the erfc real-space remainder = the Madelung energy of NaCl."""
    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
    q = np.where(atoms.numbers == 11, 1.0, -1.0)
    sigma = 1.0
    smeared = _energy(Coulomb(smearing=sigma, method=method), atoms, q)
    i, j, d = neighbor_list("ijd", atoms, 12.0)
    remainder = 0.5 * K * np.sum(q[i] * q[j] * erfc(d / (math.sqrt(2) * sigma)) / d)
    madelung = -1.747565 * K / (a / 2) * len(atoms) / 2  # per ion pair, 4 pairs
    assert smeared + remainder == pytest.approx(madelung, rel=1e-6)


def test_ewald_and_pme_agree_on_a_rattled_triclinic_cell():
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 3, 2))
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.1, 0], [0, 1, 0.05], [0.02, 0, 1.1]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=3)
    q = np.random.default_rng(0).normal(size=len(atoms))
    ewald = _energy(Coulomb(method="ewald"), atoms, q)
    pme = _energy(Coulomb(method="pme"), atoms, q)
    assert pme == pytest.approx(ewald, rel=1e-5)


def test_neutral_molecule_in_a_large_box_matches_the_direct_sum():
    """Ewald (tin-foil) of a molecule in a box = vacuum energy - 2π p^2 / (3V) k_e.

    What remains is of quadrupole order, ~L^-5 (measured: 3.3e-4, 4.3e-5, 1.0e-5 eV at
    L = 20, 30, 40 Å).
    """
    mol = molecule("CH3CH2OH")
    q = np.random.default_rng(1).normal(scale=0.3, size=len(mol))
    q -= q.mean()
    direct = _energy(Coulomb(smearing=1.5), mol, q)
    box = mol.copy()
    box.set_cell([40.0, 40.0, 40.0])
    box.center()
    box.pbc = True
    ewald = _energy(Coulomb(smearing=1.5, method="ewald"), box, q)
    dipole = q @ box.positions
    ewald_vacuum = ewald + K * 2 * math.pi / (3 * box.get_volume()) * dipole @ dipole
    assert ewald_vacuum == pytest.approx(direct, abs=2e-5)
    assert abs(ewald - direct) > 1e-4  # the dipole correction was needed


def test_charged_cell_is_translation_invariant():
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat(2)
    atoms.rattle(0.1, seed=1)
    q = np.full(len(atoms), 0.1)  # net charge: neutralising background
    e0 = _energy(Coulomb(), atoms, q)
    atoms.translate([0.3, -1.1, 0.7])
    assert _energy(Coulomb(), atoms, q) == pytest.approx(e0, rel=1e-9)


def _model(elements=("C", "H"), cutoff=3.5, strength=30.0, **kw):
    """A small PaiNN with electrostatics whose charges are ~0.1-0.5 e (not ~0.01).

    Its charges come from a second PaiNN (``arch: painn``); `_shared` makes models whose
    charges come from their own features.
    """
    model = build("painn", list(elements), cutoff, n_features=8, n_interactions=1, seed=2,
                  electrostatics={"smearing": 0.8, "arch": "painn", **kw})
    term = model.terms["electrostatics"]
    term.charge_net = Scaled(term.charge_net, strength)
    with torch.no_grad():
        term.log_weight.copy_(torch.linspace(-0.5, 0.5, len(elements)))
    return model


def _charged_molecule():
    atoms = molecule("CH3CH2OH")[[0, 1, 3, 4, 5, 6, 7, 8]]  # C2H6 skeleton (no O)
    atoms.rattle(0.05, seed=4)
    atoms.info["total_charge"] = 1.0
    return atoms


def _triclinic_cell():
    atoms = bulk("C", "diamond", a=3.8).repeat((2, 1, 1))
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.08, -0.03], [0.02, 1, 0.06],
                                                 [-0.04, 0.05, 1.1]]), scale_atoms=True)
    atoms.symbols[[1, 3]] = "H"
    atoms.rattle(0.05, seed=5)
    return atoms


def test_charges_sum_to_each_structures_total_charge():
    model = _model()
    cell, mol = _triclinic_cell(), _charged_molecule()
    anion = mol.copy()
    anion.info["total_charge"] = -2.0
    out = model.predict([cell, mol, anion])
    q = out.charges.numpy()
    n = np.cumsum([0, len(cell), len(mol), len(anion)])
    sums = [q[n[k]:n[k + 1]].sum() for k in range(3)]
    assert sums == pytest.approx([0.0, 1.0, -2.0], abs=1e-12)
    assert np.abs(q).max() > 0.05  # the test model has real charges
    assert "electrostatics" in model.terms and model.long_range


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_forces_and_stress_match_finite_differences_in_a_triclinic_cell(method):
    model = _model(method=method)
    atoms = _triclinic_cell()
    coulomb = model.terms["electrostatics"].energies_and_charges(
        AtomicGraph.from_atoms(atoms, model.cutoff))[0].sum()
    assert abs(float(coulomb.detach())) > 0.05  # eV: the term is not negligible
    assert check_forces_fd(model, atoms) < 1e-6
    assert check_stress_fd(model, atoms) < 1e-6


def test_charged_molecule_and_slab_forces_match_finite_differences():
    model = _model()
    assert check_forces_fd(model, _charged_molecule()) < 1e-6
    slab = _triclinic_cell()
    slab.pbc = (True, True, False)
    slab.center(vacuum=5.0, axis=2)
    assert check_forces_fd(model, slab) < 1e-6
    assert check_translation(model, slab, seed=3) < 1e-9


def test_symmetry_checks_of_a_long_range_model():
    results = run_all_checks(_model())
    assert results["rotation_triclinic"] < 1e-10
    assert results["stress_fd_triclinic"] < 1e-6


def test_rotation_of_charged_molecule():
    assert check_rotation(_model(), _charged_molecule()) < 1e-10


def test_one_periodic_direction_is_refused_with_a_clear_error():
    atoms = _triclinic_cell()
    atoms.pbc = (True, False, False)
    with pytest.raises(ModelError, match="one direction"):
        _model().predict(atoms)


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="smearing"):
        build("painn", ["C"], 3.0, electrostatics={"smearin": 1.0})


def test_model_file_and_calculator_carry_the_term(tmp_path):
    model = build("painn", ["C", "H"], 3.5, n_features=8, n_interactions=1, seed=2,
                  electrostatics={"smearing": 0.8, "params": {"n_features": 4,
                                                              "n_interactions": 1}})
    with torch.no_grad():
        model.terms["electrostatics"].log_weight.fill_(0.3)
    path = save_model(model, tmp_path / "m.nnip")
    loaded = load_model(path)
    mol = _charged_molecule()
    a, b = model.predict(mol), loaded.predict(mol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.charges, b.charges)
    mol.calc = NNIPCalculator(loaded)
    assert mol.get_charges().sum() == pytest.approx(1.0, abs=1e-12)
    e_cation = mol.get_potential_energy()
    mol.info["total_charge"] = 0.0  # the calculator notices the new total charge
    assert mol.get_charges().sum() == pytest.approx(0.0, abs=1e-12)
    assert mol.get_potential_energy() != e_cation


def test_committee_with_member_specific_charge_networks_round_trips(tmp_path):
    from nnip.models import Committee

    members = [build("painn", ["C", "H"], 3.5, n_features=8, n_interactions=1, seed=k,
                     avg_num_neighbors=n, electrostatics={"params": {
                         "n_features": 4, "n_interactions": 1, "avg_num_neighbors": n}})
               for k, n in enumerate((5.0, 9.0))]
    committee = Committee(members)
    loaded = load_model(save_model(committee, tmp_path / "c.nnip"))
    mol = _charged_molecule()
    a, b = committee.predict(mol), loaded.predict(mol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.charges, b.charges)
    assert a.charges.sum() == pytest.approx(1.0, abs=1e-12)


def _shared(arch: str, strength: float = 30.0, **kw):
    """A small model of ``arch`` whose charges come from its own features."""
    size = {"n_features": 8, "n_interactions": 2}
    if arch in ("nequip", "mace"):
        size["l_max"] = 1
    model = build(arch, ["C", "H"], 3.5, seed=2, electrostatics={"arch": "shared",
                                                                  "smearing": 0.8, **kw},
                  **size)
    term = model.terms["electrostatics"]
    last = [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(strength)
        last.bias.mul_(strength)
        if term.charge_model == "local":
            term.log_weight.copy_(torch.tensor([-0.4, 0.3]))
    return model


@pytest.mark.parametrize("arch", ["schnet", "painn", "nequip", "mace"])
def test_charges_from_the_main_networks_features(arch):
    model = _shared(arch)
    term = model.terms["electrostatics"]
    assert term.feature_source == arch and isinstance(term.charge_net, MLP)
    mol, cell = _charged_molecule(), _triclinic_cell()
    q = model.predict(mol).charges
    assert float(q.sum()) == pytest.approx(1.0, abs=1e-12) and float(q.abs().max()) > 0.05
    assert check_forces_fd(model, mol) < 1e-6
    assert check_forces_fd(model, cell) < 1e-6
    assert check_stress_fd(model, cell) < 1e-6
    assert check_rotation(model, mol) < 1e-10
    assert check_translation(model, cell, seed=3) < 1e-9
    with pytest.raises(ModelError, match="whole Potential"):
        term(AtomicGraph.from_atoms(mol, model.cutoff))


def test_shared_charges_need_one_network_and_round_trip_in_files(tmp_path):
    from nnip.models import Committee

    separate = build("painn", ["C", "H"], 3.5, n_features=16,
                     electrostatics={"arch": "painn"})
    shared = build("painn", ["C", "H"], 3.5, n_features=16, electrostatics=True)
    assert shared.terms["electrostatics"].feature_source == "painn"  # the default
    n_sep, n_shared = (sum(p.numel() for p in m.parameters()) for m in (separate, shared))
    assert n_shared < 0.6 * n_sep  # one message-passing network, not two
    with pytest.raises(ConfigError, match="no 'params'"):
        build("painn", ["C"], 3.5, electrostatics={"arch": "shared", "params": {"n": 1}})
    with pytest.raises(ConfigError, match="unknown electrostatics arch"):
        build("painn", ["C"], 3.5, electrostatics={"arch": "shard"})
    mol = _charged_molecule()
    for model in (_shared("painn"), Committee([_shared("painn", 20.0), _shared("painn", 40.0)])):
        loaded = load_model(save_model(model, tmp_path / "m.nnip"))
        a, b = model.predict(mol), loaded.predict(mol)
        assert torch.equal(a.energy, b.energy) and torch.equal(a.charges, b.charges)


# --- charge equilibration (charge_model: qeq) -------------------------------------------


def _qeq(strength: float = 3.0, method: str = "auto", elements=("C", "H"),
         energy: str = "coulomb"):
    """A small PaiNN whose charges come from charge equilibration (a second PaiNN's χ)."""
    model = build("painn", list(elements), 3.5, n_features=8, n_interactions=1, seed=2,
                  electrostatics={"smearing": 0.8, "arch": "painn", "method": method,
                                  "charge_model": "qeq", "hardness": 4.0,
                                  "qeq_energy": energy})
    term = model.terms["electrostatics"]
    term.charge_net = Scaled(term.charge_net, strength)
    with torch.no_grad():
        term.log_hardness.copy_(torch.log(torch.tensor([3.0, 6.0][:len(elements)])))
    return model


@pytest.mark.parametrize("method", ["direct", "ewald", "pme"])
def test_kernel_matrix_gives_the_coulomb_energy(method):
    """½ k_e qᵀ K q of `Coulomb.kernels` equals the Coulomb energy of the same charges."""
    atoms = _charged_molecule() if method == "direct" else _triclinic_cell().repeat((1, 2, 1))
    coulomb = Coulomb(smearing=0.8, method=method)
    graph = AtomicGraph.from_atoms(atoms, 3.0)
    q = torch.as_tensor(np.random.default_rng(2).normal(size=len(atoms)))  # charged cell
    (kernel,) = coulomb.kernels(graph)
    assert torch.allclose(kernel, kernel.T, atol=1e-12)
    energy = 0.5 * K * q @ kernel @ q
    assert float(energy) == pytest.approx(float(coulomb(graph, q).sum()), rel=1e-9)


@pytest.mark.parametrize("which", ["molecule", "cell"])
def test_qeq_charges_minimise_the_equilibration_energy(which):
    """At the solution ∂E_Qeq/∂q_i = χ_i + Σ_j A_ij q_j is the same μ for every atom;
    with ``qeq_energy: full`` the term's energy is E_Qeq there."""
    model = _qeq(energy="full")
    atoms = _charged_molecule() if which == "molecule" else _triclinic_cell()
    term = model.terms["electrostatics"]
    graph = AtomicGraph.from_atoms(atoms, model.cutoff)
    q = model.predict(atoms).charges.to(torch.float64)
    assert float(q.sum()) == pytest.approx(atoms.info.get("total_charge", 0.0), abs=1e-12)
    assert float(q.abs().max()) > 0.05  # real charges
    with torch.no_grad():
        raw = term.raw_charges(graph)
        chi = -(term.hardness + term.self_interaction) * raw
        (kernel,) = term.coulomb.kernels(graph)
        a = K * kernel + torch.diag(term.hardnesses(graph) + term.self_interaction)
        mu = chi + a @ q
    assert float(mu.max() - mu.min()) < 1e-10
    with torch.no_grad():
        energy = term.energies_and_charges(graph, raw)[0].sum()
    assert float(energy) == pytest.approx(float(chi @ q + 0.5 * q @ a @ q), rel=1e-10)
    # any other charges with the same total have a higher E_Qeq
    def e_qeq(charges):
        return float(chi @ charges + 0.5 * charges @ a @ charges)
    rng = np.random.default_rng(0)
    for _ in range(5):
        dq = torch.as_tensor(rng.normal(scale=0.01, size=len(q)))
        assert e_qeq(q + dq - dq.mean()) > e_qeq(q)


def test_qeq_moves_charge_between_fragments_that_local_charges_cannot():
    """Two molecules 9 Å apart (beyond every cutoff): moving one rigidly changes the
    other's charges under charge equilibration (polarisation, charge transfer), and not
    with local charges, whose only link is the total-charge correction."""
    a = molecule("CH4")
    b = molecule("C2H2")
    b.translate([9.0, 0.0, 0.0])
    pair = a + b
    pair.info["total_charge"] = 1.0
    moved = pair.copy()
    moved.positions[len(a):] += [1.5, 0.7, 0.0]  # b moves rigidly, 10.5 Å away
    for model, changes in ((_qeq(), True), (_model(), False)):
        qa = model.predict(pair).charges[:len(a)]
        qb = model.predict(moved).charges[:len(a)]
        shift = float((qa - qb).abs().max())
        if changes:
            assert shift > 1e-4
        else:
            assert shift < 1e-12


@pytest.mark.parametrize("method,energy", [("ewald", "coulomb"), ("pme", "coulomb"),
                                           ("ewald", "full")])
def test_qeq_forces_and_stress_match_finite_differences(method, energy):
    model = _qeq(method=method, energy=energy)
    cell = _triclinic_cell()
    assert check_forces_fd(model, cell) < 1e-6
    assert check_stress_fd(model, cell) < 1e-6
    if method == "ewald":  # PME's mesh breaks translation invariance at its accuracy (~1e-6)
        assert check_translation(model, cell, seed=3) < 1e-9


def test_qeq_symmetry_checks_and_charged_molecule():
    model = _qeq()
    results = run_all_checks(model)
    assert results["rotation_triclinic"] < 1e-10
    assert results["stress_fd_triclinic"] < 1e-6
    mol = _charged_molecule()
    assert check_forces_fd(model, mol) < 1e-6
    assert check_rotation(model, mol) < 1e-10


def test_qeq_model_file_calculator_and_refusals(tmp_path):
    model = build("painn", ["C", "H"], 3.5, n_features=8, n_interactions=1, seed=2,
                  electrostatics={"smearing": 0.8, "charge_model": "qeq", "hardness": 7.0})
    term = model.terms["electrostatics"]
    assert term.feature_source == "painn" and not hasattr(term, "log_weight")
    with torch.no_grad():
        term.log_hardness.copy_(torch.log(torch.tensor([5.0, 9.0])))
    loaded = load_model(save_model(model, tmp_path / "q.nnip"))
    assert loaded.terms["electrostatics"].charge_model == "qeq"
    mol = _charged_molecule()
    a, b = model.predict(mol), loaded.predict(mol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.charges, b.charges)
    mol.calc = NNIPCalculator(loaded)
    assert mol.get_charges().sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ConfigError, match="charge_model"):
        build("painn", ["C"], 3.5, electrostatics={"charge_model": "eem"})
    with pytest.raises(ConfigError, match="qeq_energy"):
        build("painn", ["C"], 3.5, electrostatics={"charge_model": "qeq", "qeq_energy": "x"})


# --- charge-dependent local energy (charge_energy) --------------------------------------


def _last_linear(term) -> torch.nn.Linear:
    return [m for m in term.charge_net.modules() if isinstance(m, torch.nn.Linear)][-1]


@pytest.mark.parametrize("charge_model", ["local", "qeq"])
def test_charge_energy_adds_coupling_times_charge_plus_curvature(charge_model):
    """Known answer: with the coupling output zeroed the model is the plain Coulomb model
    (same weights); a curvature b_Z adds exactly Σ b_Z q_i² at the same charges."""
    strength = 3.0 if charge_model == "qeq" else 30.0  # charges of ~0.1-0.5 e
    plain = _shared("painn", strength, charge_model=charge_model)
    coupled = _shared("painn", strength, charge_model=charge_model, charge_energy=True)
    state = coupled.state_dict()
    for key, value in plain.state_dict().items():
        if state[key].shape == value.shape:
            state[key] = value
    coupled.load_state_dict(state)
    last, source = _last_linear(coupled.terms["electrostatics"]), \
        _last_linear(plain.terms["electrostatics"])
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.weight[0].copy_(source.weight[0])
        last.bias[0].copy_(source.bias[0])
    mol, cell = _charged_molecule(), _triclinic_cell()
    for atoms in (mol, cell):
        a, b = plain.predict(atoms), coupled.predict(atoms)
        assert torch.allclose(a.energy, b.energy, rtol=0, atol=1e-12)
        assert torch.allclose(a.charges, b.charges, rtol=0, atol=1e-12)
    term = coupled.terms["electrostatics"]
    with torch.no_grad():
        term.charge_curvature.copy_(torch.tensor([0.7, -0.3], dtype=torch.float64))
    b = coupled.predict(mol)
    a = plain.predict(mol)
    values = dict(zip(coupled.elements, [0.7, -0.3]))  # type order
    curvature = np.array([values[s] for s in mol.get_chemical_symbols()])
    expected = float(a.energy) + float((curvature * a.charges.numpy() ** 2).sum())
    assert float(b.energy) == pytest.approx(expected, abs=1e-10)
    assert torch.allclose(a.charges, b.charges, rtol=0, atol=1e-12)  # q does not change


@pytest.mark.parametrize("form", ["linear", "mlp"])
@pytest.mark.parametrize("charge_model", ["local", "qeq"])
def test_charge_energy_forces_stress_and_symmetry(charge_model, form):
    strength = 3.0 if charge_model == "qeq" else 30.0
    model = _shared("painn", strength, charge_model=charge_model,
                    charge_energy=True if form == "linear" else form)
    term = model.terms["electrostatics"]
    assert term.charge_energy == form
    with torch.no_grad():
        if form == "linear":
            _last_linear(term).weight[1].mul_(20.0)  # couplings of a few eV/e
            term.charge_curvature.copy_(torch.tensor([1.5, -0.8]))
        else:  # the network starts at 0 eV; give it weights of a few eV per unit input
            torch.manual_seed(5)
            for layer in term.charge_energy_net:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_(0.0, 1.0)
            _last_linear(term).weight[1:].mul_(3.0)
    mol, cell = _charged_molecule(), _triclinic_cell()
    graph = AtomicGraph.from_atoms(mol, model.cutoff)
    _, heads = model._short_range(graph)
    raw = heads[0][1]
    assert raw.shape == (len(mol), term.readout_channels)
    q = model.predict(mol).charges
    extra = raw[:, 1:]
    local = term.charge_energies(graph.atomic_numbers, q, extra.detach()).detach()
    assert float(local.abs().sum()) > 0.05  # eV: the term is not negligible
    if form == "mlp":  # known answer: the network of [e_i, q_i], applied per atom
        by_hand = torch.stack([term.charge_energy_net(torch.cat([e, qi[None]]))[0]
                               for e, qi in zip(extra.detach(), q)])
        assert torch.allclose(local, by_hand, rtol=0, atol=1e-12)
        # and non-linear in q: not the linear form's a q + b q^2 fitted through 3 points
        shifted = [term.charge_energies(graph.atomic_numbers, q + d, extra.detach()).detach()
                   for d in (-0.2, 0.2, 0.4)]
        cubic = shifted[2] - 3 * shifted[1] + 3 * local - shifted[0]
        assert float(cubic.abs().max()) > 1e-6
    assert check_forces_fd(model, mol) < 1e-6
    assert check_forces_fd(model, cell) < 1e-6
    assert check_stress_fd(model, cell) < 1e-6
    assert check_rotation(model, mol) < 1e-10
    assert check_translation(model, cell, seed=3) < 1e-9


def test_charge_energy_file_calculator_and_refusals(tmp_path):
    model = _shared("painn", 3.0, charge_model="qeq", charge_energy=True)
    with torch.no_grad():
        model.terms["electrostatics"].charge_curvature.copy_(torch.tensor([0.4, 0.2]))
    assert model.spec["electrostatics"]["charge_energy"] is True
    loaded = load_model(save_model(model, tmp_path / "c.nnip"))
    mol = _charged_molecule()
    a, b = model.predict(mol), loaded.predict(mol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.charges, b.charges)
    mol.calc = NNIPCalculator(loaded)
    assert mol.get_potential_energy() == pytest.approx(float(a.energy), abs=1e-10)
    with pytest.raises(ConfigError, match="arch 'shared'"):
        build("painn", ["C"], 3.5, electrostatics={"arch": "painn", "charge_energy": True})
    with pytest.raises(ConfigError, match="charge_energy must be"):
        build("painn", ["C"], 3.5, electrostatics={"charge_energy": "cubic"})


def test_mlp_charge_energy_starts_at_zero_and_round_trips(tmp_path):
    """The ``mlp`` form adds nothing at initialisation (the plain Coulomb model's energy at
    the same charges) and keeps its form and weights through a model file."""
    model = _shared("painn", 3.0, charge_model="qeq", charge_energy="mlp")
    term = model.terms["electrostatics"]
    assert model.spec["electrostatics"]["charge_energy"] == "mlp"
    mol = _charged_molecule()
    graph = AtomicGraph.from_atoms(mol, model.cutoff)
    _, heads = model._short_range(graph)
    q = model.predict(mol).charges
    zero = term.charge_energies(graph.atomic_numbers, q, heads[0][1][:, 1:].detach())
    assert torch.equal(zero, torch.zeros_like(zero))
    with torch.no_grad():
        term.charge_energy_net[-1].weight.fill_(0.3)
    loaded = load_model(save_model(model, tmp_path / "m.nnip"))
    assert loaded.terms["electrostatics"].charge_energy == "mlp"
    a, b = model.predict(mol), loaded.predict(mol)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.charges, b.charges)


def test_seed_fixes_every_weight_of_the_charge_energy():
    """``build(seed=...)`` is reproducible with the mlp charge energy (its network too)."""
    def weights():
        model = build("painn", ["Na", "Cl"], 4.0, n_features=8, n_interactions=1, seed=4,
                      electrostatics={"charge_energy": "mlp"})
        return model.state_dict()

    torch.manual_seed(0)
    first = weights()
    torch.manual_seed(1)  # another global state: the seed alone decides
    second = weights()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)

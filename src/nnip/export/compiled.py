"""Compiled export: an AOTInductor package (``.pt2``) that C++ loads without Python.

``export_compiled(model, "model.pt2")`` traces energy, per-atom energies, forces, virial
(and a committee's per-atom force spread) of one domain into a single graph — the
derivatives are traced too (``make_fx`` through ``torch.autograd.grad``), so the
artefact needs no autograd at run time — exports it with dynamic atom and edge counts
(``torch.export``) and compiles it with AOTInductor into a package that
``torch::inductor::AOTIModelPackageLoader`` (C++) or `load_compiled` (Python) runs.

The compiled function (all tensors on the export device):

Inputs:
    positions ``(n, 3)`` float64, Å: local atoms first, then ghost atoms (periodic images
        or other domains' atoms, as LAMMPS provides them);
    atomic_numbers ``(n,)`` int64;
    edge_index ``(2, n_edges)`` int64: centre ``i``, neighbour ``j`` (every ordered pair
        within the cutoff whose centre needs a feature: local atoms and, for message
        passing, ghosts within ``(layers - 1) x cutoff``);
    edge_shift ``(n_edges, 3)`` int64: lattice images as in `AtomicGraph` (zeros when
        ghosts are explicit);
    cell ``(3, 3)`` float64, Å, rows are lattice vectors (any value when shifts are 0);
    n_local ``()`` int64: atoms ``0..n_local-1`` are owned; only their energies count.

Outputs (float64):
    energy ``()`` eV, the sum of the owned atoms' energies;
    energies ``(n,)`` eV per atom (0 for ghosts);
    forces ``(n, 3)`` eV/Å, ``-d energy / d positions`` on every atom, ghosts included
        (LAMMPS sums ghost forces back onto their owners);
    virial ``(3, 3)`` eV, ``-d energy / d strain`` (symmetric; ASE stress = -virial / V);
    member_forces ``(k, n, 3)`` eV/Å: each committee member's forces (k = 1 for a single
        model). The spread must be taken after each member's ghost forces were summed
        onto their owners (LAMMPS reverse-communicates them): an atom's per-member force
        is not known inside one domain. `nnip.models.committee.force_spread` with the
        metadata's ``calibration`` gives it.

**Electrostatics** (an `nnip.physics.electrostatics.Electrostatics` term: learned charges,
Coulomb energy of Gaussians of width σ) does not decompose into domains with a finite
ghost shell: the package (format ``nnip-aoti-2``) computes the domain-local parts, and
the Ewald sum over the whole cell runs outside it (`nnip.export._ewald` from Python, the
same sum in C++ in LAMMPS). With E = E_sr(R) + E_c(R, q(R)) and charges
``q_i = q̃_i + w_i (Q - Σ_j q̃_j) / Σ_j w_j``, the function takes one more input

    psi ``(n,)`` float64, eV/e: ``∂E_c/∂q̃_i`` for owned atoms (0 for ghosts);

its ``energy``/``energies`` are the short-range energy (the Coulomb term excluded), its
``forces`` and ``virial`` the derivatives of ``E_sr + Σ_{i owned} psi_i q̃_i`` (the
charges' dependence on positions), and it returns two more outputs:

    q_raw ``(n,)`` e: raw charges q̃ (meaningful for owned atoms);
    w ``(n,)``: the total-charge constraint's weights.

A second entry of the package, ``charges`` (``AOTIModelPackageLoader(path, "charges")``
in C++), takes the first six inputs and returns only ``q_raw`` and ``w``, without
derivatives. One step is then:

1. pass 1 (the ``charges`` entry) gives q̃ and w; sums over all owned atoms give q;
2. the Ewald sum gives E_c, its forces and virial at fixed q and ``φ_i = ∂E_c/∂q_i``;
3. ``ψ_j = φ_j - Σ_i w_i φ_i / Σ_i w_i`` (because ``∂q_i/∂q̃_j = δ_ij - w_i / Σw``);
4. pass 2 (the main entry, ``psi = ψ``) gives the rest.

**Charge equilibration** (``charge_model: qeq``; format ``nnip-aoti-3``): the same two
entries, with ``w`` replaced by the per-atom hardness ``J`` (eV/e²) and ``q̃`` the raw
output that gives the electronegativity ``χ = -d₀ q̃`` (metadata ``chi_scale``: d₀,
eV/e). Between the passes the charges solve ``(C + diag(J + s₀)) q - μ 1 = -χ``,
``Σ q = Q`` (C: the Ewald operator, `nnip.export._ewald.coulomb_matrix`), and ψ comes
from the adjoint solve of `nnip.export._ewald.equilibrate` (``qeq_energy: coulomb``) or
is ``-d₀ q`` (``full``); Python solves densely, LAMMPS by conjugate gradients with the
distributed Ewald sum as the operator.

**Charge-dependent local energy** (``charge_energy: linear | mlp``; format
``nnip-aoti-4``, local or equilibrated charges as the metadata's ``charge_model`` says):
E adds ``E_q = Σ_i f_i(e_i(R), q_i)``, local given the charges. The ``charges`` entry
returns a third output, ``extra (n, C)`` (the readout's inputs of ``f``, C = metadata
``charge_energy_channels``); a third entry, ``charge_energy``
(``atomic_numbers (n,)``, ``extra (n, C)``, ``charges (n,)`` e) returns ``f_i`` (eV) and
``g_i = ∂f_i/∂q_i`` (eV/e), forward only. Once the charges are known, ``g`` joins the
charge derivative of the energy: ``ψ_j = (φ_j + g_j) - Σ_i w_i (φ_i + g_i) / Σ_i w_i``
(local), or the adjoint solve's right-hand side (qeq; `nnip.export._ewald.equilibrate`).
The main entry takes the charges as one more input,

    charges ``(n,)`` float64, e: the constrained charges of owned atoms (0 for ghosts);

and its ``energy``/``energies`` include ``f_i`` of the owned atoms, its ``forces`` and
``virial`` the derivatives of ``E_sr + Σ_owned f_i(e_i, q_i) + Σ_owned ψ_i q̃_i`` at fixed
``q`` and ``ψ``.

**A committee with electrostatics** (format ``nnip-aoti-5``; charge model and charge
energy as the metadata's ``charge_model`` and ``charge_energy`` say): every member has
its own charges, so ``psi``, ``charges``, ``q_raw``, ``w`` and ``extra`` carry a leading
member axis, ``(k, n)`` (``(k, n, C)``), and each member gets its own charge solve and
Ewald sum between the passes; the committee's energy, forces, virial and charges are the
members' means, and each member's Ewald forces join ``member_forces[m]`` before the
spread is taken. The members must share smearing, charge model, qeq energy and χ scale,
and charge-energy form.

3D-periodic cells only. The sum is a
converged Ewald sum whatever the model's ``method`` (a model that uses PME differs from
the package by PME's error, ~1e-6 relative).

The package's metadata (``get_metadata()`` in C++ and Python) holds ``elements``
(comma-separated symbols), ``cutoff`` (Å), ``ghost_cutoff`` (Å: layers x cutoff, the
ghost shell message passing needs), ``dtype``, ``committee`` (members, 0 for a single
model), ``calibration`` (of the committee's spread), ``nnip_version``, ``format`` and the
model file's provenance summary; with electrostatics also ``electrostatics``
(``ewald``), ``smearing`` (σ, Å), ``ewald_accuracy`` (the smallest Gaussian factor
``exp(-σ^2 k^2 / 2)`` summed) and ``charge_model`` (``local`` or ``qeq``; for ``qeq``
also ``qeq_energy`` and ``chi_scale``).

A D3 dispersion term (`nnip.physics.dispersion.D3Dispersion`, with its own 15 Å list)
is left out of the compiled graph and carried as metadata instead: ``d3`` (its settings,
JSON) and ``lammps_d3`` (the same dispersion as ``pair_style dispersion/d3 ...``, which
LAMMPS overlays on ``pair_style nnip``); `load_compiled` adds it back on the Python side,
so a package evaluates the whole model from Python and from LAMMPS alike.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.errors import ModelError, ModelFileError
from nnip.export._ewald import ACCURACY, equilibrate, ewald
from nnip.models.committee import Committee, force_spread
from nnip.models.potential import Potential, use_static_shapes
from nnip.nn.embedding import TypeMap
from nnip.physics.dispersion import D3Dispersion
from nnip.physics.electrostatics import Electrostatics

__all__ = ["CHARGE_ENERGY_FORMAT", "CHARGES_FORMAT", "COMMITTEE_CHARGES_FORMAT", "FORMAT",
           "QEQ_FORMAT", "CompiledPotential", "ExportedModule", "export_compiled",
           "lammps_lines", "load_compiled", "parity"]

FORMAT = "nnip-aoti-1"
"""Version tag of the compiled function's signature (inputs, outputs, metadata)."""

CHARGES_FORMAT = "nnip-aoti-2"
"""The signature of models with electrostatics: ``psi`` in, ``q_raw`` and ``w`` out."""

QEQ_FORMAT = "nnip-aoti-3"
"""As `CHARGES_FORMAT`, for charge equilibration: the second output is the hardness."""

CHARGE_ENERGY_FORMAT = "nnip-aoti-4"
"""As `CHARGES_FORMAT` or `QEQ_FORMAT` (metadata ``charge_model``), with a charge-dependent
local energy: ``extra`` out of ``charges``, a ``charge_energy`` entry, ``charges`` in."""

COMMITTEE_CHARGES_FORMAT = "nnip-aoti-5"
"""A committee with electrostatics: as `CHARGES_FORMAT`, `QEQ_FORMAT` or
`CHARGE_ENERGY_FORMAT` (metadata ``charge_model`` and ``charge_energy``), with a leading
member axis on ``psi``, ``charges``, ``q_raw``, ``w`` and ``extra``: ``(k, n)``."""


class ExportedModule(nn.Module):
    """The function that is compiled (see the module docstring for its signature).

    Args:
        potential: a `Potential` or `Committee` whose only long-range term is one
            electrostatics term per member (a D3 term is taken out first by
            `export_compiled`).

    Raises:
        ModelError: other long-range terms, or committee members whose electrostatics
            differ in what runs outside the package.
    """

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.members = _members(potential)
        self.terms = _electrostatics_terms(potential)  # one per member, or empty
        self.electrostatics = self.terms[0] if self.terms else None
        # a committee's charge arrays carry a leading member axis (k, n)
        self.stacked = bool(self.terms) and isinstance(potential, Committee)
        self.potential = potential
        use_static_shapes(potential)

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                edge_index: torch.Tensor, edge_shift: torch.Tensor, cell: torch.Tensor,
                n_local: torch.Tensor, psi: torch.Tensor | None = None,
                charges_in: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Energy, per-atom energies, forces, virial and member forces of one domain.

        With electrostatics (``psi`` given), also the raw charges and weights, and the
        derivatives are those of the short-range energy plus ``Σ_owned psi_i q̃_i``;
        with a charge energy (``charges_in`` given, e) the energies include it.
        """
        dtype = self.potential.model_dtype
        n, k = positions.shape[0], len(self.members)
        owned = (torch.arange(n, device=positions.device) < n_local).to(torch.float64)
        # one copy of positions and strain per member: one backward pass for all
        pos = positions.detach().to(dtype).unsqueeze(0).repeat(k, 1, 1).requires_grad_(True)
        strain = torch.zeros((k, 3, 3), dtype=dtype, device=positions.device,
                             requires_grad=True)
        cell = cell.to(dtype)
        # one row per member: a committee's (k, n), a single model's (n,) as (1, n)
        psi_rows, charge_rows = (t if t is None or self.stacked else t.unsqueeze(0)
                                 for t in (psi, charges_in))
        energies, charges = [], []
        for m, member in enumerate(self.members):
            sym = 0.5 * (strain[m] + strain[m].T)
            graph = AtomicGraph(
                positions=pos[m] + pos[m] @ sym, atomic_numbers=atomic_numbers,
                system_idx=torch.zeros(n, dtype=torch.long, device=positions.device),
                cell=(cell + cell @ sym).unsqueeze(0),
                pbc=torch.ones((1, 3), dtype=torch.bool, device=positions.device),
                total_charge=torch.zeros(1, dtype=dtype, device=positions.device),
                edge_index=edge_index, edge_shift=edge_shift)
            if psi is None:
                energies.append(member.atom_energies(graph) * owned)  # (n,) float64
            else:
                short, raw, weight, extra = member.short_range_and_raw_charges(graph)
                if charge_rows is not None:  # f_i(e_i(R), q_i) at the given charges
                    short = short + self.terms[m].charge_energies(
                        atomic_numbers, charge_rows[m].to(dtype), extra).to(torch.float64)
                energies.append(short * owned)  # (n,) float64
                charges.append((raw.to(torch.float64), weight.to(torch.float64)))
        per_member = torch.stack(energies)  # (k, n)
        total = per_member.sum()
        if psi_rows is not None:  # the charge response: d/dr of Σ psi_i q̃_i (owned atoms)
            for m, (raw, _) in enumerate(charges):
                total = total + (psi_rows[m].to(torch.float64) * owned * raw).sum()
        grad_pos, grad_strain = torch.autograd.grad(total, [pos, strain])
        forces = -grad_pos.to(torch.float64)  # (k, n, 3)
        virial = -grad_strain.to(torch.float64).mean(0)  # (3, 3)
        mean = per_member.mean(0).detach()
        out = (mean.sum(), mean, forces.mean(0), 0.5 * (virial + virial.T), forces)
        if psi is None:
            return out
        raw, weight = (torch.stack([c[j] for c in charges]).detach() for j in (0, 1))
        if not self.stacked:
            raw, weight = raw[0], weight[0]
        return (*out, raw, weight)


class _RawCharges(nn.Module):
    """The package's second entry, ``charges``: ``q_raw (n,)`` e and ``w (n,)`` only.

    Same first six inputs as the main function; forward only (pass 1 of a step). With a
    charge energy also ``extra (n, C)``, that energy's inputs beside the charge.
    """

    def __init__(self, exported: ExportedModule) -> None:
        super().__init__()
        self.members = exported.members
        self.stacked = exported.stacked

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                edge_index: torch.Tensor, edge_shift: torch.Tensor, cell: torch.Tensor,
                n_local: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Raw charges and constraint weights of every atom (owned ones are exact).

        For a committee one row per member: ``(k, n)`` (and ``extra (k, n, C)``).
        """
        dtype = self.members[0].model_dtype
        n = positions.shape[0]
        graph = AtomicGraph(
            positions=positions.to(dtype), atomic_numbers=atomic_numbers,
            system_idx=torch.zeros(n, dtype=torch.long, device=positions.device),
            cell=cell.to(dtype).unsqueeze(0),
            pbc=torch.ones((1, 3), dtype=torch.bool, device=positions.device),
            total_charge=torch.zeros(1, dtype=dtype, device=positions.device),
            edge_index=edge_index, edge_shift=edge_shift)
        parts = [member.short_range_and_raw_charges(graph)[1:] for member in self.members]
        # contiguous outputs: raw charges split from a wider readout are a strided view
        out = [torch.stack([p[j].to(torch.float64) for p in parts]).contiguous()
               for j in range(3) if parts[0][j] is not None]
        return tuple(out if self.stacked else (t[0].contiguous() for t in out))


class _ChargeEnergy(nn.Module):
    """The package's third entry, ``charge_energy``: ``f_i`` (eV) and ``∂f_i/∂q_i`` (eV/e).

    Inputs ``atomic_numbers (n,)``, ``extra (n, C)`` (from the ``charges`` entry) and
    ``charges (n,)`` e; `nnip.physics.electrostatics.Electrostatics.charge_energies`.
    """

    def __init__(self, exported: ExportedModule) -> None:
        super().__init__()
        self.terms = nn.ModuleList(exported.terms)
        self.stacked = exported.stacked
        self.dtype = exported.potential.model_dtype

    def forward(self, atomic_numbers: torch.Tensor, extra: torch.Tensor,
                charges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom charge energies and their derivatives by each atom's own charge.

        For a committee ``extra (k, n, C)``, ``charges (k, n)`` and both outputs ``(k, n)``.
        """
        q = charges.detach().to(self.dtype).requires_grad_(True)
        extra = extra.to(self.dtype)
        if self.stacked:
            energies = torch.stack([term.charge_energies(atomic_numbers, q[m], extra[m])
                                    for m, term in enumerate(self.terms)])
        else:
            energies = self.terms[0].charge_energies(atomic_numbers, q, extra)
        (gradient,) = torch.autograd.grad(energies.sum(), [q])
        return energies.detach().to(torch.float64), gradient.to(torch.float64)


def _compile(programs: dict[str, torch.export.ExportedProgram], path: Path,
             configs: dict[str, Any]) -> None:
    """AOTInductor-compile each program and package them as named models at ``path``.

    ``model`` is the default entry (``AOTIModelPackageLoader(path)``); others are loaded
    by name (``AOTIModelPackageLoader(path, "charges")``).
    """
    if len(programs) == 1:
        torch._inductor.aoti_compile_and_package(programs["model"], package_path=str(path),
                                                 inductor_configs=configs)
        return
    from torch._inductor.package import package_aoti

    files = {}
    for name, program in programs.items():
        args, kwargs = program.example_inputs
        files[name] = torch._inductor.aot_compile(
            program.module(check_guards=False), args, kwargs,
            options={**configs, "aot_inductor.package": True})
    package_aoti(str(path), files)


def _electrostatics_terms(potential: Potential) -> list[Electrostatics]:
    """The electrostatics term of each member (empty without electrostatics).

    Raises:
        ModelError: long-range terms other than one `Electrostatics` term per member, or
            committee members whose terms differ in what runs outside the package
            (smearing, charge model, qeq energy and χ scale, charge-energy form).
    """
    if not potential.long_range:
        return []
    members = _members(potential)
    names = [name for m in members for name, term in m.terms.items()
             if getattr(term, "long_range", False)]
    found = [t for m in members for t in m.terms.values() if isinstance(t, Electrostatics)]
    if len(found) != len(names) or len(found) != len(members):
        raise ModelError(f"compiled export does not carry these long-range terms ({names}): "
                         "only one electrostatics term per model is supported; export a "
                         "model without the others")
    shared = [_outside(term) for term in found]
    if any(s != shared[0] for s in shared[1:]):
        raise ModelError("committee members' electrostatics differ in what the charge "
                         f"solve outside the package needs: {shared}")
    return found


def _outside(term: Electrostatics) -> dict[str, Any]:
    """The settings of ``term`` that the Ewald sum and charge solve outside use."""
    qeq = term.charge_model == "qeq"
    return {"smearing": term.coulomb.smearing, "charge_model": term.charge_model,
            "qeq_energy": term.qeq_energy if qeq else "",
            "chi_scale": term.hardness + term.self_interaction if qeq else None,
            "charge_energy": term.charge_energy,
            "channels": term.readout_channels if term.charge_energy else None}


def _members(potential: Potential) -> list[Potential]:
    """A committee's members, or the single potential."""
    return potential.members if isinstance(potential, Committee) else [potential]


def _take_out_d3(potential: Potential) -> D3Dispersion | None:
    """Remove the D3 terms of ``potential`` (every member) in place; return one of them.

    Raises:
        ModelError: members with different D3 settings (one LAMMPS style cannot add them).
    """
    found: list[D3Dispersion] = []
    for member in _members(potential):
        for name in [n for n, t in member.terms.items() if isinstance(t, D3Dispersion)]:
            found.append(member.terms[name])
            del member.terms[name]
    if any(t.settings() != found[0].settings() for t in found[1:]):
        raise ModelError("committee members have different D3 settings: "
                         f"{[t.settings() for t in found]}")
    return found[0] if found else None


def lammps_lines(metadata: dict[str, str], package: str, symbols: list[str]) -> str:
    """The ``pair_style``/``pair_coeff`` lines that run a package in LAMMPS.

    Args:
        metadata: the package's metadata (`CompiledPotential.metadata`).
        package: the package's path as the input script should name it.
        symbols: one element symbol per LAMMPS atom type.
    """
    types = " ".join(symbols)
    if not metadata.get("lammps_d3"):
        return f"pair_style nnip\npair_coeff * * {package} {types}"
    return (f"pair_style hybrid/overlay nnip {metadata['lammps_d3']}\n"
            f"pair_coeff * * nnip {package} {types}\n"
            f"pair_coeff * * dispersion/d3 {types}")


def _graph_inputs(atoms: Atoms, cutoff: float, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, ...]:
    """The compiled function's inputs for one ASE structure (all atoms owned)."""
    return _inputs_of(AtomicGraph.from_atoms(atoms, cutoff, device=device))


def _inputs_of(graph: AtomicGraph) -> tuple[torch.Tensor, ...]:
    """The compiled function's inputs for a one-structure graph (all atoms owned)."""
    return (graph.positions, graph.atomic_numbers, graph.edge_index, graph.edge_shift,
            graph.cell[0], torch.tensor(graph.n_atoms, device=graph.positions.device))


def _example(elements: list[str], cutoff: float) -> Atoms:
    """A small periodic structure with every element and > 2 atoms and edges."""
    rng = np.random.default_rng(0)
    n = max(8, 2 * len(elements))
    side = 1.3 * cutoff
    symbols = [elements[k % len(elements)] for k in range(n)]
    positions = rng.uniform(0.0, side, size=(n, 3))
    # keep atoms >= 0.9 Å apart (the graph builder refuses near-overlaps)
    for k in range(1, n):
        while np.min(np.linalg.norm(positions[:k] - positions[k], axis=1)) < 0.9:
            positions[k] = rng.uniform(0.0, side, size=3)
    return Atoms(symbols, positions=positions, cell=[side] * 3, pbc=True)


def _layers(potential: Potential) -> int:
    """Message-passing layers: of the main term, or of a separate charge network."""
    spec = _members(potential)[0].spec
    layers = int(spec.get("config", {}).get("n_interactions", 1))
    charge_net = (spec.get("electrostatics") or {}).get("params") or {}
    return max(layers, int(charge_net.get("n_interactions", 1)))


def export_compiled(model: Potential | str | os.PathLike, path: str | os.PathLike, *,
                    device: str = "cpu", example: Atoms | None = None,
                    progress: bool = True, ewald_accuracy: float = ACCURACY) -> Path:
    """Compile ``model`` into an AOTInductor package at ``path`` (``.pt2``).

    Args:
        model: a `Potential`, `Committee` or a model file path.
        path: the package to write.
        device: ``cpu`` or ``cuda``: the device the package runs on.
        example: a structure to trace with (default: a small random periodic cell of the
            model's elements); sizes stay dynamic either way.
        progress: print what it does (compilation takes tens of seconds).
        ewald_accuracy: for a model with electrostatics, the smallest Gaussian factor
            ``exp(-σ^2 k^2 / 2)`` of the Ewald sum that runs outside the package
            (`nnip.export._ewald`); stored in the metadata.

    Returns:
        ``path``.

    Raises:
        ModelError: the model has long-range terms other than one electrostatics term
            (per member), or committee members whose electrostatics settings differ.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    from nnip import __version__

    provenance: dict[str, Any] = {}
    if not isinstance(model, nn.Module):
        from nnip.export.model_file import load_model, read_metadata

        meta = read_metadata(model)
        source = meta.get("provenance") or {}
        provenance = {"model_file": str(model), "license": meta.get("license"),
                      **{k: source.get(k) for k in ("date", "git_commit", "nnip_version")},
                      "training_data": source.get("training_data")}
        model = load_model(model, device=device)
    model = copy.deepcopy(model).to(device).eval()  # the caller's model stays as it was
    for p in model.parameters():
        p.requires_grad_(False)
    d3 = _take_out_d3(model)  # LAMMPS adds it (pair_style dispersion/d3), Python too
    module = ExportedModule(model)
    example = example if example is not None else _example(model.elements, model.cutoff)
    inputs = _graph_inputs(example, model.cutoff, device)
    coulomb = module.electrostatics.coulomb if module.electrostatics is not None else None
    term = module.electrostatics
    energy_form = term.charge_energy if term is not None else ""
    # psi and charges: one value per atom (a committee's: per member and atom, (k, n))
    shape = (len(model.members), len(example)) if module.stacked else (len(example),)
    per_atom = torch.zeros(shape, dtype=torch.float64, device=device)
    atom_axis = 1 if module.stacked else 0
    if coulomb is not None:  # psi: the Coulomb energy's derivative by each raw charge
        inputs = (*inputs, per_atom)
    if energy_form:  # the charges at which the charge energy is evaluated
        inputs = (*inputs, per_atom.clone())
    say = print if progress else (lambda *a, **k: None)
    start = time.perf_counter()
    # one symbol per dynamic size even where the example's sizes coincide with a fixed
    # one (8 atoms and the mlp charge energy's 8 features would otherwise be unified)
    no_duck = torch.fx.experimental._config.patch(use_duck_shape=False)
    with torch.enable_grad(), no_duck:
        traced = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    n_atoms = torch.export.Dim("n_atoms", min=2)
    n_edges = torch.export.Dim("n_edges", min=2)
    dynamic = ({0: n_atoms}, {0: n_atoms}, {1: n_edges}, {0: n_edges}, None, None)
    extra_inputs = len(inputs) - len(dynamic)  # psi, charges: one value per atom
    program = torch.export.export(
        traced, inputs, strict=False,
        dynamic_shapes=(*dynamic, *[{atom_axis: n_atoms}] * extra_inputs))
    say(f"nnip export: traced and exported in {time.perf_counter() - start:.0f} s; "
        "compiling with AOTInductor ...")
    qeq = term is not None and term.charge_model == "qeq"
    metadata = {
        "format": FORMAT if coulomb is None else COMMITTEE_CHARGES_FORMAT if module.stacked
        else CHARGE_ENERGY_FORMAT if energy_form else QEQ_FORMAT if qeq else CHARGES_FORMAT,
        "elements": ",".join(model.elements), "cutoff": repr(model.cutoff),
        "ghost_cutoff": repr(_layers(model) * model.cutoff),
        "dtype": str(model.model_dtype).removeprefix("torch."),
        "committee": str(len(model.members) if isinstance(model, Committee) else 0),
        "calibration": repr(float(model.calibration) if isinstance(model, Committee) else 1.0),
        "nnip_version": __version__, "device": device, "provenance": json.dumps(provenance),
        "d3": json.dumps(d3.settings()) if d3 else "",
        "lammps_d3": d3.lammps_pair_style() if d3 else "",
        "electrostatics": "" if coulomb is None else "ewald",
        "smearing": "" if coulomb is None else repr(coulomb.smearing),
        "ewald_accuracy": "" if coulomb is None else repr(float(ewald_accuracy)),
        "charge_model": "" if term is None else term.charge_model,
        "qeq_energy": term.qeq_energy if qeq else "",
        "chi_scale": repr(term.hardness + term.self_interaction) if qeq else "",
        "charge_energy": energy_form,
        "charge_energy_channels": str(term.readout_channels - 1) if energy_form else "",
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.pt2")
    programs = {"model": program}
    if coulomb is not None:  # pass 1 of a step needs only the charges: no derivatives
        with torch.no_grad(), no_duck:
            charges = make_fx(_RawCharges(module), tracing_mode="symbolic",
                              _allow_non_fake_inputs=True)(*inputs[:6])
        programs["charges"] = torch.export.export(charges, inputs[:6], strict=False,
                                                  dynamic_shapes=dynamic)
    if energy_form:  # f_i and ∂f_i/∂q_i once the charges are known
        with torch.no_grad():
            extra = _RawCharges(module)(*inputs[:6])[2]
        local = (inputs[1], extra, per_atom.clone())
        with torch.enable_grad(), no_duck:
            traced_q = make_fx(_ChargeEnergy(module), tracing_mode="symbolic",
                               _allow_non_fake_inputs=True)(*local)
        programs["charge_energy"] = torch.export.export(
            traced_q, local, strict=False,
            dynamic_shapes=({0: n_atoms}, {atom_axis: n_atoms}, {atom_axis: n_atoms}))
    configs: dict[str, Any] = {"aot_inductor.metadata": metadata}
    try:
        _compile(programs, tmp, configs)
    except Exception as err:  # noqa: BLE001  (an Inductor code-generation failure)
        if device != "cpu":
            raise
        # torch 2.13's vectorised C++ code generation fails on some float32 graphs
        # (an assertion in cpp.py); scalar code generation compiles them.
        say(f"nnip export: vectorised code generation failed ({type(err).__name__}); "
            "compiling without SIMD vectorisation")
        _compile(programs, tmp, {**configs, "cpp.simdlen": 1})
    os.replace(tmp, path)
    say(f"nnip export: wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in "
        f"{time.perf_counter() - start:.0f} s")
    if coulomb is not None:
        how = "charge equilibration and Ewald" if qeq else "Ewald"
        say(f"nnip export: electrostatics (Gaussian charges, σ = {coulomb.smearing} Å) is "
            f"summed outside the package ({how}); in LAMMPS give the system's total charge "
            "as: pair_style nnip total_charge Q")
        if energy_form:
            say(f"nnip export: the charge-dependent local energy ({energy_form}) is in the "
                f"package (entry charge_energy, format {metadata['format']})")
        if module.stacked:
            say(f"nnip export: each of the {len(model.members)} committee members has its own "
                "charges: one charge solve and Ewald sum per member")
        say(f"nnip export: format {metadata['format']}; a LAMMPS plugin built before this "
            "format refuses it: rebuild it with `nnip lammps build`")
    if d3:
        say("nnip export: the D3 dispersion term is not compiled in; LAMMPS adds it with its "
            "own pair style:\n" + lammps_lines(metadata, path.name, model.elements))
    return path


class CompiledPotential:
    """A compiled package, run from Python on ASE structures (for tests and checks).

    Args:
        path: a package written by `export_compiled`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such compiled model")
        try:
            self.runner = torch._inductor.aoti_load_package(str(path))
        except Exception as err:  # noqa: BLE001  (any loader failure: not a package)
            raise ModelFileError(f"{path}: not an AOTInductor package nnip can load "
                                 f"({type(err).__name__}: {err})") from err
        self.metadata = dict(self.runner.get_metadata())
        formats = (FORMAT, CHARGES_FORMAT, QEQ_FORMAT, CHARGE_ENERGY_FORMAT,
                   COMMITTEE_CHARGES_FORMAT)
        if self.metadata.get("format") not in formats:
            raise ModelFileError(f"{path}: compiled format {self.metadata.get('format')!r}, "
                                 f"this nnip reads {', '.join(map(repr, formats))}")
        self.smearing = None  # Å, models with electrostatics (summed outside the package)
        self.stacked = self.metadata["format"] == COMMITTEE_CHARGES_FORMAT  # (k, n) charges
        if self.metadata.get("electrostatics"):
            from torch._inductor.package import load_package

            self.smearing = float(self.metadata["smearing"])
            self.ewald_accuracy = float(self.metadata["ewald_accuracy"])
            self.qeq = self.metadata["format"] == QEQ_FORMAT or \
                self.metadata.get("charge_model") == "qeq"
            self.charges_runner = load_package(str(path), "charges")
        self.charge_energy_runner = None  # f_i and ∂f_i/∂q_i (format nnip-aoti-4)
        if self.metadata.get("charge_energy"):
            from torch._inductor.package import load_package

            self.charge_energy_runner = load_package(str(path), "charge_energy")
        self.elements = self.metadata["elements"].split(",")
        self.cutoff = float(self.metadata["cutoff"])
        self.device = self.metadata.get("device", "cpu")
        self.d3 = None  # the D3 term left out of the compiled graph, added here
        if self.metadata.get("d3"):
            self.d3 = Potential({"d3": D3Dispersion(**json.loads(self.metadata["d3"]))},
                                TypeMap(self.elements), self.cutoff).to(self.device)

    def __call__(self, atoms: Atoms) -> dict[str, np.ndarray | float]:
        """Evaluate the package on one structure (all atoms owned).

        A model with electrostatics needs a 3D-periodic cell; its total charge (e) is
        ``atoms.info["total_charge"]`` (default 0).

        Returns:
            ``energy`` (eV), ``energies`` (n,) eV, ``forces`` (n, 3) eV/Å, ``virial``
            (3, 3) eV, ``stress`` (6,) eV/Å³ (Voigt, ASE sign; periodic cells only),
            ``forces_uncertainty`` (n,) eV/Å, and with electrostatics ``charges`` (n,) e.

        Raises:
            ModelError: an element the package does not know; electrostatics in a cell
                that is not 3D-periodic.
        """
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(self.elements))
        if unknown:
            raise ModelError(f"element(s) {unknown} not known to this compiled model, "
                             f"which was made for {self.elements}")
        graph = AtomicGraph.from_atoms(atoms, self.cutoff, device=self.device)
        if self.smearing is not None:
            outputs, coulomb = self._with_charges(atoms, graph)
        else:
            outputs, coulomb = self.runner(*_inputs_of(graph)), None
        energy, energies, forces, virial, members = (t.detach().cpu() for t in outputs[:5])
        if coulomb is not None:  # each member's own Ewald forces join its forces
            members = members + torch.as_tensor(coulomb.pop("member_forces"))
        if members.shape[0] > 1:  # one structure, all atoms owned: no ghosts to add
            spread = force_spread(members, float(self.metadata["calibration"])).numpy()
        else:
            spread = np.zeros(len(atoms))
        if self.d3 is not None:
            d3 = self.d3(graph, compute_forces=True, compute_stress=bool(atoms.pbc.all()))
            energy, energies = energy + d3.energy[0].cpu(), energies + d3.energies.cpu()
            forces = forces + d3.forces.cpu()
            if d3.virial is not None:
                virial = virial + d3.virial[0].cpu()
        energy, energies, forces, virial = (t.numpy() for t in (energy, energies, forces,
                                                                   virial))
        out: dict[str, Any] = {"energy": float(energy), "energies": energies,
                               "forces": forces, "virial": virial,
                               "forces_uncertainty": spread}
        if coulomb is not None:  # the Ewald sum's own energy, forces and virial
            out["energy"] += coulomb["energy"]
            for key in ("energies", "forces", "virial"):
                out[key] = out[key] + coulomb[key]
            out["charges"] = coulomb["charges"]
        if atoms.pbc.all():
            stress = -out["virial"] / atoms.get_volume()
            out["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        return out


    def _with_charges(self, atoms: Atoms, graph: AtomicGraph
                      ) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        """The two passes of a model with electrostatics, as LAMMPS runs them.

        Pass 1 (the package's ``charges`` entry) gives raw charges q̃ and weights w; the
        constraint gives charges
        ``q = q̃ + w (Q - Σq̃) / Σw``; the Ewald sum (`nnip.export._ewald`) gives the
        Coulomb energy, its forces and virial at fixed charges and the potentials
        ``φ = ∂E_c/∂q``; by the chain rule through the constraint
        (``∂q_i/∂q̃_j = δ_ij - w_i / Σw``) ``ψ_j = ∂E_c/∂q̃_j = φ_j - Σ_i w_i φ_i / Σw``;
        pass 2 with ``psi = ψ`` adds the forces and virial of the charges' dependence on
        positions. Charge equilibration: `nnip.export._ewald.equilibrate` between the
        passes. A charge-dependent local energy (format ``nnip-aoti-4``): the
        ``charge_energy`` entry's ``∂f/∂q`` at the charges joins ``φ`` (or the adjoint's
        right-hand side), and pass 2 gets the charges too.
        """
        if not atoms.pbc.all():
            raise ModelError("this compiled model has electrostatics, which it sums for "
                             f"3D-periodic cells only; the structure has pbc={atoms.pbc}")
        inputs = _inputs_of(graph)
        # a single model's arrays are handled as one row, (1, n): `rows` and `own` convert
        rows = (lambda t: t) if self.stacked else (lambda t: t.unsqueeze(0))
        own = (lambda t: t) if self.stacked else (lambda t: t[0])
        first = [rows(t.detach()) for t in self.charges_runner(*inputs)]
        raw, weight = (t.cpu().numpy() for t in first[:2])  # (k, n)
        k, n = raw.shape
        total = float(atoms.info.get("total_charge", 0.0))
        charges = torch.zeros((k, n), dtype=torch.float64, device=self.device)
        parts, psi = [], np.zeros((k, n))
        for m in range(k):
            gradient = None  # ∂f/∂q of member m's charge energy at its charges q
            if self.charge_energy_runner is not None:
                def gradient(q: np.ndarray, m: int = m) -> np.ndarray:
                    charges[m] = torch.as_tensor(q, dtype=torch.float64, device=self.device)
                    out = self.charge_energy_runner(inputs[1], own(first[2]), own(charges))[1]
                    return rows(out)[m].cpu().numpy()
            if self.qeq:  # weight holds the hardnesses
                part = equilibrate(atoms.positions, atoms.cell.array, raw[m], weight[m], total,
                                   self.smearing, float(self.metadata["chi_scale"]),
                                   self.metadata["qeq_energy"], self.ewald_accuracy,
                                   charge_gradient=gradient)
                psi[m] = part.pop("psi")
            else:
                q = raw[m] + weight[m] * (total - raw[m].sum()) / weight[m].sum()
                energy, phi, forces, virial = ewald(atoms.positions, q, atoms.cell.array,
                                                    self.smearing, self.ewald_accuracy)
                part = {"energy": energy, "energies": 0.5 * q * phi, "forces": forces,
                        "virial": virial, "charges": q}
                dq = phi if gradient is None else phi + gradient(q)
                psi[m] = dq - weight[m] @ dq / weight[m].sum()
            charges[m] = torch.as_tensor(part["charges"], device=self.device)
            parts.append(part)
        # a committee's values are its members' means (its charges too, as `Committee`)
        coulomb = {key: np.mean([part[key] for part in parts], axis=0)
                   for key in ("energy", "energies", "forces", "virial", "charges")}
        coulomb["member_forces"] = np.stack([part["forces"] for part in parts])
        psi_in = own(torch.as_tensor(psi, device=self.device))
        last = [] if self.charge_energy_runner is None else [own(charges)]
        outputs = self.runner(*inputs, psi_in, *last)
        return outputs, coulomb


def parity(model: Potential, path: str | os.PathLike, atoms: Atoms) -> dict[str, float]:
    """Largest differences between the compiled package and ``model`` on ``atoms``.

    Returns:
        ``energy`` (eV), ``energies`` (eV), ``forces`` (eV/Å), ``virial`` (eV) and, for a
        committee, ``forces_uncertainty`` (eV/Å), with electrostatics ``charges`` (e):
        max absolute differences.
    """
    compiled = load_compiled(path)(atoms)
    graph = AtomicGraph.from_atoms(atoms, model.cutoff, device=model.device)
    out = model(graph, compute_forces=True, compute_stress=True)
    reference = {"energy": out.energy[0], "energies": out.energies, "forces": out.forces,
                 "virial": out.virial[0], "forces_uncertainty": out.forces_uncertainty,
                 "charges": out.charges}
    return {key: float(np.abs(np.asarray(compiled[key]) - value.cpu().numpy()).max())
            for key, value in reference.items() if value is not None}


def load_compiled(path: str | os.PathLike) -> CompiledPotential:
    """Load a compiled package for use from Python (`CompiledPotential`)."""
    return CompiledPotential(path)

"""Long-range electrostatics from charges that a network predicts.

Two pieces:

- `Coulomb`: the Coulomb energy of given per-atom charges, with every point charge
  smeared into a Gaussian of width ``smearing`` (σ, Å). The pair interaction is

      E_ij = k_e q_i q_j erf(r_ij / (√2 σ)) / r_ij

  which is the bare Coulomb law beyond a few σ and goes smoothly to a finite value at
  short range, where the short-range learned term takes over (the damping of latent
  Ewald summation, Cheng, npj Comput. Mater. 11, 80 (2025); Gaussian charges as in
  the 4G-HDNNP, Ko et al., Nat. Commun. 12, 398 (2021)). Periodic cells (3D, and slabs
  with two periodic directions, Yeh–Berkowitz corrected) use **torch-pme**: this
  smeared interaction is exactly the reciprocal-space part of an Ewald sum, so Ewald
  (``method="ewald"``, cost ~N^2) or particle-mesh Ewald (``"pme"``, ~N log N)
  with an empty real-space neighbour list computes it, including every periodic image
  and the neutralising background of a charged cell. Non-periodic structures use the
  direct sum over all pairs (``"direct"``). Per-atom energies are ``k_e q_i φ_i / 2``
  with ``φ_i`` the potential at atom ``i`` from all other charges.
- `Electrostatics`: an energy term. A charge network (any registered architecture, its
  per-atom output read as a raw charge ``q̃_i`` in e), or a charge readout on the main
  learned term's own final features (``feature_source``: one network, about half the
  cost), predicts charges; the total-charge
  constraint redistributes the excess over the structure's atoms with learned per-
  element weights ``w_Z = exp(s_Z)`` (1 at initialisation)::

      q_i = q̃_i + w_i (Q - Σ_j q̃_j) / Σ_j w_j

  where ``Q`` is the structure's total charge (``atoms.info["total_charge"]``, e). The
  correction is global but uniform: the excess is spread by element, whatever the
  geometry (``charge_model="local"``, the default). Charges are trained against
  reference charges where the data has them (``loss.charges_weight``) or learned from
  energies and forces alone. Forces and stress come from the potential's single
  autograd call, through the charges' dependence on positions as well.
- Charge equilibration (``charge_model="qeq"``, as in the 4G-HDNNP, Ko et al. 2021,
  after Rappé & Goddard, J. Phys. Chem. 95, 3358 (1991)): the network predicts a local
  electronegativity ``χ_i`` and every element has a learned hardness ``J_Z > 0``; the
  charges minimise

      E_Qeq(q) = Σ_i (χ_i q_i + ½ (J_i + k_e √(2/π) / σ) q_i²) + ½ Σ_{i≠j} q_i q_j k_e K_ij

  subject to ``Σ q = Q``, with ``K_ij`` the same smeared (and, in periodic cells,
  Ewald-summed) kernel as the Coulomb energy and ``k_e √(2/π)/σ`` the Gaussian's self
  interaction: one ``(n + 1) x (n + 1)`` linear solve per structure. Charge then
  flows between distant atoms through the electrostatic coupling (an Al dopant far from
  an Au cluster changes its charge), which local charges with a uniform correction
  cannot do. The energy term is the Coulomb energy of these charges (the 4G-HDNNP
  choice, ``qeq_energy="coulomb"``) or the whole ``E_Qeq`` at its minimum
  (``qeq_energy="full"``, as in CENT, Ghasemi et al., Phys. Rev. B 92, 045131
  (2015)): its ``χ_i q_i + ½ J_i q_i²`` part is then a charge-dependent local energy,
  so the non-local charge transfer reaches the energy beyond the Coulomb sum. Cost: the
  kernel matrix is ``n^2`` (one Ewald channel per atom in periodic cells) and the solve
  ``n^3``: for structures up to a few hundred atoms.

- Charge-dependent local energy (``charge_energy=True``, the shared readout only): as
  the 4G-HDNNP's short-range energies take the charges as input, the shared readout
  predicts, beside the raw charge, a coupling ``a_i`` (eV/e) from the same local
  features, and every atom adds

      E_i^q = a_i q_i + b_Z q_i²

  with ``q_i`` the constrained (for ``qeq``: equilibrated) charge and ``b_Z`` a learned
  per-element curvature (eV/e², 0 at initialisation). A charge that moves in from far
  away (a dopant's electron reaching a supported cluster) then changes the local energy
  by an amount the local geometry sets, which a Coulomb sum alone cannot express. Cost:
  one more output of the readout. Forces and stress follow through ``q``'s dependence on
  all positions in the same autograd call.
  ``charge_energy="mlp"`` lets the charge enter non-linearly, as an input of a small
  network beside the atom's local features (the 4G-HDNNP's short-range atomic networks
  take the atom's charge as one more input, Ko et al. 2021): the shared readout gives
  `CHARGE_EMBEDDING` more channels ``e_i`` and every atom adds

      E_i^q = MLP([e_i, q_i])

  (last layer zero at initialisation, so the term starts at 0 eV). The linear form is
  this network's first-order expansion in ``q_i``; the network can also follow how
  the local energy of a site curves with its charge, which the Coulomb energy of
  reference charges may need to be cancelled.

Units: charges e, lengths Å, energies eV (k_e = 14.3996 eV Å / e^2).
Known limitation (shared with every global charge-equilibration scheme): two neutral
fragments far apart in one structure exchange charge, so E(A + B) differs from
E(A) + E(B) unless each fragment is its own structure.
"""

from __future__ import annotations

import math

import torch
import torchpme
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.errors import ModelError
from nnip.nn.embedding import TypeMap

__all__ = ["Coulomb", "Electrostatics", "FixedCharges", "COULOMB_CONSTANT", "METHODS",
           "CHARGE_MODELS", "CHARGE_ENERGIES", "CHARGE_EMBEDDING", "readout_channels"]

COULOMB_CONSTANT = 14.399645478425668
"""k_e = e^2 / (4π ε0) in eV Å."""

METHODS = ("auto", "ewald", "pme", "direct")
"""Ways to sum the Coulomb energy; ``auto`` picks direct (non-periodic), Ewald (periodic,
below `PME_FROM` atoms) or PME (larger periodic cells)."""

CHARGE_MODELS = ("local", "qeq")
"""How predicted charges meet the total-charge constraint: ``local`` (raw charges plus a
uniform per-element share of the excess) or ``qeq`` (charge equilibration)."""

CHARGE_ENERGIES = ("linear", "mlp")
"""Forms of the charge-dependent local energy: ``linear`` (``a_i q_i + b_Z q_i²``) or
``mlp`` (a network of the atom's local features and its charge)."""

CHARGE_EMBEDDING = 8
"""Feature channels the shared readout passes to the ``mlp`` charge energy."""


def _charge_energy_form(charge_energy: bool | str | None) -> str:
    """``""`` (none), ``"linear"`` (also ``True``) or ``"mlp"``.

    Raises:
        ValueError: another value.
    """
    form = "linear" if charge_energy is True else (charge_energy or "")
    if form and form not in CHARGE_ENERGIES:
        raise ValueError(f"electrostatics charge_energy must be true/false or one of "
                         f"{CHARGE_ENERGIES}, got {charge_energy!r}")
    return form


def readout_channels(charge_energy: bool | str | None) -> int:
    """Outputs per atom of a shared charge readout.

    The raw charge, then the coupling (``linear``) or the ``CHARGE_EMBEDDING`` features
    of the ``mlp`` charge energy.

    Raises:
        ValueError: ``charge_energy`` is not one of the forms.
    """
    return {"": 1, "linear": 2, "mlp": 1 + CHARGE_EMBEDDING}[_charge_energy_form(charge_energy)]


PME_FROM = 50
"""``auto`` switches from Ewald to PME at this many atoms per periodic structure.

Measured by benchmarks/md/bench_coulomb.py (1 CPU thread, σ = 1 Å, energy + gradient):
rock salt 8 atoms Ewald 1.3 ms / PME 2.2 ms; 64 atoms 32 / 9 ms; 216 atoms 520 / 126 ms;
192-atom water box 155 / 11 ms.
"""


class Coulomb(nn.Module):
    """Coulomb energy of Gaussian-smeared charges, per atom.

    Args:
        smearing: Gaussian width σ in Å (the damping length; 1 Å by default). Larger
            widths cost much less in periodic cells (k-space work ~σ^-3) and leave more
            of the short-range Coulomb interaction to the learned term.
        method: one of `METHODS`.
        lr_wavelength: Ewald's shortest reciprocal wavelength in Å (default σ/2, which
            gives energies to ~1e-7 relative; σ gives only ~1e-3).
        mesh_spacing: PME mesh spacing in Å (default σ/2).
        interpolation_nodes: PME interpolation order (6 with mesh σ/2: ~3e-6 relative
            to Ewald; 4 only ~1e-4).

    """

    def __init__(self, smearing: float = 1.0, method: str = "auto",
                 lr_wavelength: float | None = None, mesh_spacing: float | None = None,
                 interpolation_nodes: int = 6) -> None:
        super().__init__()
        if not smearing > 0:
            raise ValueError(f"electrostatics smearing must be > 0 Å, got {smearing}")
        if method not in METHODS:
            raise ValueError(f"electrostatics method must be one of {METHODS}, got {method!r}")
        self.smearing, self.method = float(smearing), method
        self.lr_wavelength = float(lr_wavelength or smearing / 2)
        self.mesh_spacing = float(mesh_spacing or smearing / 2)
        potential = torchpme.CoulombPotential(smearing=self.smearing)
        self.ewald = torchpme.EwaldCalculator(potential, lr_wavelength=self.lr_wavelength)
        self.pme = torchpme.PMECalculator(potential, mesh_spacing=self.mesh_spacing,
                                          interpolation_nodes=int(interpolation_nodes))

    def forward(self, graph: AtomicGraph, charges: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in eV of charges ``(n_atoms,)`` in e.

        Raises:
            ModelError: a structure periodic in exactly one direction, a periodic
                structure without a 3D cell, or ``method="direct"`` on a periodic one.

        """
        energies = []
        for k, pos, q, cell, pbc, n_periodic in self._structures(graph, charges):
            potential = (self._direct(pos, q) if n_periodic == 0 else
                         self._periodic(k, pos, cell, pbc, q, n_periodic))
            energies.append(COULOMB_CONSTANT * q * potential)
        return torch.cat(energies) if energies else charges.new_zeros(0)

    def _structures(self, graph: AtomicGraph, charges: torch.Tensor | None = None):
        """Yield ``(k, positions, charges, cell, pbc, n_periodic)`` per structure.

        ``charges`` (cast to the positions' dtype) is None when not given. Molecules
        (``n_periodic == 0``) take the direct sum whatever the method.

        Raises:
            ModelError: ``method="direct"`` on a periodic structure.
        """
        starts = torch.cumsum(graph.atoms_per_system, 0) - graph.atoms_per_system
        for k, (start, n) in enumerate(zip(starts.tolist(), graph.atoms_per_system.tolist())):
            pos = graph.positions[start:start + n]
            q = None if charges is None else charges[start:start + n].to(pos.dtype)
            pbc = graph.pbc[k]
            n_periodic = int(pbc.sum())
            if n_periodic and self.method == "direct":
                raise ModelError(f"structure {k} of the batch is periodic; electrostatics "
                                 "method 'direct' is for molecules (use auto, ewald or pme)")
            yield k, pos, q, graph.cell[k].to(pos.dtype), pbc, n_periodic

    def kernels(self, graph: AtomicGraph) -> list[torch.Tensor]:
        """Each structure's kernel matrix ``K (n_k, n_k)`` in 1/Å.

        ``K_ij`` is the potential at atom ``i`` of a unit Gaussian charge on atom ``j``
        (all its periodic images and, in periodic cells, the neutralising background),
        without the self interaction: ``K_ii`` holds only atom ``i``'s own images. The
        energy of charges ``q`` is ``½ k_e qᵀ K q``; `Electrostatics`' charge
        equilibration solves with it. Periodic cells use Ewald unless ``method`` is
        ``pme``.

        Raises:
            ModelError: as `forward`.
        """
        out = []
        for k, pos, _, cell, pbc, n_periodic in self._structures(graph):
            if n_periodic == 0:
                out.append(self._direct_kernel(pos))
                continue
            unit = torch.eye(len(pos), dtype=pos.dtype, device=pos.device)  # a channel per atom
            # Ewald unless PME is asked for: one structure factor product serves all n
            # channels, where PME spreads and transforms a mesh per channel (110-atom
            # Au2-MgO cell, 1 thread: 113 ms per call against 2.8 s; benchmarks/md)
            half = self._periodic(k, pos, cell, pbc, unit, n_periodic,
                                  use_pme=self.method == "pme")
            out.append(half + half.T)  # torch-pme's potentials carry the energy's ½
        return out

    def _direct_kernel(self, pos: torch.Tensor) -> torch.Tensor:
        """``erf(r_ij / √2σ) / r_ij`` for ``i ≠ j``, 0 on the diagonal ``(n, n)``, 1/Å."""
        n = len(pos)
        diff = pos.unsqueeze(1) - pos.unsqueeze(0)  # (n, n, 3)
        same = torch.eye(n, dtype=torch.bool, device=pos.device)
        r2 = torch.where(same, torch.ones_like(diff[..., 0]), (diff**2).sum(-1))
        r = r2.sqrt()
        return torch.where(same, torch.zeros_like(r),
                           torch.erf(r / (math.sqrt(2.0) * self.smearing)) / r)

    def _direct(self, pos: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``φ_i / 2 = ½ Σ_{j≠i} q_j erf(r_ij / √2σ) / r_ij`` (e/Å) for one molecule."""
        return 0.5 * self._direct_kernel(pos) @ q

    def _periodic(self, k: int, pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                  q: torch.Tensor, n_periodic: int, use_pme: bool | None = None
                  ) -> torch.Tensor:
        if n_periodic == 1:
            raise ModelError(f"structure {k} of the batch is periodic in one direction only; "
                             "electrostatics supports 3D-periodic cells, slabs (2 periodic "
                             "directions) and molecules")
        if not float(torch.linalg.det(cell.detach()).abs()) > 1e-6:
            raise ModelError(f"structure {k} of the batch is periodic but its cell has no "
                             "volume; give the non-periodic direction a cell vector "
                             "(vacuum) for the slab-corrected Ewald sum")
        if use_pme is None:
            use_pme = self.method == "pme" or (self.method == "auto" and len(pos) >= PME_FROM)
        calculator = self.pme if use_pme else self.ewald
        empty = torch.zeros((0, 2), dtype=torch.long, device=pos.device)
        channels = q.unsqueeze(-1) if q.dim() == 1 else q
        potential = calculator(channels, cell, pos, empty, pos.new_zeros(0),
                               periodic=pbc.to(pos.device))
        return potential.squeeze(-1) if q.dim() == 1 else potential


class FixedCharges(nn.Module):
    """Per-element charges (e), for classical fixed-charge models and as a baseline.

    Use as the charge network of `Electrostatics` (e.g. rigid-ion NaCl: Na +1, Cl -1);
    the total-charge constraint still applies.

    Args:
        type_map: the model's elements.
        charges: element symbol -> charge in e.
    """

    def __init__(self, type_map: TypeMap, charges: dict[str, float]) -> None:
        super().__init__()
        self.type_map = type_map
        missing = [s for s in type_map.symbols if s not in charges]
        if missing:
            raise ValueError(f"FixedCharges has no charge for element(s) {missing}")
        self.register_buffer("values", torch.tensor([float(charges[s]) for s in
                                                     type_map.symbols], dtype=torch.float64))

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Charges ``(n_atoms,)`` in e."""
        return self.values[self.type_map(graph.atomic_numbers)].to(graph.positions.dtype)


class Electrostatics(nn.Module):
    """Energy term: Coulomb energy of charges predicted by a network.

    Args:
        charge_net: a module ``graph -> (n_atoms,)`` read as raw charges in e (any
            registered architecture); with ``feature_source``, a readout
            ``(n, F) -> (n, 1)`` applied to that term's final per-atom features.
        type_map: the model's elements.
        smearing, method, lr_wavelength, mesh_spacing: see `Coulomb`.
        feature_source: name of the `Potential` term (the main learned term) whose
            features the charge readout shares: one message-passing network for energies
            and charges, as in latent Ewald summation, instead of a second network of
            its own. `Potential` routes the features.
        charge_model: one of `CHARGE_MODELS`. ``qeq``: the network's raw output
            ``q̃_i`` is read as the electronegativity ``χ_i = −d₀ q̃_i`` (eV/e, with
            ``d₀ = hardness + k_e √(2/π)/σ`` so that an uncoupled atom takes ``q̃_i``),
            and the charges come from charge equilibration (module docstring).
        hardness: initial hardness ``J_Z`` of every element in eV/e² (``qeq``; learned).
        qeq_energy: ``coulomb`` (the Coulomb energy of the equilibrated charges) or
            ``full`` (all of ``E_Qeq``), ``qeq`` only.
        charge_energy: add a charge-dependent local energy (module docstring):
            ``"linear"`` (or True) ``a_i q_i + b_Z q_i²``, with a readout of two outputs
            per atom (raw charge, coupling ``a_i`` in eV/e); ``"mlp"``: a network of
            ``[e_i, q_i]``, with a readout of ``1 + CHARGE_EMBEDDING`` outputs (raw
            charge, features ``e_i``). Needs ``feature_source``. False or ``""``: none.

    """

    long_range = True
    """Reaches beyond the neighbour-list cutoff (the physics checks treat it apart)."""

    def __init__(self, charge_net: nn.Module, type_map: TypeMap, smearing: float = 1.0,
                 method: str = "auto", lr_wavelength: float | None = None,
                 mesh_spacing: float | None = None, feature_source: str | None = None,
                 charge_model: str = "local", hardness: float = 5.0,
                 qeq_energy: str = "coulomb", charge_energy: bool | str = False) -> None:
        super().__init__()
        charge_energy = _charge_energy_form(charge_energy)
        if charge_energy and feature_source is None:
            raise ValueError("electrostatics charge_energy reads its coupling from the main "
                             "model's features: use arch 'shared' (the default)")
        if charge_model not in CHARGE_MODELS:
            raise ValueError(f"electrostatics charge_model must be one of {CHARGE_MODELS}, "
                             f"got {charge_model!r}")
        if qeq_energy not in ("coulomb", "full"):
            raise ValueError("electrostatics qeq_energy must be 'coulomb' or 'full', got "
                             f"{qeq_energy!r}")
        if not hardness > 0:
            raise ValueError(f"electrostatics hardness must be > 0 eV/e^2, got {hardness}")
        self.charge_net = charge_net
        self.type_map = type_map
        self.feature_source = feature_source
        self.charge_model = charge_model
        n_elements = len(type_map.atomic_numbers)
        self.coulomb = Coulomb(smearing, method, lr_wavelength, mesh_spacing)
        if charge_model == "local":
            self.log_weight = nn.Parameter(torch.zeros(n_elements))
        else:
            self.hardness = float(hardness)
            self.qeq_energy = qeq_energy
            self.log_hardness = nn.Parameter(torch.full((n_elements,), math.log(hardness)))
            self.self_interaction = COULOMB_CONSTANT * math.sqrt(2.0 / math.pi) / smearing
        self.charge_energy: str = charge_energy
        """``""`` (none), ``"linear"`` or ``"mlp"``."""
        if charge_energy == "linear":  # b_Z in eV/e^2
            self.charge_curvature = nn.Parameter(torch.zeros(n_elements))
        elif charge_energy == "mlp":
            from nnip.nn.mlp import MLP

            self.charge_energy_net = MLP([CHARGE_EMBEDDING + 1, 16, 1], "silu")
            with torch.no_grad():  # the term starts at 0 eV
                self.charge_energy_net[-1].weight.zero_()
                self.charge_energy_net[-1].bias.zero_()

    @property
    def readout_channels(self) -> int:
        """Outputs per atom of the shared readout (charge, then ``charge_energy``'s inputs)."""
        return readout_channels(self.charge_energy)

    def _split(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw charges ``(n_atoms,)`` e and the rest of the readout (or None).

        The rest, ``(n_atoms, readout_channels - 1)``: the couplings in eV/e (``linear``,
        one column) or the features of the ``mlp`` charge energy.

        Raises:
            ModelError: the readout's output does not have the expected channels.
        """
        if not self.charge_energy:
            return raw, None
        width = self.readout_channels
        if raw.dim() != 2 or raw.shape[1] != width:
            raise ModelError(f"electrostatics with charge_energy {self.charge_energy!r} "
                             f"expects {width} readout channels per atom, got "
                             f"{tuple(raw.shape)}")
        return raw[:, 0], raw[:, 1:]

    def charge_energies(self, atomic_numbers: torch.Tensor, charges: torch.Tensor,
                        extra: torch.Tensor) -> torch.Tensor:
        """Charge-dependent local energies ``(n_atoms,)`` in eV.

        Args:
            atomic_numbers: ``(n_atoms,)``.
            charges: ``(n_atoms,)`` constrained (or equilibrated) charges q in e.
            extra: ``(n_atoms, readout_channels - 1)``, the readout beside the raw charge:
                the couplings ``a_i`` in eV/e (``linear``: ``a_i q_i + b_Z q_i²``) or the
                features ``e_i`` (``mlp``: ``MLP([e_i, q_i])``).

        Raises:
            ModelError: the term has no charge energy.
        """
        q = charges
        if self.charge_energy == "mlp":
            net_dtype = self.charge_energy_net[0].weight.dtype
            inputs = torch.cat([extra.to(net_dtype), q.to(net_dtype)[:, None]], 1)
            return self.charge_energy_net(inputs).squeeze(-1).to(q.dtype)
        if self.charge_energy != "linear":
            raise ModelError("this electrostatics term has no charge_energy")
        curvature = self.charge_curvature[self.type_map(atomic_numbers)]
        return q * (extra[:, 0].to(q.dtype) + curvature.to(q.dtype) * q)

    def raw_charges(self, graph: AtomicGraph) -> torch.Tensor:
        """Unconstrained charges ``q̃ (n_atoms,)`` in e from ``charge_net``.

        Raises:
            ModelError: the charges are read from another term's features.
        """
        if self.feature_source is not None:
            raise ModelError(f"these charges are read from term {self.feature_source!r}'s "
                             "features: evaluate the whole Potential, not this term")
        return self.charge_net(graph)

    def weights(self, graph: AtomicGraph) -> torch.Tensor:
        """Constraint weights ``w_i = exp(s_Z) (n_atoms,)``, dimensionless (``local``).

        Raises:
            ModelError: charge equilibration has no such weights.
        """
        if self.charge_model != "local":
            raise ModelError("charge_model 'qeq' solves for all charges at once; it has no "
                             "per-atom constraint weights (see hardnesses)")
        return self.log_weight[self.type_map(graph.atomic_numbers)].exp()

    def hardnesses(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom hardness ``J_i (n_atoms,)`` in eV/e² (``qeq``)."""
        return self.log_hardness[self.type_map(graph.atomic_numbers)].exp()

    def _equilibrate(self, graph: AtomicGraph, raw: torch.Tensor, with_energies: bool = True
                     ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Charge equilibration: per-atom energies (eV; `qeq_energy`) and charges (e).

        Solves ``[[A, 1], [1ᵀ, 0]] [q; −μ] = [−χ; Q]`` per structure, with
        ``A = k_e K + diag(J_i + k_e √(2/π)/σ)`` and ``χ = −d₀ q̃``. The energies are
        None without ``with_energies``.
        """
        dtype = graph.positions.dtype
        diagonal = self.hardnesses(graph).to(dtype) + self.self_interaction
        chi = -(self.hardness + self.self_interaction) * raw.to(dtype)
        total = graph.total_charge.to(dtype)
        energies, charges, start = [], [], 0
        for k, kernel in enumerate(self.coulomb.kernels(graph)):
            n = len(kernel)
            span = slice(start, start + n)
            start += n
            ones = kernel.new_ones(n, 1)
            system = torch.cat([
                torch.cat([COULOMB_CONSTANT * kernel + torch.diag(diagonal[span]), ones], 1),
                torch.cat([ones.T, kernel.new_zeros(1, 1)], 1)], 0)
            q = torch.linalg.solve(system, torch.cat([-chi[span], total[k:k + 1]]))[:n]
            charges.append(q)
            if with_energies:
                energy = 0.5 * COULOMB_CONSTANT * q * (kernel @ q)
                if self.qeq_energy == "full":
                    energy = energy + q * (chi[span] + 0.5 * diagonal[span] * q)
                energies.append(energy)
        if not charges:
            return (raw.new_zeros(0) if with_energies else None), raw.new_zeros(0)
        return (torch.cat(energies) if with_energies else None), torch.cat(charges)

    def charges(self, graph: AtomicGraph, raw: torch.Tensor | None = None) -> torch.Tensor:
        """Charges ``(n_atoms,)`` in e that sum to each structure's total charge.

        Args:
            graph: the batch.
            raw: ``(n_atoms,)`` unconstrained charges when they come from a shared
                network (``feature_source``); computed by ``charge_net`` otherwise.
        """
        if raw is None:
            raw = self.raw_charges(graph)
        raw = self._split(raw)[0]
        if self.charge_model == "qeq":
            return self._equilibrate(graph, raw, with_energies=False)[1]
        return self._local(graph, raw)

    def _local(self, graph: AtomicGraph, raw: torch.Tensor) -> torch.Tensor:
        """Local charges ``q̃ + w (Q − Σ q̃) / Σ w`` (e) from raw charges ``(n_atoms,)``."""
        weight = self.weights(graph).to(raw.dtype)
        n = graph.n_systems
        total = graph.total_charge.to(raw.dtype)
        raw_sum = raw.new_zeros(n).index_add(0, graph.system_idx, raw)
        weight_sum = raw.new_zeros(n).index_add(0, graph.system_idx, weight)
        excess = (total - raw_sum) / weight_sum  # (n_systems,)
        return raw + weight * excess[graph.system_idx]

    def energies_and_charges(self, graph: AtomicGraph, raw: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom Coulomb energies (eV) and charges (e), both ``(n_atoms,)``.

        ``raw`` as in `charges` (with ``charge_energy``: ``(n_atoms, readout_channels)``,
        raw charges and the charge energy's inputs).
        """
        raw, coupling = self._split(self.raw_charges(graph) if raw is None else raw)
        if self.charge_model == "qeq":
            energies, q = self._equilibrate(graph, raw)
        else:
            q = self._local(graph, raw)
            energies = self.coulomb(graph, q)
        if coupling is not None:
            energies = energies + self.charge_energies(graph.atomic_numbers, q, coupling)
        return energies, q

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom Coulomb energies ``(n_atoms,)`` in eV."""
        return self.energies_and_charges(graph)[0]

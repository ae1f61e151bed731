"""Physics checks every nnip potential must pass, as public functions.

Each ``check_*`` function evaluates a `Potential` on structures, compares against what
physics demands, and raises ``AssertionError`` with the measured error when the
potential fails. They return the measured error (a float, relative unless stated) so
benchmarks and reports can show it. ``run_all_checks`` runs them all.

Tolerances follow the model dtype (`tolerances`): in float64 symmetry checks hold to
~1e-10 relative and finite differences to ~1e-6; in float32 symmetry holds to ~1e-4
relative, and instead of finite differences (meaningless in single precision) the
float32 forces and stress are compared with the same weights evaluated in float64.

Example:
    >>> import nnip, nnip.testing
    >>> model = nnip.models.build("schnet", elements=["Cu"], cutoff=4.0, n_features=16)
    >>> errors = nnip.testing.run_all_checks(model)

"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter

from nnip.calculators.ase import NNIPCalculator
from nnip.data.graph import AtomicGraph
from nnip.models.potential import Potential

__all__ = [
    "Tolerances",
    "tolerances",
    "example_structures",
    "check_rotation",
    "check_translation",
    "check_permutation",
    "check_supercell",
    "check_batch",
    "check_forces_fd",
    "check_stress_fd",
    "check_cell_filter_gradient",
    "check_cutoff_smoothness",
    "check_separability",
    "check_contracts",
    "check_float32_against_float64",
    "run_all_checks",
]


@dataclass(frozen=True)
class Tolerances:
    """Relative tolerances of the checks for one dtype.

    Attributes:
        symmetry: invariance/equivariance (rotation, translation, permutation, images).
        batch: batched versus single evaluation.
        finite_difference: forces and stress versus finite differences (float64 only).

    """

    symmetry: float
    batch: float
    finite_difference: float


def tolerances(dtype: torch.dtype) -> Tolerances:
    """Tolerances used for a model dtype."""
    if dtype == torch.float64:
        return Tolerances(symmetry=1e-10, batch=1e-10, finite_difference=1e-6)
    return Tolerances(symmetry=1e-4, batch=1e-4, finite_difference=float("nan"))


# ----------------------------------------------------------------------------- helpers

def _relative_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-2) -> float:
    """max|a - b| / max(max|b|, floor): relative to the size of the reference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor))


def _require(error: float, tol: float, what: str) -> float:
    if not error <= tol:  # also catches NaN
        raise AssertionError(f"{what}: relative error {error:.3e} exceeds {tol:.1e}")
    return error


def _predict(model: Potential, frames: Atoms | Sequence[Atoms]) -> dict[str, np.ndarray]:
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    periodic = all(a.pbc.all() for a in frames)
    out = model.predict(frames, compute_forces=True, compute_stress=periodic)
    result = {"energy": out.energy.cpu().numpy(), "energies": out.energies.cpu().numpy(),
              "forces": out.forces.cpu().numpy()}
    if periodic:
        result["stress"] = out.stress.cpu().numpy()
    return result


def _random_rotation(rng: np.random.Generator, proper: bool) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q if proper else -q


def _min_distance(positions: np.ndarray) -> float:
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return float(d[np.triu_indices(len(positions), 1)].min()) if len(positions) > 1 else np.inf


def example_structures(elements: Sequence[str], cutoff: float, seed: int = 0) -> dict[str, Atoms]:
    """Small structures that exercise every code path, made from ``elements``.

    Returns:
        ``triclinic``: a skewed, rattled periodic crystal with a random mix of elements;
        ``small_cell``: a periodic cell shorter than twice the cutoff (self-images);
        ``slab``: periodic in x and y only; ``molecule``: a non-periodic cluster.
        All have interatomic distances >= ~1.9 Å and lattice spacing ~2.6 Å.

    """
    rng = np.random.default_rng(seed)
    symbols = list(elements)

    def decorate(atoms: Atoms) -> Atoms:
        atoms.symbols = [symbols[k] for k in rng.integers(0, len(symbols), len(atoms))]
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        return atoms

    base = bulk("Cu", "fcc", a=3.7, cubic=True)
    triclinic = base * (2, 1, 1)
    shear = np.array([[1.0, 0.06, -0.04], [0.03, 0.97, 0.05], [-0.02, 0.04, 1.05]])
    triclinic.set_cell(triclinic.cell.array @ shear, scale_atoms=True)
    small = bulk("Cu", "fcc", a=3.7)  # primitive cell: one atom, ~2.6 Å vectors
    small = small * (1, 1, 2)
    slab = base * (1, 1, 2)
    slab.pbc = (True, True, False)
    slab.center(vacuum=6.0, axis=2)
    molecule = Atoms("Cu8", positions=bulk("Cu", "fcc", a=3.7, cubic=True).repeat(
        (2, 1, 1)).positions[:8] * 0.8, pbc=False)
    molecule.center(vacuum=5.0)
    out = {"triclinic": triclinic, "small_cell": small, "slab": slab, "molecule": molecule}
    out = {name: decorate(atoms) for name, atoms in out.items()}
    if min(_min_distance(a.positions) for a in out.values()) < 1.5:  # pragma: no cover
        raise RuntimeError("example_structures made overlapping atoms; change the seed")
    return out


def _default_frames(model: Potential, seed: int) -> dict[str, Atoms]:
    return example_structures(model.elements, model.cutoff, seed)


# ------------------------------------------------------------------------------ checks

def check_rotation(model: Potential, atoms: Atoms, *, seed: int = 0, n_trials: int = 2) -> float:
    """Energy invariant, forces rotate as vectors, stress as R S R^T.

    Both proper rotations and improper ones (rotation times inversion) are tried.
    """
    tol = tolerances(model.model_dtype).symmetry
    rng = np.random.default_rng(seed)
    ref = _predict(model, atoms)
    worst = 0.0
    for trial in range(2 * n_trials):
        rot = _random_rotation(rng, proper=trial % 2 == 0)  # (3, 3), column convention
        moved = atoms.copy()
        moved.positions = atoms.positions @ rot.T
        moved.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
        out = _predict(model, moved)
        kind = "proper" if trial % 2 == 0 else "improper"
        worst = max(worst, _require(_relative_error(out["energy"], ref["energy"]), tol,
                                    f"energy under {kind} rotation"))
        worst = max(worst, _require(_relative_error(out["forces"], ref["forces"] @ rot.T), tol,
                                    f"forces under {kind} rotation"))
        if "stress" in ref:
            expected = rot @ ref["stress"][0] @ rot.T
            worst = max(worst, _require(_relative_error(out["stress"][0], expected), tol,
                                        f"stress under {kind} rotation"))
    return worst


def check_translation(model: Potential, atoms: Atoms, *, seed: int = 0) -> float:
    """Rigid shifts change nothing, including shifts that wrap atoms across the cell."""
    tol = tolerances(model.model_dtype).symmetry
    ref = _predict(model, atoms)
    moved = atoms.copy()
    shift = np.random.default_rng(seed).normal(scale=3.0, size=3)
    moved.positions += shift
    variants = [moved]
    if atoms.pbc.any():
        wrapped = moved.copy()
        wrapped.wrap()
        if np.allclose(wrapped.positions, moved.positions):  # pragma: no cover
            raise AssertionError("translation check did not move any atom across the cell")
        variants.append(wrapped)
    worst = 0.0
    for k, variant in enumerate(variants):
        what = "wrapped" if k else "shifted"
        out = _predict(model, variant)
        for key in ref:
            worst = max(worst, _require(_relative_error(out[key], ref[key]), tol,
                                        f"{key} of {what} structure"))
    return worst


def check_permutation(model: Potential, atoms: Atoms, *, seed: int = 0) -> float:
    """Permuting atoms permutes forces and per-atom energies; energy and stress stay."""
    tol = tolerances(model.model_dtype).symmetry
    ref = _predict(model, atoms)
    perm = np.random.default_rng(seed).permutation(len(atoms))
    out = _predict(model, atoms[perm])
    worst = 0.0
    for key in ref:
        expected = ref[key][perm] if key in ("forces", "energies") else ref[key]
        worst = max(worst, _require(_relative_error(out[key], expected), tol,
                                    f"{key} after permutation"))
    return worst


def check_supercell(model: Potential, atoms: Atoms, *, repeat: tuple[int, int, int] = (2, 2, 2)
                    ) -> float:
    """A supercell has n times the energy, tiled forces and per-atom energies, same stress."""
    tol = tolerances(model.model_dtype).symmetry
    if not atoms.pbc.all():
        raise ValueError("check_supercell needs a periodic structure")
    n = int(np.prod(repeat))
    ref = _predict(model, atoms)
    out = _predict(model, atoms.repeat(repeat))
    worst = _require(_relative_error(out["energy"], n * ref["energy"]), tol, "supercell energy")
    for key in ("forces", "energies"):
        tiled = np.concatenate([ref[key]] * n)
        worst = max(worst, _require(_relative_error(out[key], tiled), tol, f"supercell {key}"))
    return max(worst, _require(_relative_error(out["stress"], ref["stress"]), tol,
                               "supercell stress"))


def check_batch(model: Potential, frames: Sequence[Atoms]) -> float:
    """A batch gives each structure's single result; no gradient flows between structures."""
    tol = tolerances(model.model_dtype).batch
    frames = list(frames)
    batch = model.predict(frames, compute_forces=True)
    worst, start = 0.0, 0
    for k, atoms in enumerate(frames):
        single = _predict(model, atoms)
        stop = start + len(atoms)
        energy = batch.energy[k].cpu().numpy()
        worst = max(worst, _require(_relative_error(energy, single["energy"][0]),
                                    tol, f"energy of structure {k} in a batch"))
        worst = max(worst, _require(_relative_error(batch.forces[start:stop].cpu().numpy(),
                                                    single["forces"]),
                                    tol, f"forces of structure {k} in a batch"))
        start = stop
    graph = AtomicGraph.from_atoms(frames, model.cutoff, device=model.device)
    positions = graph.positions.clone().requires_grad_(True)
    moved = type(graph)(**{**graph.items(), "positions": positions})
    energy = model(moved, compute_forces=False, training=True).energy
    grad = torch.autograd.grad(energy[0], positions)[0]
    leak = float(grad[graph.system_idx != 0].abs().max()) if len(frames) > 1 else 0.0
    if leak != 0.0:
        raise AssertionError(f"energy of structure 0 depends on other structures "
                             f"(max gradient {leak:.3e})")
    return worst


def check_forces_fd(model: Potential, atoms: Atoms, *, eps: float = 1e-4) -> float:
    """Forces equal central finite differences of the energy (float64 models)."""
    tol = tolerances(model.model_dtype).finite_difference
    moved = atoms.copy()
    moved.calc = NNIPCalculator(model)
    numeric = calculate_numerical_forces(moved, eps=eps)
    analytic = moved.get_forces()
    return _require(_relative_error(analytic, numeric), tol, "forces vs finite differences")


def check_stress_fd(model: Potential, atoms: Atoms, *, eps: float = 1e-5) -> float:
    """Stress equals finite strain derivatives of the energy (periodic, float64)."""
    tol = tolerances(model.model_dtype).finite_difference
    moved = atoms.copy()
    moved.calc = NNIPCalculator(model)
    numeric = calculate_numerical_stress(moved, eps=eps, voigt=True)
    analytic = moved.get_stress(voigt=True)
    return _require(_relative_error(analytic, numeric, floor=1e-4), tol,
                    "stress vs finite strain")


def check_cell_filter_gradient(model: Potential, atoms: Atoms, *, eps: float = 1e-5,
                               seed: int = 0) -> float:
    """Generalised forces of `FrechetCellFilter` match directional finite differences."""
    tol = tolerances(model.model_dtype).finite_difference
    moved = atoms.copy()
    moved.calc = NNIPCalculator(model)
    filt = FrechetCellFilter(moved)
    x0 = filt.get_positions().copy()
    forces = filt.get_forces()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(3):
        d = rng.normal(size=x0.shape)
        d /= np.linalg.norm(d)
        filt.set_positions(x0 + eps * d)
        e_plus = filt.get_potential_energy()
        filt.set_positions(x0 - eps * d)
        e_minus = filt.get_potential_energy()
        numeric = (e_plus - e_minus) / (2 * eps)
        analytic = -float(np.sum(forces * d))
        worst = max(worst, abs(numeric - analytic) / max(np.abs(forces).max(), 1e-2))
    filt.set_positions(x0)
    return _require(worst, tol * 10, "FrechetCellFilter gradient")


def short_range_part(model: Potential) -> Potential:
    """The model without its long-range terms (dispersion, electrostatics).

    Terms that reach beyond the cutoff by design are checked by their own tests; the
    cutoff and locality checks apply to the rest. Shares the weights of ``model``.
    """
    if not model.long_range:
        return model
    terms = {k: t for k, t in model.terms.items() if not getattr(t, "long_range", False)}
    return Potential(terms, model.type_map, model.cutoff, model.spec)


def check_cutoff_smoothness(model: Potential, element: str | None = None,
                            n_points: int = 201) -> float:
    """A dimer scanned through the cutoff: continuous energy, zero force from r_cut on.

    Long-range terms are left out (`short_range_part`). Returns the largest force found
    at or beyond the cutoff (eV/Å; must be exactly 0).
    """
    model = short_range_part(model)
    element = element or model.elements[0]
    rc = model.cutoff
    dists = np.linspace(0.5 * rc, 1.2 * rc, n_points)
    frames = [Atoms(f"{element}2", positions=[[0, 0, 0], [r, 0, 0]]) for r in dists]
    out = _predict(model, frames)
    energy = out["energy"]
    force = out["forces"].reshape(len(dists), 2, 3)[:, 1, 0]
    beyond = dists >= rc
    isolated = _predict(model, Atoms(element))["energy"][0]
    tail = float(np.abs(force[beyond]).max())
    # float64: exact to rounding; float32: the learned term's rounding of ~1e-7 per atom
    atol = (1e-12 if model.model_dtype == torch.float64 else 1e-6) * max(1.0, abs(isolated))
    if tail != 0.0 or not np.allclose(energy[beyond], 2 * isolated, rtol=0, atol=atol):
        raise AssertionError(f"dimer beyond the cutoff still interacts: max |F| {tail:.3e} eV/Å")
    step = dists[1] - dists[0]
    jump = np.abs(np.diff(energy))
    bound = 1.5 * np.maximum(np.abs(force[1:]), np.abs(force[:-1])) * step + 1e-9 + \
        0.5 * np.abs(force).max() * step**2 * 10
    if (jump > bound).any():
        k = int(np.argmax(jump - bound))
        raise AssertionError(f"energy jumps by {jump[k]:.3e} eV between r = {dists[k]:.4f} and "
                             f"{dists[k + 1]:.4f} Å: not continuous")
    inside = dists < rc
    near = np.abs(force[inside][-1]) / max(np.abs(force[inside]).max(), 1e-12)
    if near > 0.05:
        raise AssertionError(f"force just inside the cutoff is {near:.3f} of its maximum: "
                             "does not go smoothly to zero")
    return tail


def check_separability(model: Potential, atoms: Atoms) -> float:
    """Fragments far apart add up; an isolated atom's energy is its element's E0.

    ``atoms`` must be non-periodic. A copy shifted by 2 × (extent + cutoff) makes the
    second fragment; an extra atom beyond every cutoff must not change anything else.
    Long-range terms are left out of the fragment test (`short_range_part`; charge
    equilibration is global by design) but kept for the isolated atoms.
    """
    full = model
    model = short_range_part(model)
    tol = tolerances(model.model_dtype).symmetry
    if atoms.pbc.any():
        raise ValueError("check_separability needs a non-periodic structure")
    single = _predict(model, atoms)
    other = atoms.copy()
    other.positions += np.array([np.ptp(atoms.positions[:, 0]) + 2 * model.cutoff, 0, 0])
    both = _predict(model, atoms + other)
    worst = _require(_relative_error(both["energy"], 2 * single["energy"]), tol,
                     "E(A + B) versus E(A) + E(B)")
    worst = max(worst, _require(_relative_error(both["forces"][: len(atoms)], single["forces"]),
                                tol, "forces of fragment A with B far away"))
    e0 = model.terms["reference"].as_dict() if "reference" in model.terms else None
    if e0 is not None:
        for symbol in model.elements:
            lone = _predict(full, Atoms(symbol))["energy"][0]
            worst = max(worst, _require(_relative_error(lone, e0[symbol], floor=1.0), tol,
                                        f"isolated {symbol} atom versus its E0"))
    return worst


def check_contracts(model: Potential, frames: Sequence[Atoms]) -> float:
    """Inputs unmodified, no global torch state changed, outputs of documented shape."""
    graph = AtomicGraph.from_atoms(list(frames), model.cutoff, device=model.device)
    before = {k: v.clone() for k, v in graph.items().items()}
    state = (torch.get_default_dtype(), torch.is_grad_enabled(),
             torch.random.get_rng_state().clone())
    params = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(graph, compute_forces=True, compute_stress=True)
    for name, value in graph.items().items():
        if not torch.equal(value, before[name]) or value.requires_grad:
            raise AssertionError(f"the model modified its input field {name!r}")
    after = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.random.get_rng_state())
    if state[:2] != after[:2] or not torch.equal(state[2], after[2]):
        raise AssertionError("the model changed global torch state (dtype, grad mode or RNG)")
    for k, v in model.state_dict().items():
        if not torch.equal(v, params[k]):
            raise AssertionError(f"evaluating the model changed its state {k!r}")
    n_atoms, n_systems = graph.n_atoms, graph.n_systems
    shapes = {"energy": (n_systems,), "energies": (n_atoms,), "forces": (n_atoms, 3),
              "stress": (n_systems, 3, 3), "virial": (n_systems, 3, 3)}
    for name, shape in shapes.items():
        value = getattr(out, name)
        if tuple(value.shape) != shape or value.dtype != torch.float64:
            raise AssertionError(f"output {name} has shape {tuple(value.shape)} and dtype "
                                 f"{value.dtype}; expected {shape} float64")
        if value.device != graph.positions.device:
            raise AssertionError(f"output {name} is on {value.device}, input on "
                                 f"{graph.positions.device}")
    if not torch.allclose(out.energies.new_zeros(n_systems).index_add(
            0, graph.system_idx, out.energies), out.energy, rtol=1e-12, atol=1e-10):
        raise AssertionError("per-atom energies do not sum to the energy")
    return 0.0


def check_float32_against_float64(model: Potential, atoms: Atoms, *, rtol: float = 1e-4
                                  ) -> float:
    """The same weights in float32 and float64 agree (validates the float32 path)."""
    m64 = copy.deepcopy(model).to(torch.float64)
    m32 = copy.deepcopy(model).to(torch.float32)
    ref, out = _predict(m64, atoms), _predict(m32, atoms)
    worst = 0.0
    for key in ref:
        worst = max(worst, _require(_relative_error(out[key], ref[key]), rtol,
                                    f"float32 {key} versus float64"))
    return worst


def run_all_checks(model: Potential, *, seed: int = 0) -> dict[str, float]:
    """Run every check on `example_structures` and return the measured errors.

    In float32, finite-difference checks are replaced by the float32-versus-float64
    comparison. Raises ``AssertionError`` at the first failing check.
    """
    s = _default_frames(model, seed)
    float64 = model.model_dtype == torch.float64
    checks: dict[str, Callable[[], float]] = {
        "rotation_triclinic": lambda: check_rotation(model, s["triclinic"], seed=seed),
        "rotation_molecule": lambda: check_rotation(model, s["molecule"], seed=seed),
        "translation_triclinic": lambda: check_translation(model, s["triclinic"], seed=seed),
        "translation_slab": lambda: check_translation(model, s["slab"], seed=seed),
        "permutation": lambda: check_permutation(model, s["triclinic"], seed=seed),
        "supercell_small_cell": lambda: check_supercell(model, s["small_cell"]),
        "batch": lambda: check_batch(model, list(s.values())),
        "cutoff_smoothness": lambda: check_cutoff_smoothness(model),
        "separability": lambda: check_separability(model, s["molecule"]),
        "contracts": lambda: check_contracts(model, list(s.values())),
    }
    if float64:
        checks["forces_fd_triclinic"] = lambda: check_forces_fd(model, s["triclinic"])
        checks["forces_fd_slab"] = lambda: check_forces_fd(model, s["slab"])
        checks["stress_fd_triclinic"] = lambda: check_stress_fd(model, s["triclinic"])
        checks["stress_fd_small_cell"] = lambda: check_stress_fd(model, s["small_cell"])
        checks["cell_filter_gradient"] = lambda: check_cell_filter_gradient(
            model, s["triclinic"])
    else:
        checks["float32_vs_float64"] = lambda: check_float32_against_float64(
            model, s["triclinic"])
    return {name: check() for name, check in checks.items()}

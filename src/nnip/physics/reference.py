"""Per-element reference energies E0: the baseline energy term.

A potential predicts total DFT energies, which are dominated by a per-element constant
(the energy of an isolated atom on the code's energy scale, often hundreds of eV).
`ReferenceEnergies` adds that constant per atom; `fit_reference_energies` finds it by
least squares from the training data (energy ≈ Σ_elements count_Z · E0_Z), so the
learned term only models the interaction energy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.errors import DataError
from nnip.nn.embedding import TypeMap

__all__ = ["ReferenceEnergies", "fit_reference_energies"]


class ReferenceEnergies(nn.Module):
    """Energy term E_i = E0[Z_i], stored in float64 whatever the model dtype.

    E0 is kept in float64 even when the model runs in float32: totals such as
    -10384 eV need ~1e-7 relative precision to resolve meV.

    Args:
        type_map: the model's element map.
        e0: ``(n_types,)`` initial values in eV (default zeros).

    Shapes:
        ``graph -> (n_atoms,)`` float64, eV.

    """

    def __init__(self, type_map: TypeMap, e0: Sequence[float] | None = None) -> None:
        super().__init__()
        self.type_map = type_map
        values = torch.zeros(type_map.n_types, dtype=torch.float64)
        if e0 is not None:
            values = torch.as_tensor(e0, dtype=torch.float64).reshape(type_map.n_types).clone()
        self.register_buffer("e0", values)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):  # type: ignore[override]
        # Follow device moves but never the dtype cast of `model.to(torch.float32)`:
        # keep the float64 values and take only the new device.
        e0 = self.e0
        super()._apply(fn, recurse)
        self.e0 = e0.to(device=self.e0.device)
        return self

    def set(self, values: Mapping[str, float]) -> None:
        """Set E0 from ``{symbol: eV}``; every element of the model must be given."""
        missing = [s for s in self.type_map.symbols if s not in values]
        if missing:
            raise DataError(f"no reference energy for element(s) {missing}", field="E0")
        new = torch.tensor([float(values[s]) for s in self.type_map.symbols],
                           dtype=torch.float64, device=self.e0.device)
        self.e0.copy_(new)

    def as_dict(self) -> dict[str, float]:
        """``{symbol: E0 in eV}``."""
        return {s: float(v) for s, v in zip(self.type_map.symbols, self.e0.tolist())}

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom reference energies ``(n_atoms,)`` in eV (float64)."""
        return self.e0[self.type_map(graph.atomic_numbers)]


def fit_reference_energies(
    frames: Sequence[Atoms], elements: Sequence[str], *, rcond: float | None = None
) -> dict[str, float]:
    """Least-squares per-element energies from total energies.

    Solves ``min_E0 Σ_frames (E - Σ_Z n_Z E0_Z)^2``. When the compositions do not
    determine every E0 (e.g. one fixed composition), the minimum-norm solution is
    returned; the split between elements is then arbitrary but the sum that matters for
    the data is exact.

    Args:
        frames: structures with an energy label (``atoms.get_potential_energy()``, eV).
        elements: element symbols in the model's order.
        rcond: cut-off ratio for small singular values, passed to `numpy.linalg.lstsq`.

    Returns:
        ``{symbol: E0}`` in eV.

    Raises:
        DataError: no frame has an energy, or a frame has an element not in ``elements``.

    """
    index = {s: k for k, s in enumerate(elements)}
    if hasattr(frames, "composition"):  # a `nnip.data.store.FrameStore`: streamed columns
        present, store_counts = frames.composition()
        unknown = [s for s in present if s not in index]
        if unknown:
            raise DataError(f"element(s) {unknown} not among the model's {list(elements)}",
                            source=str(frames.path), field="atomic_numbers")
        energy, has_energy = frames.energies()
        counts = np.zeros((int(has_energy.sum()), len(elements)))
        counts[:, [index[s] for s in present]] = store_counts[has_energy]
        energies = energy[has_energy]
    else:
        rows, energy_list = [], []
        for k, atoms in enumerate(frames):
            if atoms.calc is None or "energy" not in atoms.calc.results:
                continue
            row = np.zeros(len(elements))
            for s in atoms.get_chemical_symbols():
                if s not in index:
                    raise DataError(f"element {s} not among the model's {list(elements)}",
                                    source=atoms.info.get("source"), index=k,
                                    field="atomic_numbers")
                row[index[s]] += 1
            rows.append(row)
            energy_list.append(float(atoms.calc.results["energy"]))
        counts, energies = np.array(rows).reshape(-1, len(elements)), np.array(energy_list)
    if not len(energies):
        raise DataError("no structure has an energy label to fit reference energies",
                        field="energy")
    solution, _, rank, _ = np.linalg.lstsq(counts, energies, rcond=rcond)
    if rank < len(elements):
        present = [s for s, n in zip(elements, counts.sum(axis=0)) if n > 0]
        warnings.warn(
            f"the compositions of the {len(energies)} labelled structures do not determine the "
            f"reference energy of every element ({present} appear in only {rank} independent "
            "combinations): the split of E0 between elements is arbitrary (minimum norm). "
            "Energies of these compositions are unaffected, but isolated atoms, dimers and "
            "other compositions are not; give model.e0 (e.g. isolated-atom DFT energies) to "
            "fix it.", stacklevel=2)
    return {s: float(v) for s, v in zip(elements, solution)}

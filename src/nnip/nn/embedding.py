"""Element handling: a model's type map from atomic numbers to type indices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase.data import atomic_numbers as _Z
from ase.data import chemical_symbols
from torch import nn

from nnip.errors import ModelError

__all__ = ["TypeMap", "head_minus_isolated", "minus_isolated", "to_atomic_numbers"]


def to_atomic_numbers(elements: Sequence[str | int]) -> list[int]:
    """Convert element symbols or numbers to a sorted, unique list of atomic numbers.

    Raises:
        ModelError: an unknown symbol or number outside 1..118.

    """
    out = set()
    for e in elements:
        if isinstance(e, str):
            if e not in _Z or e == "X":
                raise ModelError(f"unknown element symbol {e!r}")
            out.add(_Z[e])
        else:
            z = int(e)
            if not 1 <= z <= 118:
                raise ModelError(f"atomic number must be in 1..118, got {z}")
            out.add(z)
    if not out:
        raise ModelError("a model needs at least one element")
    return sorted(out)


class TypeMap(nn.Module):
    """Map atomic numbers to contiguous type indices ``0..n_types-1``.

    Args:
        atomic_numbers: the elements the model knows, as atomic numbers or symbols.

    Shapes:
        ``(n_atoms,)`` int64 Z -> ``(n_atoms,)`` int64 type index.

    """

    def __init__(self, atomic_numbers: Sequence[int | str]) -> None:
        super().__init__()
        zs = to_atomic_numbers(atomic_numbers)
        lookup = torch.full((119,), -1, dtype=torch.int64)
        lookup[torch.tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("lookup", lookup)
        self.atomic_numbers = zs

    @property
    def n_types(self) -> int:
        """Number of elements."""
        return len(self.atomic_numbers)

    @property
    def symbols(self) -> list[str]:
        """Element symbols in type order."""
        return [chemical_symbols[z] for z in self.atomic_numbers]

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Type indices of ``atomic_numbers`` (unknown elements give -1)."""
        return self.lookup[atomic_numbers.clamp(0, 118)]

    def check(self, atomic_numbers: torch.Tensor) -> None:
        """Raise `ModelError` naming any element this model does not know."""
        types = self(atomic_numbers)
        if bool((types < 0).any()):
            unknown = sorted({int(z) for z in atomic_numbers[types < 0].tolist()})
            names = [chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z)
                     for z in unknown]
            raise ModelError(f"element(s) {names} not known to this model, which was made "
                             f"for {self.symbols}")


def head_minus_isolated(head: nn.Module | None, features: torch.Tensor, n_atoms: int,
                        types: torch.Tensor) -> torch.Tensor | None:
    """An extra readout on a backbone's final features, relative to the isolated atom.

    Args:
        head: module ``(n, F) -> (n, k)``, or ``None``.
        features: ``(n_atoms + n_types, F)`` features of the atoms, then of one isolated
            atom per element (the backbones' extra nodes).
        n_atoms: number of real atoms.
        types: ``(n_atoms,)`` element indices.

    Returns:
        ``(n_atoms, k)``: ``head`` on each atom minus ``head`` on the isolated atom of its
        element (zero for an atom far from all others), or ``None`` without a head.
    """
    if head is None:
        return None
    return minus_isolated(head(features), n_atoms, types)


def minus_isolated(values: torch.Tensor, n_atoms: int, types: torch.Tensor) -> torch.Tensor:
    """Each atom's value minus that of the isolated atom of its element.

    Args:
        values: ``(n_atoms + n_types, ...)``: the atoms', then one isolated atom per
            element (the backbones' extra nodes).
        n_atoms: number of real atoms.
        types: ``(n_atoms,)`` element indices.

    Returns:
        ``(n_atoms, ...)``.

    The isolated atoms' values are picked by a one-hot product, not by indexing: the
    derivative of ``values[n_atoms:][types]`` is a scatter-add that torch 2.13's
    vectorised CPU code generation (`torch.compile`, more than one thread) fails on,
    while that of the product is a dense one (``n_types`` is small).
    """
    isolated = values[n_atoms:]
    n_types = isolated.shape[0]
    one_hot = nn.functional.one_hot(types, n_types).to(values.dtype)  # (n_atoms, n_types)
    picked = one_hot @ isolated.reshape(n_types, -1)  # (n_atoms, prod(...))
    return values[:n_atoms] - picked.reshape(n_atoms, *values.shape[1:])

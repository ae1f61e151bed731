"""Every field of an `AtomicGraph` and of `Targets`, declared once.

Each field has a *kind* that says what its first dimension counts:

- ``atom``: one row per atom, ``(n_atoms, ...)``;
- ``edge``: one row per directed edge, ``(n_edges, ...)`` — except ``edge_index``,
  which is ``(2, n_edges)`` and is concatenated along its last dimension;
- ``system``: one row per structure, ``(n_systems, ...)``.

Batching, slicing, ``.to()`` and the permutation tests are driven by this schema, so a
new field needs one line here and nothing else. The schema is immutable: code that needs
more fields builds an extended tuple and passes it explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Field", "GRAPH_FIELDS", "TARGET_FIELDS", "field_map"]

Kind = Literal["atom", "edge", "system"]
DType = Literal["float", "int", "bool"]


@dataclass(frozen=True)
class Field:
    """Description of one tensor field.

    Attributes:
        name: attribute name on the dataclass.
        kind: what the leading dimension counts (``atom``, ``edge`` or ``system``).
        dtype: ``float`` (follows the requested float dtype), ``int`` (int64) or ``bool``.
        shape: trailing shape after the leading dimension.
        unit: physical unit, ``""`` for dimensionless.
        doc: one-line description.
        offset_by: when batching, add the running count of this kind (``atom`` or
            ``system``) to the values (index fields), else ``None``.
        optional: whether the field may be ``None``.

    """

    name: str
    kind: Kind
    dtype: DType
    shape: tuple[int, ...]
    unit: str
    doc: str
    offset_by: Kind | None = None
    optional: bool = False


GRAPH_FIELDS: tuple[Field, ...] = (
    Field("positions", "atom", "float", (3,), "Å", "Cartesian positions"),
    Field("atomic_numbers", "atom", "int", (), "", "atomic numbers Z"),
    Field("system_idx", "atom", "int", (), "", "structure each atom belongs to, sorted",
          offset_by="system"),
    Field("cell", "system", "float", (3, 3), "Å", "lattice vectors as rows (ASE convention)"),
    Field("pbc", "system", "bool", (3,), "", "periodic along each lattice vector"),
    Field("total_charge", "system", "float", (), "e", "total charge of each structure"),
    Field("edge_index", "edge", "int", (), "",
          "(2, n_edges): row 0 centre atom i, row 1 neighbour j", offset_by="atom"),
    Field("edge_shift", "edge", "int", (3,), "",
          "integer lattice images S: r_ij = r_j - r_i + S @ cell"),
)
"""Fields of `AtomicGraph`."""

TARGET_FIELDS: tuple[Field, ...] = (
    Field("energy", "system", "float", (), "eV", "total energy"),
    Field("forces", "atom", "float", (3,), "eV/Å", "forces -dE/dr"),
    Field("stress", "system", "float", (3, 3), "eV/Å^3",
          "stress (1/V) dE/dε, ASE sign: positive is tensile"),
    Field("charges", "atom", "float", (), "e", "reference partial charges"),
    Field("weight", "system", "float", (), "", "per-structure loss weight"),
    Field("has_energy", "system", "bool", (), "", "energy label present"),
    Field("has_forces", "system", "bool", (), "", "forces label present"),
    Field("has_stress", "system", "bool", (), "", "stress label present"),
    Field("has_charges", "system", "bool", (), "", "charges label present"),
)
"""Fields of `Targets`; missing labels are zero-filled and flagged by the ``has_*`` masks."""


def field_map(fields: tuple[Field, ...]) -> dict[str, Field]:
    """Return ``{name: Field}`` for a schema."""
    return {f.name: f for f in fields}

"""n2p2 / RuNNer ``input.data`` reader.

One structure per block (n2p2 documentation, "Data file format: input.data")::

    begin
    comment <free text>                       (optional)
    lattice <ax> <ay> <az>                    (optional, 0 or 3 lines; rows = vectors)
    lattice <bx> <by> <bz>
    lattice <cx> <cy> <cz>
    atom <x> <y> <z> <element> <q> <n> <fx> <fy> <fz>    (one line per atom)
    energy <E>
    charge <Q>
    end

``q`` is the atomic (reference) charge in e, ``n`` an unused per-atom energy slot
(dropped), ``E`` the total energy and ``Q`` the total charge in e. The format has no
fixed units: values are returned as written and ``nnip.data.io.read`` converts them
(``units="atomic"`` for Bohr/Hartree files). A block with a lattice is periodic in all
three directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase.data import atomic_numbers

from nnip.errors import DataError

__all__ = ["read_n2p2"]


@dataclass
class _Block:
    """Raw values of one ``begin`` ... ``end`` block."""

    line: int
    comment: str | None = None
    lattice: list[list[float]] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    positions: list[list[float]] = field(default_factory=list)
    charges: list[float] = field(default_factory=list)
    forces: list[list[float]] = field(default_factory=list)
    energy: float | None = None
    charge: float | None = None


def read_n2p2(path: Path, key: int | slice) -> list[tuple[int, ase.Atoms, dict[str, Any]]]:
    """Read the structures selected by ``key`` from an n2p2 ``input.data`` file.

    Args:
        path: the file.
        key: frame index or slice.

    Returns:
        (frame index, atoms, raw labels) triples; labels ``energy`` (file units) when
        the block has an ``energy`` line and ``forces`` ``(n_atoms, 3)``. Per-atom
        charges are in ``atoms.arrays["ref_charges"]`` (e), the ``charge`` line in
        ``info["total_charge"]`` (e), the comment in ``info["comment"]``.

    Raises:
        DataError: malformed line, unknown keyword or element, missing ``begin`` or
            ``end``, lattice with other than 3 lines, index out of range; the message
            names the file, structure and line number.

    """
    source = str(path)
    blocks = _parse(path)
    try:
        chosen = range(len(blocks))[key]
    except IndexError as err:
        raise DataError(
            f"index {key} out of range ({len(blocks)} structures)", source=source
        ) from err
    chosen = [chosen] if isinstance(chosen, int) else list(chosen)
    return [(i, *_build(blocks[i], source, i)) for i in chosen]


def _parse(path: Path) -> list[_Block]:
    source = str(path)
    blocks: list[_Block] = []
    current: _Block | None = None
    try:
        with open(path, encoding="utf-8") as handle:
            lines = list(handle)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read as n2p2 input.data: {err}", source=source) from err
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        word, index = tokens[0], len(blocks)
        if word == "begin":
            if current is not None:
                raise _error(
                    f"'begin' before the 'end' of the block from line {current.line}",
                    source,
                    index,
                    number,
                )
            current = _Block(line=number)
        elif current is None:
            raise _error(
                f"expected 'begin' (n2p2 input.data), found {line.strip()[:60]!r}",
                source,
                index,
                number,
            )
        elif word == "end":
            blocks.append(current)
            current = None
        else:
            _add(current, word, tokens[1:], line, (source, index, number))
    if current is not None:
        raise _error(
            f"block from line {current.line} has no 'end'", source, len(blocks), len(lines)
        )
    return blocks


def _add(block: _Block, word: str, args: list[str], line: str, where: tuple) -> None:
    """Store one keyword line of a block."""
    if word == "comment":
        parts = line.split(None, 1)
        block.comment = parts[1].strip() if len(parts) > 1 else ""
    elif word == "lattice":
        block.lattice.append(_floats(args, 3, "lattice", where))
    elif word == "atom":
        if len(args) != 9:
            raise _error(
                f"atom line needs 9 values (x y z element q n fx fy fz), found {len(args)}",
                *where,
                field="atom",
            )
        block.positions.append(_floats(args[0:3], 3, "positions", where))
        block.symbols.append(args[3])
        block.charges.append(_floats(args[4:5], 1, "ref_charges", where)[0])
        block.forces.append(_floats(args[6:9], 3, "forces", where))
    elif word == "energy":
        block.energy = _floats(args, 1, "energy", where)[0]
    elif word == "charge":
        block.charge = _floats(args, 1, "total_charge", where)[0]
    else:
        raise _error(f"unknown keyword {word!r}", *where)


def _floats(args: list[str], count: int, name: str, where: tuple) -> list[float]:
    if len(args) != count:
        raise _error(f"expected {count} numbers, found {len(args)}", *where, field=name)
    try:
        return [float(a) for a in args]
    except ValueError as err:
        raise _error(f"expected numbers, found {args}", *where, field=name) from err


def _error(message: str, source: str, index: int, line: int, field: str | None = None):
    return DataError(f"line {line}: {message}", source=source, index=index, field=field)


def _build(block: _Block, source: str, index: int) -> tuple[ase.Atoms, dict[str, Any]]:
    unknown = sorted({s for s in block.symbols if s not in atomic_numbers})
    if unknown:
        raise DataError(
            f"unknown element symbols {unknown} (block from line {block.line})",
            source=source,
            index=index,
            field="element",
        )
    if len(block.lattice) not in (0, 3):
        raise DataError(
            f"expected 0 or 3 lattice lines, found {len(block.lattice)} "
            f"(block from line {block.line})",
            source=source,
            index=index,
            field="lattice",
        )
    periodic = len(block.lattice) == 3
    atoms = ase.Atoms(
        symbols=block.symbols,
        positions=np.array(block.positions, dtype=np.float64).reshape(-1, 3),
        cell=np.array(block.lattice) if periodic else None,
        pbc=periodic,
    )
    atoms.new_array("ref_charges", np.array(block.charges, dtype=np.float64))
    if block.charge is not None:
        atoms.info["total_charge"] = block.charge
    if block.comment is not None:
        atoms.info["comment"] = block.comment
    labels: dict[str, Any] = {"forces": np.array(block.forces, dtype=np.float64).reshape(-1, 3)}
    if block.energy is not None:
        labels["energy"] = block.energy
    return atoms, labels

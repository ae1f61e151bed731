"""Exceptions raised by nnip.

Every error about user input names *where* the problem is (file, structure index,
field) and *what* was expected versus what was found, so a user never has to read a
traceback from deep inside torch to find the bad frame.
"""

from __future__ import annotations

__all__ = ["NNIPError", "DataError", "ModelError", "ModelFileError", "ConfigError", "TrainingError"]


class NNIPError(Exception):
    """Base class of all nnip errors."""


def _location(source: str | None, index: int | None, field: str | None) -> str:
    parts = []
    if source is not None:
        parts.append(f"{source}")
    if index is not None:
        parts.append(f"structure {index}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


class DataError(NNIPError, ValueError):
    """Bad structure data: malformed file, missing label, non-finite value, bad cell.

    Args:
        message: what is wrong, with expected versus found.
        source: the file (or other origin) of the data, if known.
        index: index of the structure in that source, if known.
        field: the field name (``positions``, ``cell``, ``forces``, ...), if known.

    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        index: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source, self.index, self.field = source, index, field
        where = _location(source, index, field)
        super().__init__(f"{where}: {message}" if where else message)


class ModelError(NNIPError, ValueError):
    """A model cannot handle the given input (e.g. an element it was not trained on)."""


class ModelFileError(ModelError):
    """A model file is missing, unreadable, foreign, too new, or does not match its model.

    The message starts with the file's path and names the offending field.
    """


class ConfigError(NNIPError, ValueError):
    """A configuration value is unknown, out of range or inconsistent."""


class TrainingError(NNIPError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""

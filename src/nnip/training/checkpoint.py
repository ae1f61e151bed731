"""Atomic checkpoint files.

A checkpoint holds everything needed to continue a run exactly: model, EMA and best
weights, optimizer, scheduler, step counters, sampler position, RNG state, history and
the resolved config. It is written to a temporary file in the same directory, flushed to
disk, and renamed over the old one, so a run killed at any moment leaves either the old
or the new checkpoint, never a torn one. It loads with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nnip._files import atomic_torch_save
from nnip.errors import TrainingError

__all__ = ["save_atomic", "load_checkpoint"]


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (temp file + fsync + rename)."""
    return atomic_torch_save(obj, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by `save_atomic` (CPU tensors, ``weights_only=True``).

    Raises:
        TrainingError: the file is not a readable checkpoint.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise TrainingError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err}); "
                            "delete it to start the run afresh") from err
    if not isinstance(state, dict) or state.get("format") != "nnip-checkpoint":
        raise TrainingError(f"{path}: not an nnip checkpoint")
    return state

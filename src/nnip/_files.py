"""Atomic file writes shared by checkpoints, model files and the active-learning state."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_torch_save", "atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], *,
                 binary: bool = True) -> Path:
    """Write ``path`` atomically through ``write(handle)``.

    ``write`` fills a temporary file beside ``path``, which is fsynced and renamed over it.

    A process killed at any moment leaves either the old file or the new one, never a
    torn one. ``binary=False`` opens the handle in text mode (UTF-8). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) \
                as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (POSIX); not possible everywhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def atomic_torch_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """`torch.save` ``payload`` to ``path`` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda handle: torch.save(payload, handle))

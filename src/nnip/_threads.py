"""Scoped torch thread count: a setting applies to one call, never leaks to the caller."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int = 0) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the caller's count.

    Args:
        threads: torch intra-op threads inside the block (0: leave the count as it is).
            The caller's count comes back also when the block raises.
    """
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

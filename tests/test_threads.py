"""`nnip._threads.torch_threads`: a thread count holds inside the block only."""

from __future__ import annotations

import pytest
import torch

from nnip._threads import torch_threads


def test_thread_count_is_restored_after_the_block_and_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("stop")
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0 leaves the count alone
        assert torch.get_num_threads() == before

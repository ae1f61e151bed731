"""Data-parallel training across processes: ``torchrun --nproc-per-node N -m nnip train``.

The training code is the same for one process and for many. Under ``torchrun`` (its
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` environment variables) every process holds the
whole model, takes its share of each global batch (structures ``r, r + N, r + 2N, ...``
of the batch on rank ``r``), and the gradients are summed across processes before each
optimizer step, so all processes take the same step. Each loss term is normalised by
its global denominator (the summed weights of the whole global batch), so N processes
compute the gradient of exactly the loss a single process computes on the same global
batch — only the order of floating-point sums differs. The backend is ``gloo`` on CPU
and ``nccl`` on CUDA (each process on ``cuda:LOCAL_RANK``).

Multi-node: start ``torchrun`` on every node with the same rendezvous, e.g.
``torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint
host0:29500 -m nnip train config.yaml``; the run directory must be on a file system
all nodes see (rank 0 writes checkpoints, logs and the model file; every process
reads the checkpoint when resuming).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Group", "setup", "SINGLE"]


@dataclass
class Group:
    """The processes training together (one process: ``world == 1``, no communication).

    Attributes:
        rank: this process's rank.
        world: number of processes.
        local_rank: rank on this node (selects the GPU).
        owned: whether `setup` initialised the process group (and `close` ends it).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    def shard(self, batch: Sequence[int]) -> Sequence[int]:
        """This process's structures of a global batch."""
        return batch[self.rank::self.world] if self.world > 1 else batch

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` over all processes (in place; returned)."""
        if self.world > 1:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
        return values

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``parameters`` over all processes (one flat all-reduce).

        A parameter without a gradient on this process counts as zero.
        """
        if self.world == 1:
            return
        params = [p for p in parameters if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params])
        self.sum(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every process's ``module``."""
        if self.world == 1:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        """Wait for all processes."""
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        """End the process group if `setup` started it."""
        if self.owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owned = False


SINGLE = Group()
"""The group of a run in one process."""


def setup(device: str) -> Group:
    """Join the process group that ``torchrun`` describes, or return `SINGLE`.

    Args:
        device: the config's ``train.device`` (``auto``, ``cpu``, ``cuda``): CUDA runs use
            ``nccl`` and put each process on ``cuda:LOCAL_RANK``, CPU runs use ``gloo``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    owned = False
    if not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        owned = True
    return Group(rank=rank, world=world, local_rank=local, owned=owned)


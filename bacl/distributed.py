"""Process-group helpers that also work in a plain single-process run.

Statistics kept by losses and modules (FCBL's confusion matrix, FHM's feature
moments) are summed over processes so every process holds the same values. These
helpers make that summation a no-op when no process group is initialised, so the
same code runs in tests, on one GPU and under ``torchrun``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` in place over all processes and return it; unchanged without a group.

    Every process must call this the same number of times with same-shaped tensors
    (it is a collective), even a process that has nothing to add: pass zeros.
    """
    if is_dist() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor

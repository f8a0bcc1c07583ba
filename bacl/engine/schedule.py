"""Learning-rate schedule: linear warm-up then step decay, as a pure function of the iteration.

Being a pure function, it needs no state of its own in a checkpoint: the iteration
counter alone restores it.
"""

from __future__ import annotations


def scaled_lr(*, base_lr: float, base_batch_size: int, total_batch_size: int) -> float:
    """Linear scaling rule: ``base_lr`` is the rate for ``base_batch_size`` images per step."""
    return base_lr * total_batch_size / base_batch_size


def lr_factor(
    iteration: int,
    *,
    warmup_iters: int,
    warmup_factor: float,
    step_iters: list[int],
    gamma: float,
) -> float:
    """Multiplier of the peak learning rate at ``iteration`` (0-based).

    Warm-up ramps linearly from ``warmup_factor`` to 1 over ``warmup_iters`` (mmdetection's
    "linear" warm-up); afterwards the rate is multiplied by ``gamma`` at each step in
    ``step_iters`` that has been reached.
    """
    decay = gamma ** sum(1 for step in step_iters if iteration >= step)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        return decay * (warmup_factor * (1.0 - alpha) + alpha)
    return decay

"""Epoch-based training sampler: deterministic order, repeat factors, sharding, resume.

An epoch's sample list depends only on ``(seed, epoch)``: the repeat-factor rounding,
the shuffle and one augmentation seed per sample are all drawn from one generator
seeded with them. The list is the same for every process; each rank takes every
``world_size``-th entry. So a run gives the same samples, with the same augmentation,
whatever the number of DataLoader workers and wherever it was resumed.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from ..distributed import get_rank, get_world_size

# Augmentation seeds are drawn in [0, 2**63 - 1), valid for torch.Generator.manual_seed.
_AUG_SEED_HIGH = 2**63 - 1


class TrainingSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, aug_seed)`` for this rank, one epoch per iteration.

    Args:
        dataset_size: number of images, >= 1.
        seed: non-negative int; with the epoch, it fixes everything drawn.
        shuffle: permute the epoch's list (otherwise index order).
        repeat_factors: ``(dataset_size,)`` per-image factors (see
            :mod:`bacl.data.repeat_factor_sampler`); each epoch, image i appears
            ``floor(r_i)`` times plus once more with probability ``r_i - floor(r_i)``
            (detectron2's RepeatFactorTrainingSampler rounding).
        rank, world_size: this process's shard; from ``torch.distributed`` when it is
            initialised and they are not given, else 0 and 1.

    The epoch's list is padded, by repeating its first entries with fresh
    augmentation seeds, to a multiple of ``world_size`` so every rank gets the same
    number of samples. ``len()`` is this rank's count for the current epoch.

    Training resumes at epoch boundaries (a checkpoint is written after each epoch), so
    the state is the seed and the epoch.
    """

    def __init__(
        self,
        *,
        dataset_size: int,
        seed: int,
        shuffle: bool = True,
        repeat_factors: torch.Tensor | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if int(dataset_size) < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        self.dataset_size = int(dataset_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        if repeat_factors is not None:
            repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float64).flatten()
            if len(repeat_factors) != self.dataset_size:
                raise ValueError(
                    f"repeat_factors has {len(repeat_factors)} entries, "
                    f"dataset_size is {self.dataset_size}"
                )
            if not torch.isfinite(repeat_factors).all() or (repeat_factors < 0).any():
                raise ValueError("repeat_factors must be finite and non-negative")
        self.repeat_factors = repeat_factors

        world_size = get_world_size() if world_size is None else world_size
        rank = get_rank() if rank is None else rank
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        self.rank = int(rank)
        self.world_size = int(world_size)

        self.epoch = 0
        self._plan_epoch: int | None = None
        self._plan: tuple[list[int], list[int]] = ([], [])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields."""
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices, seeds = self._rank_plan()
        yield from zip(indices, seeds)

    def __len__(self) -> int:
        return len(self._rank_plan()[0])

    def state_dict(self) -> dict[str, int]:
        """Plain ints (safe for ``torch.load(weights_only=True)``)."""
        return {"seed": self.seed, "epoch": self.epoch, "dataset_size": self.dataset_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"seed", "epoch", "dataset_size"} - set(state)
        if missing:
            raise KeyError(f"sampler state is missing {sorted(missing)}")
        if int(state["dataset_size"]) != self.dataset_size:
            raise ValueError(
                f"sampler state is for {int(state['dataset_size'])} images, this dataset "
                f"has {self.dataset_size}"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._plan_epoch = None

    # ------------------------------------------------------------------ plan

    def _epoch_generator(self) -> torch.Generator:
        # SeedSequence mixes (seed, epoch) so neighbouring seeds or epochs do not give
        # related streams.
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)
        generator = torch.Generator()
        generator.manual_seed(int(state[0]) & (2**63 - 1))
        return generator

    def _global_plan(self) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        g = self._epoch_generator()
        if self.repeat_factors is None:
            indices = torch.arange(self.dataset_size)
        else:
            r = self.repeat_factors
            whole = torch.floor(r)
            extra = torch.rand(self.dataset_size, generator=g, dtype=torch.float64) < (r - whole)
            counts = whole.long() + extra.long()
            indices = torch.repeat_interleave(torch.arange(self.dataset_size), counts)
        if self.shuffle:
            indices = indices[torch.randperm(len(indices), generator=g)]
        seeds = torch.randint(0, _AUG_SEED_HIGH, (len(indices),), generator=g)
        return indices, seeds, g

    def _rank_plan(self) -> tuple[list[int], list[int]]:
        if self._plan_epoch != self.epoch:
            indices, seeds, g = self._global_plan()
            total = len(indices)
            padded = math.ceil(total / self.world_size) * self.world_size
            if padded > total:
                pad = padded - total
                reps = math.ceil(pad / total)
                indices = torch.cat([indices, indices.repeat(reps)[:pad]])
                seeds = torch.cat([seeds, torch.randint(0, _AUG_SEED_HIGH, (pad,), generator=g)])
            self._plan = (
                indices[self.rank::self.world_size].tolist(),
                seeds[self.rank::self.world_size].tolist(),
            )
            self._plan_epoch = self.epoch
        return self._plan


def split_sample_key(key: int | tuple[int, int], size: int) -> tuple[int, int | None]:
    """A dataset key (an index, or ``(index, aug_seed)`` as :class:`TrainingSampler`
    yields) -> ``(index in [0, size), aug_seed or None)``; negative indices count from the end."""
    if isinstance(key, tuple):
        if len(key) != 2:
            raise TypeError(f"key must be an index or (index, aug_seed), got {key!r}")
        index, aug_seed = operator.index(key[0]), operator.index(key[1])
    else:
        index, aug_seed = operator.index(key), None
    if not -size <= index < size:
        raise IndexError(f"index {index} out of range for {size} images")
    return index % size, aug_seed

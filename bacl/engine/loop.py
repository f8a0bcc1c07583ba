"""One epoch of training: the step, AMP, gradient clipping, the progress bar and the curves."""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .curves import TrainingCurves
from .freeze import train_mode
from .runtime import Runtime

log = logging.getLogger(__name__)


def reduce_loss_dict(losses: dict[str, torch.Tensor], world_size: int) -> dict[str, float]:
    """Mean of each loss term over processes, for logging only."""
    names = sorted(losses)
    values = torch.stack([losses[k].detach().float() for k in names])
    if world_size > 1:
        dist.all_reduce(values)
        values /= world_size
    return {k: float(v) for k, v in zip(names, values)}


def train_one_epoch(*, model: nn.Module, optimizer: torch.optim.Optimizer, loader, runtime: Runtime, epoch: int,
                    iteration: int, lr_at: Callable[[int], float], scaler: Optional[torch.amp.GradScaler],
                    clip_grad_norm: Optional[float], frozen_norms: Sequence[nn.Module] = (),
                    curves: Optional[TrainingCurves] = None) -> int:
    """Train one epoch; returns the iteration counter after it.

    ``frozen_norms`` stay in eval mode (see :mod:`bacl.engine.freeze`); ``curves`` (main
    process only) get the loss terms, their sum and the learning rate of every iteration.
    A non-finite loss stops the run before the step, naming the terms.
    """
    train_mode(model, frozen_norms)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", disable=not runtime.is_main, dynamic_ncols=True, leave=True)
    data_time = step_time = 0.0
    images_seen = 0
    tic = time.perf_counter()
    for images, targets in bar:
        t_data = time.perf_counter()
        images = [img.to(runtime.device, non_blocking=True) for img in images]
        targets = [{k: (v.to(runtime.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        lr = lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device_type=runtime.device.type, enabled=scaler is not None):
            losses = model(images, targets)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss is {float(total)} at epoch {epoch + 1}, iteration {iteration}: "
                f"{ {k: float(v) for k, v in losses.items()} }; lower solver.base_lr or set solver.clip_grad_norm")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            if clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
        toc = time.perf_counter()
        data_time += t_data - tic
        step_time += toc - tic
        images_seen += len(images) * runtime.world_size
        tic = toc
        logged = reduce_loss_dict(losses, runtime.world_size)
        logged_total = sum(logged.values())
        if curves is not None:
            curves.log(iteration, {"loss": logged_total, **logged, "lr": lr})
        bar.set_postfix(loss=f"{logged_total:.3f}", lr=f"{lr:.2e}",
                        img_s=f"{images_seen / max(step_time, 1e-9):.1f}",
                        data=f"{100 * data_time / max(step_time, 1e-9):.0f}%")
        iteration += 1
    if runtime.is_main:
        log.info("epoch %d: %.1f images/s, %.0f%% of the time waiting for data",
                 epoch + 1, images_seen / max(step_time, 1e-9), 100 * data_time / max(step_time, 1e-9))
    return iteration

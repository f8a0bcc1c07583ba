"""``train``: one command for a single process (CPU or one GPU) and for DDP under ``torchrun``.

What differs between stages (what trains, where it starts, FHM) is :mod:`bacl.engine.stages`;
this file runs any of them. Plain PyTorch DDP is enough here: a trainer framework would
hide the three things this loop must control exactly (what is frozen, which loss, what a
checkpoint holds) behind callbacks.

Resumption is exact on CPU: a checkpoint is written atomically at the end of every epoch
with the model, optimiser, AMP scaler, sampler and RNG states and the resolved parameters;
the learning rate is a pure function of the iteration, and augmentation draws from
per-sample seeds the sampler derives from (seed, epoch). Whether a checkpoint may be
continued is one rule, :func:`bacl.engine.stages.stale_reason`: ``resume`` refuses a stale
one, ``auto_resume`` (the pipeline's mode) starts afresh instead.

The training log is the dvclive curves in ``<output_dir>/dvclive/`` (:mod:`bacl.engine.curves`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import yaml

from ..atomic_io import atomic_write
from ..file_hash import sha256_of
from ..params import ParamError, Params
from .build import build_classification_loss, build_model, build_train_dataset, build_train_loader, training_statistics
from ..checkpoint import load_checkpoint, save_checkpoint
from .curves import CURVES_DIR, TrainingCurves
from .loop import train_one_epoch
from .runtime import Runtime, rng_state, set_rng_state, setup_runtime
from .schedule import lr_factor, scaled_lr
from .stages import (FINAL_WEIGHTS, generator_states, get_stage, init_checkpoint, prepare_stage,
                     restore_generator_states, stale_reason)

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"


def write_resolved_params(output_dir: Path, params: Params) -> None:
    text = yaml.safe_dump(params.to_dict(), sort_keys=False).encode()
    atomic_write(output_dir / "params.yaml", lambda handle: handle.write(text))


def _checkpoint_to_continue(last: Path, params: Params, *, stage: str, init_sha256: Optional[str],
                            resume: bool, auto_resume: bool, runtime: Runtime) -> Optional[dict[str, Any]]:
    """The state of ``last`` if this run continues it, else ``None`` (a stale one is
    removed under ``auto_resume``); an existing run without a resume flag is an error."""
    if not last.exists():
        if resume and runtime.is_main:
            log.info("--resume: no checkpoint at %s yet, starting from scratch", last)
        return None
    if not (resume or auto_resume):
        raise FileExistsError(f"{last} exists: pass --resume to continue that run, or choose another "
                              f"{stage}.output_dir")
    state = load_checkpoint(last)
    reason = stale_reason(state, params, stage=stage, init_sha256=init_sha256)
    if reason is None:
        return state
    if resume:
        raise ParamError(f"{last}: was written by a different run ({reason}); not resuming it")
    if runtime.world_size > 1:
        dist.barrier()  # every process has read it before it goes
    if runtime.is_main:
        log.info("not continuing %s: %s; starting afresh", last, reason)
        last.unlink()
    return None


def train(params: Params, *, stage: str = "representation", resume: bool = False, auto_resume: bool = False,
          device: Optional[str] = None) -> Path:
    """Train ``stage`` as ``params`` says; returns the path of its final weights
    (``<stage>.output_dir/model_final.pt``).

    With ``resume`` an existing ``checkpoints/last.pt`` of the same run is continued;
    without it an existing run is an error rather than silently overwritten. With
    ``auto_resume`` it is continued if it may be, and otherwise the run starts afresh.
    """
    get_stage(stage)
    settings, solver = params.stage(stage), params.solver
    out = Path(settings.output_dir)
    start = init_checkpoint(params, stage)
    if start is not None and (out / FINAL_WEIGHTS).resolve() == start.resolve():
        raise ParamError(f"{stage}.output_dir: {out} would overwrite the weights it starts from ({start})")
    init_sha256 = sha256_of(start) if start is not None and start.is_file() else None
    runtime = setup_runtime(device)
    last = out / "checkpoints" / LAST_CHECKPOINT
    state = _checkpoint_to_continue(last, params, stage=stage, init_sha256=init_sha256, resume=resume,
                                    auto_resume=auto_resume, runtime=runtime)
    torch.manual_seed(params.seed)

    dataset = build_train_dataset(params.data, settings)
    loader, sampler = build_train_loader(dataset, stage=settings, solver=solver, seed=params.seed)
    statistics = training_statistics(dataset)
    loss = build_classification_loss(settings.loss, losses=params.losses, num_classes=dataset.num_classes,
                                     statistics=statistics, seed=params.seed + runtime.rank)
    model = build_model(params.model, num_classes=dataset.num_classes, loss=loss, stage=settings,
                        test=params.evaluate).to(runtime.device)
    frozen_norms = prepare_stage(model, params, stage=stage, runtime=runtime, load_weights=state is None)
    if start is None and params.model.pretrained_backbone is None and runtime.is_main:
        log.info("backbone initialised at random: training from scratch")

    total_batch = solver.batch_size * runtime.world_size
    peak_lr = scaled_lr(base_lr=solver.base_lr, base_batch_size=solver.base_batch_size, total_batch_size=total_batch)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=peak_lr,
                                momentum=solver.momentum, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if solver.amp and runtime.device.type == "cuda" else None
    step_iters = [s * len(loader) for s in settings.lr_steps]

    def lr_at(it: int) -> float:
        return peak_lr * lr_factor(it, warmup_iters=solver.warmup_iters, warmup_factor=solver.warmup_factor,
                                   step_iters=step_iters, gamma=solver.lr_gamma)

    start_epoch, iteration = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        restore_generator_states(model, state.get("generators"), rank=runtime.rank, world_size=runtime.world_size)
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        if runtime.is_main:
            log.info("resumed %s at epoch %d (iteration %d)", last, start_epoch, iteration)
        del state

    ddp_model: torch.nn.Module = model
    if runtime.world_size > 1:
        # In the classifier stage nothing in the buffers changes but the loss's and FHM's
        # statistics, which are already summed over processes: no buffer broadcasts there.
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            broadcast_buffers=get_stage(stage).trainable is None)
    curves = None
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_resolved_params(out, params)
        curves = TrainingCurves(out / CURVES_DIR, start_iteration=iteration)
        log.info("%s stage: %d images, %d classes, %d iterations/epoch, batch %d x %d processes, lr %.4g on %s",
                 stage, len(dataset), dataset.num_classes, len(loader), solver.batch_size, runtime.world_size,
                 peak_lr, runtime.device)
    try:
        for epoch in range(start_epoch, settings.epochs):
            sampler.set_epoch(epoch)
            iteration = train_one_epoch(model=ddp_model, optimizer=optimizer, loader=loader, runtime=runtime,
                                        epoch=epoch, iteration=iteration, lr_at=lr_at, scaler=scaler,
                                        clip_grad_norm=solver.clip_grad_norm, frozen_norms=frozen_norms,
                                        curves=curves)
            sampler.set_epoch(epoch + 1)
            generators = generator_states(model, runtime.world_size)
            if runtime.is_main:
                checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scaler": scaler.state_dict() if scaler is not None else {},
                              "sampler": sampler.state_dict(), "rng": rng_state(), "epoch": epoch + 1,
                              "iteration": iteration, "params": params.to_dict(), "stage": stage,
                              "init_sha256": init_sha256}
                if generators is not None:
                    checkpoint["generators"] = generators
                save_checkpoint(last, checkpoint)
            if runtime.world_size > 1:
                dist.barrier()
    finally:
        if curves is not None:
            curves.close()

    final = out / FINAL_WEIGHTS
    if runtime.is_main:
        save_checkpoint(final, {"model": model.state_dict(), "params": params.to_dict(),
                                "num_classes": dataset.num_classes, "epoch": settings.epochs, "stage": stage,
                                "loss_statistics": statistics})
    return final

"""The training loop: one command for a single process (CPU or one GPU) and for DDP.

Two stages share it (BACL's decoupled training, METHOD.md section 4): ``representation``
trains the whole detector with ``train``'s settings; ``classifier`` starts from the
representation stage's weights and, with ``classifier``'s settings, trains only the
classification layer, the box regression layer and the RPN (everything else frozen,
BatchNorm statistics included) with FCBL and the feature hallucination module. The
``baseline`` stage is the classifier stage's code with ``baseline``'s settings: by
default nothing frozen, plain BCE and no FHM, i.e. stage 1 continued for as many epochs.

Run it directly for one process, or under ``torchrun`` for several GPUs or nodes: the
process group is set up from the environment ``torchrun`` provides. Plain PyTorch DDP is
enough here; a trainer framework would hide the three things this loop must control
exactly (what is frozen, which loss, what a checkpoint holds) behind callbacks.

Resumption is exact on CPU: a checkpoint is written at the end of every epoch with the
model, optimiser, AMP scaler, sampler and RNG states and the resolved parameters, and the
learning rate is a pure function of the iteration. Data augmentation draws its randomness
from per-sample seeds the sampler derives from (seed, epoch), so workers and restarts do
not change it. ``auto_resume`` (the pipeline's mode) continues a checkpoint only when it is
an unfinished run of the same settings, and otherwise starts afresh.

Logs: ``train_log.jsonl`` (one line per iteration) and, for DVC plots, the same loss
terms and learning rate as dvclive curves in ``dvclive/`` (:mod:`bacl.engine.curves`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from ..data.summary import sha256_of
from ..models.detector import classifier_stage_parameters
from ..params import CLASSIFIER_STAGES, STAGES, ClassifierParams, Params
from .build import (build_classification_loss, build_dataset, build_hallucinator, build_model,
                    build_train_loader)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .curves import CURVES_DIR, TrainingCurves
from .freeze import freeze_except, train_mode
from .schedule import lr_factor, scaled_lr

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
FINAL_WEIGHTS = "model_final.pt"
TRAIN_LOG = "train_log.jsonl"

# State-dict prefixes of the classifier stage's own statistics (FCBL's confusion matrix,
# FHM's moments and generator): they start at zero in the classifier stage, so they
# are neither required in nor taken from the checkpoint it starts from.
STAGE_STATISTICS = ("roi_heads.classification_loss.", "roi_heads.hallucinator.")


# ---------------------------------------------------------------- processes and devices


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str | None = None) -> Runtime:
    """Join the process group ``torchrun`` describes, if any, and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    return Runtime(device=dev, rank=rank, world_size=world_size if dist.is_initialized() else 1)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------- state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_resolved_params(output_dir: Path, params: Params) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "params.yaml").write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))


def truncate_log(path: Path, *, before_iteration: int) -> None:
    """Drop log lines of an interrupted epoch, so a resumed run's curve has no duplicates."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] < before_iteration]
    path.write_text("".join(line + "\n" for line in kept))


# ---------------------------------------------------------------- the loop


def reduce_loss_dict(losses: dict[str, torch.Tensor], world_size: int) -> dict[str, float]:
    """Mean of each loss term over processes, for logging only."""
    names = sorted(losses)
    values = torch.stack([losses[k].detach().float() for k in names])
    if world_size > 1:
        dist.all_reduce(values)
        values /= world_size
    return {k: float(v) for k, v in zip(names, values)}


def train_one_epoch(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    runtime: Runtime,
    epoch: int,
    iteration: int,
    lr_at: Callable[[int], float],
    scaler: torch.amp.GradScaler | None,
    clip_grad_norm: float | None,
    log_file: Path | None,
    frozen_norms: Sequence[torch.nn.Module] = (),
    curves: TrainingCurves | None = None,
) -> int:
    """Train one epoch; returns the iteration counter after it. ``frozen_norms`` stay in
    eval mode (see :mod:`bacl.engine.freeze`); ``curves`` (main process) get the loss
    terms and the learning rate of every iteration."""
    train_mode(model, frozen_norms)
    amp = scaler is not None
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", disable=not runtime.is_main, dynamic_ncols=True, leave=True)
    data_time = step_time = 0.0
    images_seen = 0
    tic = time.perf_counter()
    handle = open(log_file, "a") if (log_file is not None and runtime.is_main) else None
    try:
        for images, targets in bar:
            t_data = time.perf_counter()
            images = [img.to(runtime.device, non_blocking=True) for img in images]
            targets = [{k: (v.to(runtime.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            lr = lr_at(iteration)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=runtime.device.type, enabled=amp):
                losses = model(images, targets)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"loss is {float(total)} at epoch {epoch + 1}, iteration {iteration}: "
                    f"{ {k: float(v) for k, v in losses.items()} }; lower train.base_lr or set train.clip_grad_norm"
                )
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
            if handle is not None:
                handle.write(json.dumps({"epoch": epoch + 1, "iteration": iteration, "lr": lr,
                                         "loss": logged_total, **logged}) + "\n")
            if curves is not None:
                curves.log(iteration, {"loss": logged_total, **logged, "lr": lr})
            bar.set_postfix(loss=f"{logged_total:.3f}", lr=f"{lr:.2e}",
                            img_s=f"{images_seen / max(step_time, 1e-9):.1f}",
                            data=f"{100 * data_time / max(step_time, 1e-9):.0f}%")
            iteration += 1
    finally:
        if handle is not None:
            handle.close()
    if runtime.is_main:
        log.info("epoch %d: %.1f images/s, %.0f%% of the time waiting for data",
                 epoch + 1, images_seen / max(step_time, 1e-9), 100 * data_time / max(step_time, 1e-9))
    return iteration


def load_initial_weights(model: torch.nn.Module, path: Path, *, preset: str, stage: str = "classifier") -> None:
    """Load the weights the classifier stage starts from (a representation-stage checkpoint).

    Every parameter and buffer of ``model`` must be in the checkpoint, with the same
    shape, except the stage's own statistics (:data:`STAGE_STATISTICS`), which are
    skipped when present: they start at zero. Errors name the file.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint to start the {stage} stage from; train the representation stage "
            f"first (bacl train) or point {stage}.init_from at its model_final.pt"
        )
    state = load_checkpoint(path)
    saved_preset = state.get("params", {}).get("model", {}).get("preset")
    if saved_preset is not None and saved_preset != preset:
        raise ValueError(f"{path}: was trained with model.preset {saved_preset!r}, this run uses {preset!r}")
    weights = {k: v for k, v in state["model"].items() if not k.startswith(STAGE_STATISTICS)}
    expected = [k for k in model.state_dict() if not k.startswith(STAGE_STATISTICS)]
    missing = [k for k in expected if k not in weights]
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit the model: {len(missing)} missing {missing[:8]}, "
            f"{len(unexpected)} unexpected {unexpected[:8]}"
        )
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatch, e.g. another number of classes
        raise CheckpointError(f"{path}: does not fit the model ({err})") from None


def prepare_classifier_stage(
    model: torch.nn.Module, params: Params, *, runtime: Runtime, load_weights: bool, stage: str = "classifier"
) -> list[torch.nn.Module]:
    """Turn a freshly built detector into the classifier stage's (or, with
    ``stage="baseline"``, the baseline's, from ``params.baseline``); returns the frozen
    BatchNorm layers (to keep in eval mode).

    Loads ``params.init_from(stage)`` (unless ``load_weights`` is False: a resumed run
    loads its own checkpoint), switches FCBL's auto-adjusted weights on as the
    reference's ``ReweightHook(step=1)`` does at the first classifier epoch, freezes
    everything but the classification and box regression layers and the RPN (with
    ``freeze``), and attaches FHM as ``roi_heads.hallucinator`` (with ``fhm.enabled``) so
    its statistics and generator are in the model's ``state_dict``. FHM's generator is
    seeded with ``seed + rank``.
    """
    if stage not in CLASSIFIER_STAGES:
        raise ValueError(f"stage {stage!r} is not a classifier-like stage; those are {list(CLASSIFIER_STAGES)}")
    cfg = params.stage(stage)
    init_from = params.init_from(stage)
    if load_weights:
        load_initial_weights(model, init_from, preset=params.model.preset, stage=stage)
        if runtime.is_main:
            log.info("%s stage: weights from %s", stage, init_from)
    loss = model.roi_heads.classification_loss
    if cfg.loss == "fcbl":
        loss.reweight = cfg.fcbl.reweight
    frozen_norms: list[torch.nn.Module] = []
    if cfg.freeze:
        frozen_norms = freeze_except(model, classifier_stage_parameters(model))
    if cfg.fhm.enabled:
        model.roi_heads.hallucinator = build_hallucinator(
            cfg.fhm,
            num_classes=loss.num_classes,
            feat_dim=model.roi_heads.box_predictor.cls_score.in_features,
            seed=cfg.seed + runtime.rank,
            accuracy_source=lambda: loss.class_accuracy,
        ).to(runtime.device)
    if runtime.is_main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("%s stage: loss %s%s, FHM %s, %s: %d of %d parameters trainable", stage, cfg.loss,
                 f" (alpha {cfg.fcbl.alpha}, prob_thr {cfg.fcbl.prob_thr}, reweight {cfg.fcbl.reweight})"
                 if cfg.loss == "fcbl" else "", "on" if cfg.fhm.enabled else "off",
                 "frozen" if cfg.freeze else "nothing frozen", trainable, total)
    return frozen_norms


def gather_fhm_generators(model: torch.nn.Module, world_size: int) -> list[torch.Tensor] | None:
    """Every process's FHM generator state (processes draw differently, and the model's
    ``state_dict`` saved by rank 0 holds rank 0's only); ``None`` without FHM."""
    hallucinator = getattr(model.roi_heads, "hallucinator", None)
    if hallucinator is None:
        return None
    local = hallucinator.generator.get_state()
    if world_size == 1:
        return [local]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, local)
    return states


def section_of(stage: str) -> str:
    """The params.yaml section holding a stage's settings."""
    return "train" if stage == "representation" else stage


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file, ``None`` if it does not exist."""
    return sha256_of(path) if path.is_file() else None


def stale_reason(state: dict[str, Any], params: Params, *, stage: str, init_sha256: str | None) -> str | None:
    """Why the checkpoint ``state`` cannot be continued by this run, or ``None`` if it can.

    It can when it is an unfinished run of ``stage`` with the same ``data``, ``model`` and
    stage settings (``epochs`` may have grown: the learning rate is a function of the
    iteration, so continuing to more epochs equals training for them straight away) and,
    for classifier-like stages, started from the same weights. A finished run is never
    continued: a pipeline re-runs a finished stage only because its code or inputs changed.
    """
    cfg = params.stage(stage)
    saved_stage = state.get("stage", "representation")
    if saved_stage != stage:
        return f"it was written by the {saved_stage} stage"
    if int(state.get("epoch", 0)) >= cfg.epochs:
        return f"its run finished ({state.get('epoch')} of {cfg.epochs} epochs)"
    saved, current = state.get("params", {}), params.to_dict()
    section = section_of(stage)
    for key in ("data", "model", section):
        old, new = dict(saved.get(key, {})), dict(current[key])
        if key == section:
            old.pop("epochs", None)
            new.pop("epochs", None)
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            return f"its {key} parameters differ ({', '.join(changed)})"
    if stage in CLASSIFIER_STAGES and state.get("init_sha256") != init_sha256:
        return f"it started from other weights than {params.init_from(stage)}"
    return None


def train(params: Params, *, stage: str = "representation", resume: bool = False,
          auto_resume: bool = False, device: str | None = None) -> Path:
    """Train a detector as ``params`` says; returns the path of the final weights.

    ``stage`` is ``"representation"`` (settings from ``params.train``), ``"classifier"``
    (settings from ``params.classifier``; starts from the weights at
    ``params.init_from("classifier")``, see :func:`prepare_classifier_stage`) or
    ``"baseline"`` (the same with ``params.baseline``).

    With ``resume=True`` an existing ``<output_dir>/checkpoints/last.pt`` is continued
    (its resolved parameters must describe the same run); without it, an existing run
    directory with checkpoints is an error rather than silently overwritten. With
    ``auto_resume=True`` it is continued if :func:`stale_reason` finds nothing against
    it, and otherwise removed and the run starts afresh (the pipeline's mode: DVC keeps
    the checkpoints folder between runs so that an interrupted stage continues).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {list(STAGES)}")
    cfg = params.stage(stage)
    section = section_of(stage)
    out = Path(cfg.output_dir)
    init_sha256 = None
    if stage in CLASSIFIER_STAGES:
        init_from = params.init_from(stage)
        if (out / FINAL_WEIGHTS).resolve() == init_from.resolve():
            raise ValueError(f"{section}.output_dir {out} would overwrite the weights it starts from "
                             f"({init_from}); choose another directory")
        init_sha256 = file_sha256(init_from)
    runtime = setup_runtime(device)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / LAST_CHECKPOINT
    log_path = out / TRAIN_LOG
    state: dict[str, Any] | None = None
    if last.exists():
        if auto_resume:
            state = load_checkpoint(last)
            reason = stale_reason(state, params, stage=stage, init_sha256=init_sha256)
            if reason is not None:
                state = None
                if runtime.world_size > 1:
                    dist.barrier()  # every process has read it before it goes
                if runtime.is_main:
                    log.info("not continuing %s: %s; starting afresh", last, reason)
                    last.unlink()
        elif resume:
            state = load_checkpoint(last)
            saved = state.get("params", {})
            if (saved.get(section, {}).get("loss") != cfg.loss
                    or saved.get("model", {}).get("preset") != params.model.preset
                    or state.get("stage", "representation") != stage):
                raise ValueError(f"{last}: was written by a different run (stage/loss/preset differ); not resuming it")
        else:
            raise FileExistsError(
                f"{last} exists: pass --resume to continue that run, or choose another {section}.output_dir"
            )
    torch.manual_seed(cfg.seed)

    dataset = build_dataset(params.data, split="train", flip_prob=cfg.flip_prob, filter_empty=cfg.filter_empty)
    loader, sampler = build_train_loader(dataset, cfg)
    loss = build_classification_loss(cfg, num_classes=dataset.num_classes)
    model = build_model(params.model, num_classes=dataset.num_classes, loss=loss).to(runtime.device)
    frozen_norms: list[torch.nn.Module] = []
    if stage in CLASSIFIER_STAGES:
        frozen_norms = prepare_classifier_stage(model, params, runtime=runtime, load_weights=state is None,
                                                stage=stage)
    elif params.model.pretrained_backbone is None and runtime.is_main:
        log.info("backbone initialised at random: training from scratch")

    trainable = [p for p in model.parameters() if p.requires_grad]
    total_batch = cfg.batch_size * runtime.world_size
    peak_lr = scaled_lr(base_lr=cfg.base_lr, base_batch_size=cfg.base_batch_size, total_batch_size=total_batch)
    optimizer = torch.optim.SGD(trainable, lr=peak_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and runtime.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    iters_per_epoch = len(loader)
    step_iters = [s * iters_per_epoch for s in cfg.lr_steps]

    def lr_at(it: int) -> float:
        return peak_lr * lr_factor(it, warmup_iters=cfg.warmup_iters, warmup_factor=cfg.warmup_factor,
                                   step_iters=step_iters, gamma=cfg.lr_gamma)

    start_epoch, iteration = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        # Each process continues its own FHM draws; with another number of processes
        # than the saved run, every process continues from rank 0's (in the state_dict).
        generators = state.get("fhm_generators")
        if generators is not None and len(generators) == runtime.world_size:
            model.roi_heads.hallucinator.generator.set_state(generators[runtime.rank])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        if runtime.is_main:
            truncate_log(log_path, before_iteration=iteration)
            log.info("resumed %s at epoch %d (iteration %d)", last, start_epoch, iteration)
        del state
    else:
        if resume and runtime.is_main:
            log.info("--resume: no checkpoint at %s yet, starting from scratch", last)
        if runtime.is_main:
            log_path.unlink(missing_ok=True)  # a log without a checkpoint is from a run that died in epoch 1

    ddp_model: torch.nn.Module = model
    if runtime.world_size > 1:
        # Frozen, nothing in the buffers changes but FCBL's and FHM's statistics, which are
        # already summed over processes: broadcasting every buffer each step would be waste.
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            broadcast_buffers=not (isinstance(cfg, ClassifierParams) and cfg.freeze),
        )
    curves = None
    if runtime.is_main:
        write_resolved_params(out, params)
        curves = TrainingCurves(out / CURVES_DIR, start_iteration=iteration)
        log.info("%s stage: %d images, %d classes, %d iterations/epoch, batch %d x %d processes, lr %.4g on %s",
                 stage, len(dataset), dataset.num_classes, iters_per_epoch, cfg.batch_size, runtime.world_size,
                 peak_lr, runtime.device)

    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch)
            iteration = train_one_epoch(
                model=ddp_model, optimizer=optimizer, loader=loader, runtime=runtime, epoch=epoch,
                iteration=iteration, lr_at=lr_at, scaler=scaler, clip_grad_norm=cfg.clip_grad_norm,
                log_file=log_path, frozen_norms=frozen_norms, curves=curves,
            )
            sampler.set_epoch(epoch + 1)
            generators = gather_fhm_generators(model, runtime.world_size)
            if runtime.is_main:
                checkpoint = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "sampler": sampler.state_dict(),
                    "rng": rng_state(),
                    "epoch": epoch + 1,
                    "iteration": iteration,
                    "params": params.to_dict(),
                    "stage": stage,
                }
                if generators is not None:
                    checkpoint["fhm_generators"] = generators
                if init_sha256 is not None:
                    checkpoint["init_sha256"] = init_sha256
                save_checkpoint(last, checkpoint)
            if runtime.world_size > 1:
                dist.barrier()
    finally:
        if curves is not None:
            curves.close()

    final = out / FINAL_WEIGHTS
    if runtime.is_main:
        save_checkpoint(final, {"model": model.state_dict(), "params": params.to_dict(),
                                "num_classes": dataset.num_classes, "epoch": cfg.epochs, "stage": stage})
    return final

"""GPU readiness check: R50-FPN at LVIS sizes on generated images, one table.

    bash benchmarks/gpu_check.sh             # a CUDA machine, no internet needed, under 5 minutes
    bash benchmarks/gpu_check.sh --smoke     # CPU, tiny sizes, seconds (what the test suite runs)

Nothing is downloaded and no dataset is read: images are generated (noise with a few
solid boxes) at COCO-like sizes and resized by the model's transform to the LVIS
training sizes (shorter side drawn from 640..800 step 32, longer side at most 1333) and
to 800 at test. The detector is the r50_fpn preset with the reference's settings
(``REFERENCE_SETTINGS``) and LVIS v1's 1203 classes, randomly initialised; since
``norm_eval`` BatchNorm with random statistics would not normalise anything, the
trunk's statistics are first estimated on a few generated batches (``--backbone-weights``
loads a local ResNet-50 state dict instead). Rows:

- train, fp32 and AMP (float16 + GradScaler on CUDA, bfloat16 autocast on CPU): a
  stage-1 / baseline-stage step (sigmoid BCE, nothing frozen but the stem and layer1);
  every loss must be finite. ``slowest/median`` is the slowest timed step over the
  median one: shape-dependent recompilation or autotuning would show as slow steps
  after the warm-up (multi-scale training changes the input shape every step);
  the header also reports how many graphs torch.compile's dynamo built (none expected:
  nothing here is compiled).
- torchvision's stock Faster R-CNN R50-FPN (FrozenBatchNorm, smooth-L1 losses, softmax
  over 1204 classes, its anchors and RoIAlign with sampling ratio 2) with the same trunk
  weights, images, sizes and sampling counts, fp32 and AMP: ``ratio`` is ours over stock
  in images/s.
- stage 2: BACL's classifier step (FCBL + FHM; everything but ``cls_score``,
  ``bbox_pred`` and the RPN frozen) against the baseline stage's step (the fp32 train row).
- evaluation: inference at test size 800, one image per batch as the reference tests,
  including the LVIS-format conversion of the detections. The model is untrained, so
  every class of every proposal clears the 1e-4 score threshold: the worst case for NMS.

The script exits with status 1 if a loss is not finite. ``--budget-s`` skips the rows
that would start after that many seconds (marked in the table).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from bacl.engine.build import build_hallucinator
from bacl.engine.freeze import freeze_except, train_mode
from bacl.engine.stages import CLASSIFIER_STAGE_TRAINABLE
from bacl.evaluation.inference import detections_to_lvis
from bacl.losses import build_loss
from bacl.models.detector import PRESETS, REFERENCE_SETTINGS, build_detector
from bacl.params import FHMParams

# COCO-like original image sizes (height, width), cycled through.
IMAGE_SIZES = ((480, 640), (427, 640), (640, 480), (512, 683), (640, 640), (375, 500))


@dataclass
class Row:
    check: str
    precision: str
    step_s: list[float] = field(default_factory=list)
    images_per_step: int = 1
    finite: Optional[bool] = None
    peak_gib: Optional[float] = None
    ratio: Optional[float] = None
    ratio_of: str = ""
    note: str = ""
    skipped: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.step_s)

    @property
    def images_per_s(self) -> float:
        return self.images_per_step / self.median


# ---------------------------------------------------------------- data


def generate_batch(sizes, *, boxes: int, num_classes: int, g: torch.Generator, device: torch.device):
    """Noise images with ``boxes`` solid rectangles each, and their targets (labels 1..C)."""
    images, targets = [], []
    for height, width in sizes:
        image = torch.rand(3, height, width, generator=g) * 0.5
        wh = torch.rand(boxes, 2, generator=g) * torch.tensor([width * 0.5, height * 0.5]) + 8
        xy = torch.rand(boxes, 2, generator=g) * (torch.tensor([width, height]) - wh)
        xyxy = torch.cat([xy, xy + wh], dim=1)
        for x1, y1, x2, y2 in xyxy.round().long().tolist():
            image[:, y1:y2, x1:x2] = torch.rand(3, 1, 1, generator=g)
        images.append(image.to(device))
        targets.append({"boxes": xyxy.to(device),
                        "labels": torch.randint(1, num_classes + 1, (boxes,), generator=g).to(device)})
    return images, targets


def make_batches(count: int, *, batch: int, scale: float, boxes: int, num_classes: int, seed: int,
                 device: torch.device):
    g = torch.Generator().manual_seed(seed)
    batches, k = [], 0
    for _ in range(count):
        sizes = []
        for _ in range(batch):
            h, w = IMAGE_SIZES[k % len(IMAGE_SIZES)]
            sizes.append((max(16, round(h * scale)), max(16, round(w * scale))))
            k += 1
        batches.append(generate_batch(sizes, boxes=boxes, num_classes=num_classes, g=g, device=device))
    return batches


# ---------------------------------------------------------------- models


@torch.no_grad()
def estimate_batchnorm_statistics(model: nn.Module, batches) -> None:
    """Set the trunk's BatchNorm statistics to their averages over ``batches`` (a stand-in
    for pretrained statistics), then leave the layers in eval mode."""
    norms = [m for m in model.backbone.body.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = model.training
    model.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for images, _ in batches:
        image_list, _ = model.transform(images)
        model.backbone.body(image_list.tensors)
    for m in norms:
        m.momentum = 0.1
        m.eval()
    model.train(was_training)


def build_ours(args, loss_name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(args.seed)
    loss = build_loss(loss_name, num_classes=args.classes, **({"reweight": True} if loss_name == "fcbl" else {}))
    model = build_detector(preset="r50_fpn", num_classes=args.classes, loss=loss, min_size=tuple(args.train_sizes),
                           max_size=args.max_size, pretrained_backbone=args.backbone_weights, **REFERENCE_SETTINGS)
    return model.to(device)


def build_stock(args, trunk_and_fpn: dict, device: torch.device) -> nn.Module:
    """torchvision's Faster R-CNN R50-FPN as ``fasterrcnn_resnet50_fpn`` builds it for
    pretrained weights (FrozenBatchNorm, 3 trainable stages), with our trunk's weights."""
    torch.manual_seed(args.seed)
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=3)
    backbone.load_state_dict(trunk_and_fpn)
    preset = PRESETS["r50_fpn"]
    model = FasterRCNN(
        backbone, num_classes=args.classes + 1, min_size=tuple(args.train_sizes), max_size=args.max_size,
        rpn_pre_nms_top_n_train=preset.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=preset.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=preset.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=preset.rpn_post_nms_top_n_test,
        box_batch_size_per_image=preset.box_batch_size_per_image, box_score_thresh=1e-4, box_nms_thresh=0.5,
        box_detections_per_img=300,
    )
    return model.to(device)


# ---------------------------------------------------------------- timing


class Clock:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> Optional[float]:
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None


def time_training(row: Row, model: nn.Module, batches, *, warmup: int, amp: bool, device: torch.device,
                  clock: Clock, frozen_norms=()) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if (amp and device.type == "cuda") else None
    train_mode(model, frozen_norms)
    row.finite = True
    clock.reset_peak()
    for step, (images, targets) in enumerate(batches):
        clock.sync()
        tic = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=amp):
            losses = model(images, targets)
        total = sum(losses.values())
        row.finite = row.finite and bool(torch.isfinite(total))
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            optimizer.step()
        clock.sync()
        if step >= warmup:
            row.step_s.append(time.perf_counter() - tic)
    row.images_per_step = len(batches[0][0])
    row.peak_gib = clock.peak_gib()


@torch.no_grad()
def time_evaluation(row: Row, model: nn.Module, images, *, warmup: int, num_classes: int, clock: Clock) -> None:
    model.eval()
    label_to_cat_id = list(range(num_classes + 1))
    detections = []
    clock.reset_peak()
    for k, image in enumerate(images):
        clock.sync()
        tic = time.perf_counter()
        outputs = model([image])
        records = detections_to_lvis(outputs, [k], label_to_cat_id)
        clock.sync()
        if k >= warmup:
            row.step_s.append(time.perf_counter() - tic)
            detections.append(len(records))
    row.images_per_step = 1
    row.peak_gib = clock.peak_gib()
    row.note = f"{statistics.mean(detections):.0f} detections/image (cap 300)"


# ---------------------------------------------------------------- the table


def format_table(rows: list[Row]) -> str:
    header = ["check", "precision", "ms/step", "images/s", "ratio", "slowest/median", "losses finite", "peak GiB",
              "note"]
    lines = [header]
    for r in rows:
        if r.skipped or not r.step_s:
            lines.append([r.check, r.precision, "-", "-", "-", "-", "-", "-", r.note or "skipped"])
            continue
        ratio = f"{r.ratio:.2f}x {r.ratio_of}" if r.ratio is not None else "-"
        finite = "-" if r.finite is None else ("yes" if r.finite else "NO")
        lines.append([r.check, r.precision, f"{1000 * r.median:.1f}", f"{r.images_per_s:.2f}", ratio,
                      f"{max(r.step_s) / r.median:.2f}", finite,
                      f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-", r.note])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def dynamo_graphs() -> int:
    try:
        from torch._dynamo.utils import counters
    except Exception:  # dynamo unavailable: nothing can have been compiled
        return 0
    return int(counters["stats"].get("unique_graphs", 0))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, tiny sizes, 20 classes, 1 timed step per row: checks the script, measures nothing")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available; --smoke: cpu)")
    parser.add_argument("--classes", type=int, default=None, help="default 1203 (LVIS v1); --smoke: 20")
    parser.add_argument("--batch", type=int, default=None, help="images per training step (default 2; --smoke: 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 10; --smoke: 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; --smoke: 1)")
    parser.add_argument("--eval-images", type=int, default=None, help="timed test images (default 20; --smoke: 1)")
    parser.add_argument("--boxes", type=int, default=None, help="objects per image (default 10; --smoke: 3)")
    parser.add_argument("--backbone-weights", default=None,
                        help="a local ResNet-50 state dict (torchvision names) instead of estimated statistics")
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip rows that would start after this")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {"classes": (1203, 20), "batch": (2, 1), "steps": (10, 1), "warmup": (3, 1),
                "eval_images": (20, 1), "boxes": (10, 3)}
    for name, (full, tiny) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if smoke else full)
    # Shorter side drawn from these in training (the transform), test at the last; images are
    # generated at COCO sizes times ``scale`` (1 at LVIS sizes).
    args.train_sizes = [64] if smoke else list(range(640, 801, 32))
    args.test_size = 64 if smoke else 800
    args.max_size = 96 if smoke else 1333
    args.scale = 0.15 if smoke else 1.0
    if args.device is None:
        args.device = "cpu" if smoke or not torch.cuda.is_available() else "cuda"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = Clock(device)
    start = time.perf_counter()
    graphs_before = dynamo_graphs()
    count = args.warmup + args.steps
    batches = make_batches(count, batch=args.batch, scale=args.scale, boxes=args.boxes, num_classes=args.classes,
                           seed=args.seed, device=device)
    eval_images = [img for imgs, _ in make_batches(args.warmup + args.eval_images, batch=1, scale=args.scale,
                                                   boxes=args.boxes, num_classes=args.classes, seed=args.seed + 1,
                                                   device=device) for img in imgs]

    ours = build_ours(args, "bce", device)
    if args.backbone_weights is None:
        estimate_batchnorm_statistics(ours, batches[: max(2, args.warmup)])
    weights = {k: v.detach().clone() for k, v in ours.state_dict().items()}
    trunk_and_fpn = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}

    rows: list[Row] = []

    def run(row: Row, fn: Callable[[Row], None]) -> Row:
        rows.append(row)
        if time.perf_counter() - start > args.budget_s:
            row.skipped, row.note = True, f"skipped: past the {args.budget_s:.0f} s budget"
            return row
        fn(row)
        return row

    def train_row(model, amp, frozen=()):
        return lambda row: time_training(row, model, batches, warmup=args.warmup, amp=amp, device=device,
                                         clock=clock, frozen_norms=frozen)

    amp_name = "amp fp16" if device.type == "cuda" else "amp bf16"
    ours_fp32 = run(Row("train: ours, reference settings (= baseline stage step)", "fp32"), train_row(ours, False))
    ours.load_state_dict(weights)
    ours_amp = run(Row("train: ours, reference settings", amp_name), train_row(ours, True))
    del ours
    stock = build_stock(args, trunk_and_fpn, device)
    stock_fp32 = run(Row("train: torchvision stock Faster R-CNN", "fp32"), train_row(stock, False))
    stock_amp = run(Row("train: torchvision stock Faster R-CNN", amp_name), train_row(stock, True))
    del stock
    for mine, theirs in ((ours_fp32, stock_fp32), (ours_amp, stock_amp)):
        if mine.step_s and theirs.step_s:
            mine.ratio, mine.ratio_of = mine.images_per_s / theirs.images_per_s, "of stock"

    bacl = build_ours(args, "fcbl", device)
    bacl.load_state_dict({k: v for k, v in weights.items()}, strict=False)  # FCBL's statistics start at zero
    frozen_norms = freeze_except(bacl, [n for n, _ in bacl.named_parameters()
                                        if n.startswith(CLASSIFIER_STAGE_TRAINABLE)])
    loss = bacl.roi_heads.classification_loss
    bacl.roi_heads.hallucinator = build_hallucinator(
        FHMParams(), num_classes=args.classes, feat_dim=bacl.roi_heads.box_predictor.cls_score.in_features,
        seed=args.seed, accuracy_source=lambda: loss.class_accuracy).to(device)
    stage2 = run(Row("stage 2: FCBL + FHM, frozen but cls/bbox/RPN", "fp32"), train_row(bacl, False, frozen_norms))
    if stage2.step_s and ours_fp32.step_s:
        stage2.ratio, stage2.ratio_of = stage2.median / ours_fp32.median, "of baseline step time"
    bacl.roi_heads.hallucinator = None
    bacl.transform.min_size = (args.test_size,)
    run(Row("evaluate: ours, test size %d, batch 1" % args.test_size, "fp32"),
        lambda row: time_evaluation(row, bacl, eval_images, warmup=args.warmup, num_classes=args.classes,
                                    clock=clock))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    print(f"gpu_check{' --smoke' if args.smoke else ''} on {name}; torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}" + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""))
    print(f"R50-FPN, {args.classes} classes, batch {args.batch}, training sizes {args.train_sizes[0]}.."
          f"{args.train_sizes[-1]} (max {args.max_size}), test {args.test_size}; {args.warmup} warm-up + "
          f"{args.steps} timed steps per row; graphs compiled by dynamo: {dynamo_graphs() - graphs_before}; "
          f"total {time.perf_counter() - start:.0f} s")
    print(format_table(rows))
    if hasattr(os, "getloadavg") and device.type == "cpu":
        print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    return 0 if all(r.finite is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Training and inference speed of a detector preset on random images (CPU by default).

    python benchmarks/detector_step_speed.py --threads 2 --batch 8 --size 160

Prints training images/s (SGD step: forward, backward, update) and the inference time
of one batch. Wall-clock numbers depend on what else runs on the machine, so the load
average and the process CPU time per step are printed too: CPU time divided by the
thread count approximates the wall time on idle cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bacl.losses import build_loss
from bacl.models.detector import build_detector


def random_batch(batch: int, size: int, boxes: int, num_classes: int, g: torch.Generator):
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        wh = torch.rand(boxes, 2, generator=g) * (96 - 14) + 14
        xy = torch.rand(boxes, 2, generator=g) * (size - wh)
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], dim=1),
                "labels": torch.randint(1, num_classes + 1, (boxes,), generator=g),
            }
        )
    return images, targets


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="synthetic_small")
    parser.add_argument("--loss", default="bce")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = build_detector(
        preset=args.preset,
        num_classes=args.classes,
        loss=build_loss(args.loss, num_classes=args.classes),
        min_size=args.size,
        max_size=args.size * 2,
    ).to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def to_device(images, targets):
        return [i.to(device) for i in images], [{k: v.to(device) for k, v in t.items()} for t in targets]

    def train_step(images, targets):
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        sync()

    model.train()
    train_times = []
    for step in range(args.warmup + args.steps):
        images, targets = to_device(*random_batch(args.batch, args.size, args.boxes, args.classes, g))
        t = timed(lambda: train_step(images, targets))
        if step >= args.warmup:
            train_times.append(t)

    model.eval()
    eval_times = []
    with torch.no_grad():
        for step in range(args.warmup + max(args.steps // 2, 1)):
            images, _ = to_device(*random_batch(args.batch, args.size, args.boxes, args.classes, g))
            t = timed(lambda: (model(images), sync()))
            if step >= args.warmup:
                eval_times.append(t)

    def summary(times):
        walls, cpus = [w for w, _ in times], [c for _, c in times]
        return statistics.median(walls), min(walls), statistics.median(cpus)

    wall_med, wall_best, cpu_med = summary(train_times)
    print(
        f"preset={args.preset} loss={args.loss} C={args.classes} device={args.device} "
        f"threads={args.threads} batch={args.batch} size={args.size} boxes/img={args.boxes}"
    )
    if hasattr(os, "getloadavg"):
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(
        f"train: median {wall_med:.3f} s/step = {args.batch / wall_med:.1f} img/s; "
        f"best {wall_best:.3f} s/step = {args.batch / wall_best:.1f} img/s; "
        f"CPU time {cpu_med:.3f} s/step"
    )
    wall_med, wall_best, cpu_med = summary(eval_times)
    print(
        f"inference (untrained model: the most candidate boxes): median {wall_med:.3f} s/batch "
        f"= {args.batch / wall_med:.1f} img/s; best {wall_best:.3f} s; CPU time {cpu_med:.3f} s/batch"
    )


if __name__ == "__main__":
    main()

"""Training throughput of the synthetic-benchmark detector on the CPU, and where a step goes.

Times the real training step (DataLoader, forward, backward, SGD) of ``synthetic_small`` on
the synthetic benchmark and splits it into: waiting for data, target assignment (RPN anchor
matching and RoI sampling inside the model), and the rest (the network). As a baseline in
the same run it times torchvision's stock RoI heads (softmax ``FastRCNNPredictor``) on the
same backbone, RPN and batches, and prints the ratio.

    python benchmarks/train_speed.py                  # generates the default benchmark in a temp dir
    python benchmarks/train_speed.py --data-root data/synthetic --steps 30
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads

from bacl.data.synthetic import generate_synthetic_lvis
from bacl.engine.build import build_classification_loss, build_model, build_train_dataset, build_train_loader
from bacl.params import load_params
from timing import time_method


class Stopwatch:
    """Wraps a bound method and adds up the time spent in it."""

    def __init__(self, owner: object, name: str) -> None:
        self.seconds = 0.0
        time_method(owner, name, self._add)

    def _add(self, seconds: float) -> None:
        self.seconds += seconds


def stock_roi_heads(model: torch.nn.Module, num_classes: int) -> None:
    """Replace our RoI heads by torchvision's (softmax predictor, smooth-L1), same pool and head."""
    ours = model.roi_heads
    rep = ours.box_predictor.cls_score.in_features
    model.roi_heads = RoIHeads(
        box_roi_pool=ours.box_roi_pool, box_head=ours.box_head,
        box_predictor=FastRCNNPredictor(rep, num_classes + 1),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5,
        batch_size_per_image=ours.fg_bg_sampler.batch_size_per_image,
        positive_fraction=ours.fg_bg_sampler.positive_fraction,
        bbox_reg_weights=None, score_thresh=ours.score_thresh, nms_thresh=ours.nms_thresh,
        detections_per_img=ours.detections_per_img,
    )


def time_training(model, loader, *, steps: int, warmup: int) -> dict[str, float]:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    anchors = Stopwatch(model.rpn, "assign_targets_to_anchors")
    sampling = Stopwatch(model.roi_heads, "select_training_samples")
    model.train()
    data_time = step_time = 0.0
    images = 0
    done = 0
    while done < warmup + steps:
        tic = time.perf_counter()
        for batch_images, targets in loader:
            t_data = time.perf_counter()
            losses = model(batch_images, targets)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            toc = time.perf_counter()
            if done == warmup:
                data_time = step_time = anchors.seconds = sampling.seconds = 0.0
                images = 0
            if done >= warmup:
                data_time += t_data - tic
                step_time += toc - tic
                images += len(batch_images)
            done += 1
            tic = toc
            if done >= warmup + steps:
                break
    return {
        "images_per_s": images / step_time,
        "data_share": data_time / step_time,
        "assign_share": (anchors.seconds + sampling.seconds) / step_time,
        "step_ms": 1000 * step_time / steps,
    }


NAMES = ("ours (sigmoid C+1 head, registry loss)", "torchvision stock RoI heads (softmax)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="an existing synthetic benchmark (default: generate one)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        params = load_params(None, args.overrides)
        if root is None:
            root = str(Path(tmp) / "synthetic")
            syn = params.data.synthetic
            tic = time.perf_counter()
            generate_synthetic_lvis(out_dir=root, seed=syn.seed, num_train_images=syn.num_train_images,
                                    num_val_images=syn.num_val_images, image_size=syn.image_size)
            print(f"generated the default synthetic benchmark in {time.perf_counter() - tic:.1f} s")
        params = load_params(None, [f"data.root={root}", *args.overrides])
        stage = params.representation
        dataset = build_train_dataset(params.data, stage)
        loader, sampler = build_train_loader(dataset, stage=stage, solver=params.solver, seed=params.seed)
        sampler.set_epoch(0)

        models = {}
        for name in NAMES:
            torch.manual_seed(0)
            loss = build_classification_loss(stage.loss, losses=params.losses, num_classes=dataset.num_classes)
            models[name] = build_model(params.model, num_classes=dataset.num_classes, loss=loss, stage=stage)
            if name.startswith("torchvision"):
                stock_roi_heads(models[name], dataset.num_classes)
        # Alternate A B B A so that a transient load or warm-up hits both; keep each one's best round.
        results: dict[str, dict[str, float]] = {}
        for name in (NAMES[0], NAMES[1], NAMES[1], NAMES[0]):
            r = time_training(models[name], loader, steps=args.steps, warmup=args.warmup)
            if name not in results or r["images_per_s"] > results[name]["images_per_s"]:
                results[name] = r

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} threads, {params.solver.workers} loader workers, "
          f"batch {params.solver.batch_size}, {params.data.synthetic.image_size} px")
    for name, r in results.items():
        print(f"{name:42s} {r['images_per_s']:6.1f} images/s  {r['step_ms']:7.1f} ms/step  "
              f"data wait {100 * r['data_share']:4.1f}%  target assignment {100 * r['assign_share']:4.1f}%")
    ours, stock = results[NAMES[0]], results[NAMES[1]]
    print(f"ratio ours / stock throughput: {ours['images_per_s'] / stock['images_per_s']:.2f}x")
    print(f"share of a step outside the network (data + target assignment): "
          f"{100 * (ours['data_share'] + ours['assign_share']):.1f}%")


if __name__ == "__main__":
    main()

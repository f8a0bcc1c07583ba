"""Training-step time of every registered classification loss, as a ratio to BCE.

LVIS v1 size: C = 1203 classes, 2 images x 512 RoIs with 25 % positives drawn from a
long-tailed class distribution, statistics of the training annotations taken from a
synthetic Zipf-like tail (the losses read counts only). Two measurements per loss:

- ``loss``: forward + backward of the loss alone, on leaf logits of its own width;
- ``classifier + loss``: the 1024-d embedding through the classification layer the loss
  declares (a plain linear layer, or Seesaw's / ECM's normalised one), the loss, and the
  backward into the layer's weights (what the classifier stage trains).

Statistics are warm (each loss has run ``--warmup`` steps first; FCBL with its
auto-adjusted weights on, as in the classifier stage). In every round each loss runs
once, in a fixed order, so all of them see the same machine load; the table gives the
median time and the median over rounds of the ratio to BCE's time in the same round.

    python benchmarks/loss_step_speed.py [--device cpu|cuda] [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bacl.losses import LOSSES, build_loss
from bacl.models.box_predictor import BoxPredictor


def long_tail_statistics(num_classes: int, gen: torch.Generator) -> dict:
    """Image and instance counts falling like ``1 / rank`` (LVIS-like: a few thousand images
    for the head, one or two for the tail), in a shuffled class order."""
    rank = torch.randperm(num_classes, generator=gen).double() + 1.0
    image_counts = (20000.0 / rank).ceil().long()
    instance_counts = image_counts * 3
    return {"image_counts": image_counts, "instance_counts": instance_counts, "num_images": 100000}


def draw_labels(num_rows: int, num_classes: int, image_counts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    labels = torch.multinomial(image_counts.double(), num_rows, replacement=True, generator=gen)
    labels[torch.rand(num_rows, generator=gen) >= 0.25] = num_classes
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-classes", type=int, default=1203)
    parser.add_argument("--rois", type=int, default=1024, help="2 images x 512 RoIs")
    parser.add_argument("--embedding", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    c, n, d = args.num_classes, args.rois, args.embedding

    gen = torch.Generator().manual_seed(0)
    stats = long_tail_statistics(c, gen)
    names = ["bce"] + sorted(name for name in LOSSES if name != "bce")
    losses = {name: build_loss(name, num_classes=c, statistics=stats).to(device) for name in names}
    if "fcbl" in losses:
        losses["fcbl"].reweight = True
    predictors = {name: BoxPredictor.for_loss(loss, in_channels=d).to(device) for name, loss in losses.items()}
    batches = []
    for _ in range(args.warmup + args.repeats):
        labels = draw_labels(n, c, stats["image_counts"], gen).to(device)
        embedding = torch.relu(torch.randn(n, d, generator=gen)).to(device)
        batches.append((embedding, labels))
    logit_noise = {
        width: torch.randn(n, width, generator=gen).mul_(2).sub_(4).to(device)
        for width in {loss.num_logits for loss in losses.values()}
    }

    def loss_step(name: str, labels: torch.Tensor) -> None:
        logits = logit_noise[losses[name].num_logits].clone().requires_grad_()
        sum(losses[name](logits, labels).values()).backward()

    def classifier_step(name: str, embedding: torch.Tensor, labels: torch.Tensor) -> None:
        layer = predictors[name].cls_score
        layer.zero_grad(set_to_none=True)
        sum(losses[name](layer(embedding), labels).values()).backward()

    def timed(fn, *fn_args) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*fn_args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for embedding, labels in batches[: args.warmup]:  # warm statistics and allocator
        for name in names:
            loss_step(name, labels)
            classifier_step(name, embedding, labels)

    times = {mode: {name: [] for name in names} for mode in ("loss", "classifier + loss")}
    for embedding, labels in batches[args.warmup :]:
        for name in names:
            times["loss"][name].append(timed(loss_step, name, labels))
        for name in names:
            times["classifier + loss"][name].append(timed(classifier_step, name, embedding, labels))

    med = statistics.median
    positives = int((batches[-1][1] < c).sum())
    print(
        f"device={device} ({platform.machine()}, {platform.processor() or 'cpu'}) threads={torch.get_num_threads()} "
        f"C={c} N={n} (~{positives} positives) embedding={d} repeats={args.repeats} torch={torch.__version__}"
    )
    for mode, per_loss in times.items():
        base = per_loss["bce"]
        print(f"\n{mode}: forward + backward")
        print(f"| loss | logits | median ms | ratio to bce (median of same-round ratios) |")
        print("|---|---|---|---|")
        for name in names:
            ratios = [t / b for t, b in zip(per_loss[name], base)]
            print(f"| {name} | {losses[name].num_logits} | {med(per_loss[name]) * 1e3:.2f} | {med(ratios):.2f} |")


if __name__ == "__main__":
    main()

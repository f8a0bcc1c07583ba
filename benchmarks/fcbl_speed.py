"""FCBL forward + backward against plain per-channel BCE at LVIS v1 size.

C = 1203 classes, 2 images x 1024 RoIs, about 25% positives, statistics already
populated (so margins are non-trivial) and reweighting on, as in the classifier
stage. The two are timed alternately (fair on a shared machine); prints the
median time of each and their ratio.

    python benchmarks/fcbl_speed.py [--device cpu|cuda] [--repeats 30] [--distinct-classes 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bacl.losses.fcbl import FCBL


def timed_pair(fn_a, fn_b, repeats: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Time ``fn_a`` and ``fn_b`` alternately, so both see the same load on a shared machine."""

    def once(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(once(fn_a))
        times_b.append(once(fn_b))
    return times_a, times_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--num-classes", type=int, default=1203)
    parser.add_argument("--rois", type=int, default=2048)
    parser.add_argument(
        "--distinct-classes",
        type=int,
        default=0,
        help="positives' labels drawn from this many classes (0: all C, the worst case for the "
        "margins; an LVIS pair of images has a few dozen at most)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    c, n = args.num_classes, args.rois

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(n, c + 1, generator=gen) * 2 - 4).to(device).requires_grad_()
    pool = torch.randperm(c, generator=gen)[: args.distinct_classes or c]
    labels = pool[torch.randint(0, pool.numel(), (n,), generator=gen)]
    labels[torch.rand(n, generator=gen) >= 0.25] = c
    labels = labels.to(device)
    target = torch.zeros(n, c + 1, device=device).scatter_(1, labels[:, None], 1.0)

    loss_fn = FCBL(num_classes=c, reweight=True).to(device)
    with torch.no_grad():  # a warm confusion matrix, every class seen
        loss_fn.cm_num.copy_(torch.rand(c, c, generator=gen, dtype=torch.float64) * 50)
        loss_fn.num_gt.fill_(100.0)

    def bce() -> None:
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
        loss.backward()

    def fcbl() -> None:
        loss_fn(logits, labels)["loss_cls"].backward()

    for fn in (bce, fcbl):  # warm-up
        for _ in range(3):
            fn()
    t_bce, t_fcbl = timed_pair(bce, fcbl, args.repeats, device)
    ratios = [f / b for f, b in zip(t_fcbl, t_bce)]
    med = statistics.median
    n_pos = int((labels < c).sum())
    n_distinct = int(labels[labels < c].unique().numel())
    print(f"device={device} C={c} N={n} positives={n_pos} distinct={n_distinct} threads={torch.get_num_threads()}")
    print(f"BCE  forward+backward: median {med(t_bce) * 1e3:8.2f} ms, min {min(t_bce) * 1e3:8.2f} ms")
    print(f"FCBL forward+backward: median {med(t_fcbl) * 1e3:8.2f} ms, min {min(t_fcbl) * 1e3:8.2f} ms")
    print(
        f"ratio FCBL / BCE: {med(t_fcbl) / med(t_bce):.2f} (medians), {min(t_fcbl) / min(t_bce):.2f} (minima), "
        f"{med(ratios):.2f} (median of paired ratios; {args.repeats} pairs)"
    )


if __name__ == "__main__":
    main()

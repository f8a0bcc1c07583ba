"""Cost of FCBL + FHM in a classifier-stage (BACL stage 2) training step.

    python benchmarks/classifier_step_speed.py --threads 1 --steps 10

Times a full frozen stage-2 SGD step (forward, backward of the RPN and the two box
predictor layers, update) of the synthetic_small detector with FCBL + FHM against the
same step with sigmoid BCE and no FHM, on the same batches of the synthetic benchmark
(``--data-root``, or the smallest valid one generated in a temporary folder). The two
models start from the same randomly initialised "stage-1" weights and their steps
alternate, so load changes on a shared machine hit both alike. Prints ms/step (median),
the ratio (target <= 1.25) and where FCBL + FHM's extra time goes:

- FHM jitter + RoIAlign + box head: the hallucinator call minus its update and sample;
- FHM update / sample: folding the jittered embeddings in, drawing new ones;
- loss: FCBL (with margins, reweighting and statistics update) against BCE.

The rest of the difference (classifying the hallucinated rows, concatenation) is what
remains. Wall-clock numbers depend on what else runs; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from bacl.data.lvis_dataset import LVISDetection
from bacl.data.synthetic import generate_synthetic_lvis
from bacl.engine.build import build_hallucinator, build_model
from bacl.engine.freeze import freeze_except, train_mode
from bacl.losses import build_loss
from bacl.engine.stages import CLASSIFIER_STAGE_TRAINABLE
from bacl.params import FHMParams, ModelParams
from timing import time_method


class Timers:
    """Summed wall time per name, for the current step."""

    def __init__(self) -> None:
        self.step: dict[str, float] = defaultdict(float)
        self.history: dict[str, list[float]] = defaultdict(list)

    def wrap_method(self, obj, name: str, label: str) -> None:
        time_method(obj, name, lambda seconds: self.step.__setitem__(label, self.step[label] + seconds))

    def wrap_module(self, module: torch.nn.Module, label: str) -> None:
        starts: list[float] = []
        module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
        module.register_forward_hook(lambda *_: self.step.__setitem__(
            label, self.step[label] + time.perf_counter() - starts.pop()))

    def end_step(self, total: float) -> None:
        self.step["step"] = total
        for key, value in self.step.items():
            self.history[key].append(value)
        self.step = defaultdict(float)

    def median_ms(self, key: str) -> float:
        values = self.history.get(key)
        return 1000 * statistics.median(values) if values else 0.0


def build_stage2_model(stage1_weights: dict, *, num_classes: int, with_bacl: bool, fhm: FHMParams, seed: int):
    loss = build_loss("fcbl", num_classes=num_classes, reweight=True) if with_bacl else build_loss(
        "bce", num_classes=num_classes)
    model = build_model(ModelParams(), num_classes=num_classes, loss=loss)
    model.load_state_dict(stage1_weights, strict=False)  # the loss's statistics start at zero
    frozen_norms = freeze_except(model, [n for n, _ in model.named_parameters()
                                         if n.startswith(CLASSIFIER_STAGE_TRAINABLE)])
    if with_bacl:
        model.roi_heads.hallucinator = build_hallucinator(
            fhm, num_classes=num_classes, feat_dim=model.roi_heads.box_predictor.cls_score.in_features,
            seed=seed, accuracy_source=lambda: loss.class_accuracy)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                weight_decay=1e-4)
    return model, frozen_norms, optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None,
                        help="a generated synthetic benchmark (default: generate the smallest one in a temp folder)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (FHM has no statistics yet)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "synthetic"
        if args.data_root is None:
            tic = time.perf_counter()
            generate_synthetic_lvis(out_dir=root, seed=0, num_train_images=1004, num_val_images=188, progress=False)
            print(f"generated a synthetic benchmark in {time.perf_counter() - tic:.1f} s")
        dataset = LVISDetection(annotation_file=root / "annotations" / "lvis_v1_train.json",
                                image_root=root / "images", filter_empty=True)
        count = args.warmup + args.steps
        g = torch.Generator().manual_seed(args.seed)
        order = torch.randperm(len(dataset), generator=g)[: count * args.batch].tolist()
        batches = []
        for k in range(count):
            samples = [dataset[i] for i in order[k * args.batch:(k + 1) * args.batch]]
            batches.append(([img for img, _ in samples], [t for _, t in samples]))

    c = dataset.num_classes
    torch.manual_seed(args.seed)
    stage1 = build_model(ModelParams(), num_classes=c, loss=build_loss("bce", num_classes=c)).state_dict()
    fhm = FHMParams()
    runs = {}
    for name, with_bacl in (("bce", False), ("fcbl+fhm", True)):
        model, norms, optimizer = build_stage2_model(stage1, num_classes=c, with_bacl=with_bacl, fhm=fhm,
                                                     seed=args.seed)
        timers = Timers()
        timers.wrap_module(model.roi_heads.classification_loss, "loss")
        if with_bacl:
            h = model.roi_heads.hallucinator
            timers.wrap_module(h, "fhm")
            timers.wrap_method(h, "jitter_boxes", "fhm_jitter")
            timers.wrap_method(h, "update", "fhm_update")
            timers.wrap_method(h, "sample", "fhm_sample")
        train_mode(model, norms)
        runs[name] = (model, optimizer, timers)

    cpu = {name: 0.0 for name in runs}
    for k, (images, targets) in enumerate(batches):
        for name, (model, optimizer, timers) in runs.items():
            wall, proc = time.perf_counter(), time.process_time()
            losses = model(images, targets)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            wall, proc = time.perf_counter() - wall, time.process_time() - proc
            if k < args.warmup:
                timers.step.clear()
            else:
                timers.end_step(wall)
                cpu[name] += proc

    boxes = sum(len(t["boxes"]) for _, ts in batches for t in ts) / len(batches)
    print(f"{c} classes, batch {args.batch} ({boxes:.0f} ground-truth boxes per batch), {args.steps} timed steps, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    base, bacl = runs["bce"][2], runs["fcbl+fhm"][2]
    for name, (_, _, timers) in runs.items():
        print(f"  {name:9s} {timers.median_ms('step'):8.1f} ms/step (median; CPU {1000 * cpu[name] / args.steps:.1f} ms)")
    ratio = bacl.median_ms("step") / base.median_ms("step")
    print(f"  ratio     {ratio:8.3f}x  (target <= 1.25x)")
    fhm_total = bacl.median_ms("fhm")
    parts = {
        "FHM jitter + RoIAlign + box head": fhm_total - bacl.median_ms("fhm_update") - bacl.median_ms("fhm_sample"),
        "  of which box jitter": bacl.median_ms("fhm_jitter"),
        "FHM update": bacl.median_ms("fhm_update"),
        "FHM sample": bacl.median_ms("fhm_sample"),
        "loss: FCBL - BCE": bacl.median_ms("loss") - base.median_ms("loss"),
    }
    extra = bacl.median_ms("step") - base.median_ms("step")
    print(f"extra time per step: {extra:.1f} ms (medians; FCBL {bacl.median_ms('loss'):.1f} ms, "
          f"BCE {base.median_ms('loss'):.1f} ms)")
    for label, ms in parts.items():
        print(f"  {label:34s} {ms:7.1f} ms")
    rest = extra - fhm_total - parts["loss: FCBL - BCE"]
    print(f"  {'rest (classify extra rows, noise)':34s} {rest:7.1f} ms")


if __name__ == "__main__":
    main()

"""Fixtures of the engine tests: a tiny dataset with a trained stage-1 checkpoint."""

from __future__ import annotations

import pytest
import torch

from bacl.engine.train import train
from bacl.params import Params, load_params

from ..conftest import write_tiny_lvis

STAGES = ("representation", "classifier", "baseline")


def tiny_overrides(data_root, *, stage1_dir, stage2_dir=None, **extra) -> list[str]:
    """Small and fast: 64 px images, 4 per step, 3 steps per epoch on the tiny train split."""
    overrides = [f"data.root={data_root}", "evaluate.min_size=64", "evaluate.workers=0", "solver.batch_size=4",
                 "solver.workers=0", "solver.warmup_iters=2", "solver.base_lr=0.01",
                 f"representation.output_dir={stage1_dir}", "representation.epochs=1"]
    overrides += [f"{stage}.{kv}" for stage in STAGES for kv in ("min_sizes=[64]", "lr_steps=[1]")]
    if stage2_dir is not None:
        overrides += [f"classifier.output_dir={stage2_dir}", f"baseline.output_dir={stage2_dir}"]
    return overrides + [f"{k}={v}" for k, v in extra.items()]


def stage_params(stage1: dict, stage2_dir, *, epochs: int = 1, **extra) -> Params:
    """Classifier-stage parameters starting from the ``stage1`` fixture's checkpoint."""
    extra = {"classifier.epochs": epochs, **extra}
    return load_params(None, tiny_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=stage2_dir, **extra))


def cli_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def random_batch(batch: int, *, size: int, num_classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        wh = torch.rand(3, 2, generator=g) * size / 3 + 8
        xy = torch.rand(3, 2, generator=g) * (size - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], dim=1),
                        "labels": torch.randint(1, num_classes + 1, (3,), generator=g)})
    return images, targets


def read_curve(run, name="loss"):
    """``[(iteration, value)]`` of a run's training curve (its one training log)."""
    lines = (run / "dvclive" / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()
    assert lines[0] == f"step\t{name}"
    return [(int(a), float(b)) for a, b in (line.split("\t") for line in lines[1:])]


def assert_same_curves(run_a, run_b) -> None:
    a, b = read_curve(run_a), read_curve(run_b)
    assert [step for step, _ in a] == [step for step, _ in b]
    assert [value for _, value in a] == pytest.approx([value for _, value in b])


@pytest.fixture(scope="session")
def stage1(tmp_path_factory) -> dict:
    """One epoch of the representation stage (loss bce) on the tiny dataset; read-only."""
    base = tmp_path_factory.mktemp("stage1")
    data = write_tiny_lvis(base / "tiny")
    params = load_params(None, tiny_overrides(data["root"], stage1_dir=base / "run"))
    final = train(params, device="cpu")
    return {**data, "dir": base / "run", "final": final}

"""BACL's classifier stage (stage 2): start, resume, ablations, errors, evaluation."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bacl.cli import main
from bacl.checkpoint import load_checkpoint
from bacl.engine.train import train
from bacl.evaluation.inference import load_trained_model
from bacl.losses import build_loss
from bacl.params import ParamError, load_params

from .conftest import assert_same_curves, cli_args, read_curve, stage_params, tiny_overrides

LOSS = "roi_heads.classification_loss."
FHM = "roi_heads.hallucinator."


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("_extra_state"):  # FHM's generator
            assert torch.equal(a[key]["generator_state"], b[key]["generator_state"]), key
        else:
            assert torch.equal(a[key], b[key]), key


def test_resume_gives_the_same_weights_and_statistics(stage1, tmp_path):
    straight = train(stage_params(stage1, tmp_path / "a", epochs=2), stage="classifier", device="cpu")
    train(stage_params(stage1, tmp_path / "b", epochs=1), stage="classifier", device="cpu")  # "interrupted"
    resumed = train(stage_params(stage1, tmp_path / "b", epochs=2), stage="classifier", resume=True, device="cpu")

    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    for key in (LOSS + "cm_num", LOSS + "num_gt", FHM + "mean", FHM + "var", FHM + "seen", FHM + "_extra_state"):
        assert key in a, key
    assert bool(a[FHM + "seen"].any()) and float(a[LOSS + "num_gt"].sum()) > 0
    assert_same_state(a, b)
    assert_same_curves(tmp_path / "a", tmp_path / "b")


ABLATIONS = {
    "bce": {"classifier.loss": "bce", "classifier.fhm.enabled": "false"},
    "fcbl_only": {"classifier.loss": "fcbl", "classifier.fhm.enabled": "false"},
    "fhm_only": {"classifier.loss": "fcbl", "losses.fcbl.alpha": 0, "losses.fcbl.reweight": "false"},
    "fcbl_fhm": {},
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablations_run_one_epoch(stage1, tmp_path, name):
    params = stage_params(stage1, tmp_path / name, epochs=1, **ABLATIONS[name])
    state = load_checkpoint(train(params, stage="classifier", device="cpu"))
    weights = state["model"]
    assert state["stage"] == "classifier"
    assert (LOSS + "cm_num" in weights) == (params.classifier.loss == "fcbl")
    assert (FHM + "mean" in weights) == params.classifier.fhm.enabled
    if params.classifier.fhm.enabled:
        assert bool(weights[FHM + "seen"].any())
    start = load_checkpoint(stage1["final"])["model"]
    assert all(torch.equal(v, weights[k]) for k, v in start.items() if k.startswith("backbone."))  # frozen
    curve = read_curve(tmp_path / name)
    assert len(curve) == 3 and all(torch.isfinite(torch.tensor(v)) for _, v in curve)


def test_fcbl_without_margin_and_weights_is_plain_bce():
    """The "FHM only" ablation's loss: FCBL with alpha 0 and reweight off is sigmoid BCE
    (same values and gradients, up to float32 rounding: FCBL sums its one-hot BCE in one fused
    pass) while it still tracks the confusion matrix FHM samples by."""
    c = 5
    fcbl = build_loss("fcbl", num_classes=c, alpha=0.0, reweight=False)
    bce = build_loss("bce", num_classes=c)
    gen = torch.Generator().manual_seed(0)
    for step in range(4):  # later steps have non-zero statistics, which must not matter
        logits = (torch.randn(24, c + 1, generator=gen) * 3).requires_grad_()
        labels = torch.randint(0, c + 1, (24,), generator=gen)
        got = fcbl(logits, labels)["loss_cls"]
        (got_grad,) = torch.autograd.grad(got, logits)
        want = bce(logits, labels)["loss_cls"]
        (want_grad,) = torch.autograd.grad(want, logits)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-6, atol=1e-7)
    assert float(fcbl.num_gt.sum()) > 0 and bool((fcbl.class_accuracy > 0).any())


def test_stage_two_may_not_overwrite_stage_one(stage1):
    params = stage_params(stage1, stage1["dir"])
    with pytest.raises(ParamError, match=r"classifier\.output_dir: .* would overwrite"):
        train(params, stage="classifier", device="cpu")


def test_resume_refuses_a_checkpoint_of_the_other_stage(stage1, tmp_path):
    params = stage_params(stage1, tmp_path / "s2")
    train(params, stage="classifier", device="cpu")
    other = load_params(None, tiny_overrides(stage1["root"], stage1_dir=tmp_path / "s2",
                                             **{"representation.epochs": 3}))
    with pytest.raises(ParamError, match="different run .*written by the classifier stage"):
        train(other, stage="representation", resume=True, device="cpu")


def test_evaluate_and_predict_a_classifier_stage_checkpoint(stage1, tmp_path):
    run = tmp_path / "s2"
    args = cli_args(tiny_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=run))
    assert main(["train", "--stage", "classifier", *args]) == 0
    checkpoint = run / "model_final.pt"
    assert main(["evaluate", "--checkpoint", str(checkpoint), *args]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert {"AP", "APr", "APc", "APf"} <= set(metrics)

    model, saved, num_classes = load_trained_model(checkpoint, device=torch.device("cpu"))
    assert model.roi_heads.hallucinator is None  # training-only, dropped for inference
    assert type(model.roi_heads.classification_loss).__name__ == "FCBL"
    stats = load_checkpoint(checkpoint)["model"][LOSS + "cm_num"]
    assert torch.equal(model.roi_heads.classification_loss.cm_num, stats)
    out = tmp_path / "pred.json"
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(stage1["image_root"] / "val"),
                 "--output", str(out), "--score-threshold", "0"]) == 0
    assert isinstance(json.loads(out.read_text()), list)


def ddp_worker(rank: int, world: int, port: int, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    try:
        train(load_params(None, overrides), stage="classifier", device="cpu")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_processes_train_the_frozen_stage(stage1, tmp_path):
    """DDP over the trainable parameters only, without buffer broadcasts; each process's
    FHM generator is saved."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    overrides = tiny_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=tmp_path / "s2",
                               **{"solver.batch_size": 2})
    mp.spawn(ddp_worker, args=(2, port, overrides), nprocs=2, join=True)
    state = load_checkpoint(tmp_path / "s2" / "checkpoints" / "last.pt")
    start = load_checkpoint(stage1["final"])["model"]
    assert all(torch.equal(v, state["model"][k]) for k, v in start.items() if k.startswith("backbone."))
    assert not torch.equal(start["roi_heads.box_predictor.cls_score.weight"],
                           state["model"]["roi_heads.box_predictor.cls_score.weight"])
    first, second = state["generators"]["roi_heads.hallucinator"]
    assert torch.equal(first, state["model"][FHM + "_extra_state"]["generator_state"])
    assert not torch.equal(first, second)  # seeded with seed + rank


def test_baseline_stage_continues_stage_one_with_nothing_frozen(stage1, tmp_path):
    params = stage_params(stage1, tmp_path / "baseline", **{"baseline.epochs": 1})
    final = train(params, stage="baseline", device="cpu")
    state = load_checkpoint(final)
    assert state["stage"] == "baseline"
    start = load_checkpoint(stage1["final"])["model"]
    changed = {k for k, v in state["model"].items() if v.is_floating_point() and not torch.equal(v, start[k])}
    assert any(k.startswith("backbone.") for k in changed)  # trained, not frozen
    assert any(k.startswith("roi_heads.box_head.") for k in changed)
    assert set(state["model"]) == set(start)  # the same network and loss as stage 1 (bce), no FHM
    model, saved, _ = load_trained_model(final, device=torch.device("cpu"))
    assert saved.baseline.output_dir == str(tmp_path / "baseline")
    last = load_checkpoint(tmp_path / "baseline" / "checkpoints" / "last.pt")
    assert len(last["init_sha256"]) == 64


def test_a_baseline_from_the_models_initialisation(stage1, tmp_path):
    """The seed table's baselines: trained on their own, not from stage 1."""
    params = stage_params(stage1, tmp_path / "baseline", **{"baseline.init_from": "model", "baseline.epochs": 1,
                                                            "baseline.loss": "softmax_ce"})
    final = load_checkpoint(train(params, stage="baseline", device="cpu"))
    again = load_checkpoint(train(load_params(None, tiny_overrides(
        stage1["root"], stage1_dir=tmp_path / "alone", **{"representation.loss": "softmax_ce"})), device="cpu"))
    assert all(torch.equal(final["model"][k], again["model"][k]) for k in again["model"])  # = a stage 1 of its own
    assert load_checkpoint(tmp_path / "baseline" / "checkpoints" / "last.pt")["init_sha256"] is None


def test_baseline_stage_from_the_command_line(stage1, tmp_path):
    args = ["train", "--stage", "baseline", "--device", "cpu",
            *cli_args(tiny_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=tmp_path / "b"))]
    assert main(args) == 0
    assert (tmp_path / "b" / "model_final.pt").is_file()
    assert (tmp_path / "b" / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()

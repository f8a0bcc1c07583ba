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
from bacl.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bacl.engine.inference import load_trained_model
from bacl.engine.train import train
from bacl.losses import build_loss
from bacl.params import ParamError, load_params

from .conftest import stage_overrides, stage_params

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
    log_a = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log_a] == [r["iteration"] for r in log_b]
    assert [r["loss"] for r in log_a] == pytest.approx([r["loss"] for r in log_b])


ABLATIONS = {
    "bce": {"classifier.loss": "bce", "classifier.fhm.enabled": "false"},
    "fcbl_only": {"classifier.loss": "fcbl", "classifier.fhm.enabled": "false"},
    "fhm_only": {"classifier.loss": "fcbl", "classifier.fcbl.alpha": 0, "classifier.fcbl.reweight": "false"},
    "fcbl_fhm": {},
    "continued_bce_unfrozen": {"classifier.loss": "bce", "classifier.fhm.enabled": "false",
                               "classifier.freeze": "false"},
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
    backbone_unchanged = all(torch.equal(v, weights[k]) for k, v in start.items() if k.startswith("backbone."))
    assert backbone_unchanged == params.classifier.freeze
    lines = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(torch.isfinite(torch.tensor(json.loads(x)["loss"])) for x in lines)


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


def test_fhm_needs_a_loss_with_class_accuracy():
    with pytest.raises(ParamError, match=r"classifier\.fhm\.enabled: .*'bce'"):
        load_params(None, ["classifier.loss=bce"])
    with pytest.raises(ParamError, match=r"classifier\.fhm\.enabled"):
        load_params(None, ["classifier.loss=softmax_ce"])
    assert load_params(None, ["classifier.loss=bce", "classifier.fhm.enabled=false"]).classifier.loss == "bce"


def test_missing_initial_checkpoint_is_named(stage1, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "model_final.pt"
    params = stage_params(stage1, tmp_path / "s2", **{"classifier.init_from": str(missing)})
    with pytest.raises(FileNotFoundError, match="nowhere/model_final.pt"):
        train(params, stage="classifier", device="cpu")
    args = [a for kv in stage_overrides(stage1["root"], stage1_dir=tmp_path / "no_stage1", stage2_dir=tmp_path / "s2")
            for a in ("--set", kv)]
    assert main(["train", "--stage", "classifier", *args]) == 1
    assert f"{tmp_path / 'no_stage1' / 'model_final.pt'}: no checkpoint" in capsys.readouterr().err


def test_initial_checkpoint_that_does_not_fit_is_named(stage1, tmp_path):
    state = load_checkpoint(stage1["final"])
    del state["model"]["roi_heads.box_head.fc6.weight"]
    state["model"]["roi_heads.classification_loss.cm_num"] = torch.zeros(3, 3)  # stage statistics: ignored
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, state)
    params = stage_params(stage1, tmp_path / "s2", **{"classifier.init_from": str(broken)})
    with pytest.raises(CheckpointError, match=r"broken\.pt: does not fit the model: 1 missing "
                                              r"\['roi_heads\.box_head\.fc6\.weight'\], 0 unexpected"):
        train(params, stage="classifier", device="cpu")


def test_stage_two_may_not_overwrite_stage_one(stage1):
    params = stage_params(stage1, stage1["dir"])
    with pytest.raises(ValueError, match="would overwrite"):
        train(params, stage="classifier", device="cpu")


def test_resume_refuses_a_checkpoint_of_the_other_stage(stage1, tmp_path):
    params = stage_params(stage1, tmp_path / "s2")
    train(params, stage="classifier", device="cpu")
    other = load_params(None, stage_overrides(stage1["root"], stage1_dir=tmp_path / "s2"))
    with pytest.raises(ValueError, match="different run"):
        train(other, stage="representation", resume=True, device="cpu")


def test_evaluate_and_predict_a_classifier_stage_checkpoint(stage1, tmp_path):
    run = tmp_path / "s2"
    args = [a for kv in stage_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=run)
            for a in ("--set", kv)]
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
    overrides = stage_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=tmp_path / "s2",
                                **{"classifier.batch_size": 2})
    mp.spawn(ddp_worker, args=(2, port, overrides), nprocs=2, join=True)
    state = load_checkpoint(tmp_path / "s2" / "checkpoints" / "last.pt")
    start = load_checkpoint(stage1["final"])["model"]
    assert all(torch.equal(v, state["model"][k]) for k, v in start.items() if k.startswith("backbone."))
    assert not torch.equal(start["roi_heads.box_predictor.cls_score.weight"],
                           state["model"]["roi_heads.box_predictor.cls_score.weight"])
    first, second = state["fhm_generators"]
    assert torch.equal(first, state["model"][FHM + "_extra_state"]["generator_state"])
    assert not torch.equal(first, second)  # seeded with seed + rank


def test_baseline_stage_continues_stage_one_with_nothing_frozen(stage1, tmp_path):
    params = stage_params(stage1, tmp_path / "baseline", **{"baseline.epochs": 1})
    assert (params.baseline.freeze, params.baseline.loss, params.baseline.fhm.enabled) == (False, "bce", False)
    final = train(params, stage="baseline", device="cpu")
    state = load_checkpoint(final)
    assert state["stage"] == "baseline"
    start = load_checkpoint(stage1["final"])["model"]
    changed = {k for k, v in state["model"].items() if v.is_floating_point() and not torch.equal(v, start[k])}
    assert any(k.startswith("backbone.") for k in changed)  # trained, not frozen
    assert any(k.startswith("roi_heads.box_head.") for k in changed)
    assert not any(k.startswith(FHM) for k in state["model"])
    assert set(state["model"]) == set(start)  # the same network and loss as stage 1 (bce)
    model, saved, _ = load_trained_model(final, device=torch.device("cpu"))
    assert saved.baseline.output_dir == str(tmp_path / "baseline")
    last = load_checkpoint(tmp_path / "baseline" / "checkpoints" / "last.pt")
    assert len(last["init_sha256"]) == 64


def test_baseline_stage_from_the_command_line(stage1, tmp_path):
    args = ["train", "--stage", "baseline", "--device", "cpu"]
    for item in stage_overrides(stage1["root"], stage1_dir=stage1["dir"], stage2_dir=tmp_path / "b"):
        args += ["--set", item]
    assert main(args) == 0
    assert (tmp_path / "b" / "model_final.pt").is_file()
    assert (tmp_path / "b" / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()

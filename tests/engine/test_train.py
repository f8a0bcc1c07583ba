import json

import pytest
import torch

from bacl.engine.checkpoint import load_checkpoint
from bacl.engine.train import stale_reason, train
from bacl.params import load_params


def tiny_params(data_root, out_dir, **extra):
    overrides = [
        f"data.root={data_root}", f"train.output_dir={out_dir}",
        "model.min_size_train=[64]", "model.min_size_test=64",
        "train.batch_size=4", "train.workers=0", "train.warmup_iters=2", "train.lr_steps=[1]",
        "train.base_lr=0.01", "evaluate.workers=0",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_params(None, overrides)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_lvis, tmp_path):
    root = tiny_lvis["root"]
    straight = train(tiny_params(root, tmp_path / "a", **{"train.epochs": 2}), device="cpu")

    train(tiny_params(root, tmp_path / "b", **{"train.epochs": 1}), device="cpu")  # "interrupted" after epoch 1
    resumed = train(tiny_params(root, tmp_path / "b", **{"train.epochs": 2}), resume=True, device="cpu")

    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log_a = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log_a] == [r["iteration"] for r in log_b]
    assert [r["loss"] for r in log_a] == pytest.approx([r["loss"] for r in log_b])


def test_checkpoint_holds_the_resumable_state(tiny_lvis, tmp_path):
    params = tiny_params(tiny_lvis["root"], tmp_path / "run", **{"train.epochs": 1})
    train(params, device="cpu")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "sampler", "rng", "epoch", "iteration", "params"} <= set(state)
    assert state["params"] == params.to_dict()
    assert (tmp_path / "run" / "params.yaml").exists()


def test_existing_run_is_not_overwritten_without_resume(tiny_lvis, tmp_path):
    params = tiny_params(tiny_lvis["root"], tmp_path / "run", **{"train.epochs": 1})
    train(params, device="cpu")
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train(params, device="cpu")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_images_without_boxes_train(tiny_lvis, tmp_path):
    path = tiny_lvis["train"]
    data = json.loads(path.read_text())
    empty_ids = {img["id"] for img in data["images"][:4]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in empty_ids]
    path.write_text(json.dumps(data))
    params = tiny_params(tiny_lvis["root"], tmp_path / "run", **{"train.epochs": 1, "train.filter_empty": "false"})
    final = train(params, device="cpu")
    assert final.exists()


def read_log(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def read_curve(run, name="loss"):
    lines = (run / "dvclive" / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()
    assert lines[0] == f"step\t{name}"
    return [(int(a), float(b)) for a, b in (line.split("\t") for line in lines[1:])]


def test_auto_resume_continues_an_unfinished_run_of_the_same_parameters(tiny_lvis, tmp_path):
    root = tiny_lvis["root"]
    straight = train(tiny_params(root, tmp_path / "a", **{"train.epochs": 2}), device="cpu")
    train(tiny_params(root, tmp_path / "b", **{"train.epochs": 1}), device="cpu")  # "interrupted"
    resumed = train(tiny_params(root, tmp_path / "b", **{"train.epochs": 2}), auto_resume=True, device="cpu")
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = read_log(tmp_path / "b" / "train_log.jsonl")
    curve = read_curve(tmp_path / "b")
    assert [step for step, _ in curve] == [r["iteration"] for r in log] == list(range(6))
    assert [v for _, v in curve] == pytest.approx([r["loss"] for r in log])
    assert [v for _, v in read_curve(tmp_path / "a")] == pytest.approx([v for _, v in curve])


def test_auto_resume_restarts_a_finished_run(tiny_lvis, tmp_path):
    params = tiny_params(tiny_lvis["root"], tmp_path / "run", **{"train.epochs": 1})
    first = load_checkpoint(train(params, device="cpu"))["model"]
    again = load_checkpoint(train(params, auto_resume=True, device="cpu"))["model"]
    assert all(torch.equal(first[k], again[k]) for k in first)  # trained again from scratch, same seed
    assert [r["iteration"] for r in read_log(tmp_path / "run" / "train_log.jsonl")] == [0, 1, 2]
    assert [s for s, _ in read_curve(tmp_path / "run")] == [0, 1, 2]


def test_stale_reason():
    params = load_params(None, ["train.epochs=4"])
    state = {"stage": "representation", "epoch": 2, "params": params.to_dict()}
    assert stale_reason(state, params, stage="representation", init_sha256=None) is None
    longer = load_params(None, ["train.epochs=6"])
    assert stale_reason(state, longer, stage="representation", init_sha256=None) is None  # epochs may grow
    assert "finished" in stale_reason({**state, "epoch": 4}, params, stage="representation", init_sha256=None)
    other = load_params(None, ["train.epochs=4", "train.base_lr=0.01"])
    assert "train parameters differ (base_lr)" in stale_reason(state, other, stage="representation",
                                                               init_sha256=None)
    other = load_params(None, ["train.epochs=4", "model.min_size_test=128"])
    assert "model parameters differ" in stale_reason(state, other, stage="representation", init_sha256=None)
    unrelated = load_params(None, ["train.epochs=4", "classifier.fcbl.alpha=0.5"])
    assert stale_reason(state, unrelated, stage="representation", init_sha256=None) is None
    stage2 = {"stage": "classifier", "epoch": 1, "params": params.to_dict(), "init_sha256": "abc"}
    assert stale_reason(stage2, params, stage="classifier", init_sha256="abc") is None
    assert "other weights" in stale_reason(stage2, params, stage="classifier", init_sha256="def")
    assert "classifier stage" in stale_reason(stage2, params, stage="baseline", init_sha256="abc")


def test_resume_and_auto_resume_exclude_each_other_on_the_command_line(capsys):
    from bacl.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--resume", "--auto-resume"])
    assert "not allowed" in capsys.readouterr().err

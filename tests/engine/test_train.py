import json

import pytest
import torch

from bacl.engine.checkpoint import load_checkpoint
from bacl.engine.train import train
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

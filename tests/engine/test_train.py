"""The training loop: exact resume, one staleness rule, runs never silently overwritten."""

import json

import pytest
import torch

from bacl.checkpoint import load_checkpoint
from bacl.engine.train import train
from bacl.params import ParamError, load_params

from .conftest import assert_same_curves, read_curve, tiny_overrides


def tiny_params(data_root, out_dir, **extra):
    return load_params(None, tiny_overrides(data_root, stage1_dir=out_dir, **extra))


def same_weights(a, b) -> bool:
    a, b = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_gives_the_same_weights_and_curves_as_an_uninterrupted_run(tiny_lvis, tmp_path):
    root = tiny_lvis["root"]
    straight = train(tiny_params(root, tmp_path / "a", **{"representation.epochs": 2}), device="cpu")
    train(tiny_params(root, tmp_path / "b", **{"representation.epochs": 1}), device="cpu")  # "interrupted"
    resumed = train(tiny_params(root, tmp_path / "b", **{"representation.epochs": 2}), resume=True, device="cpu")
    assert same_weights(straight, resumed)
    curve = read_curve(tmp_path / "b")
    assert [step for step, _ in curve] == list(range(6))
    assert [v for _, v in curve] == pytest.approx([v for _, v in read_curve(tmp_path / "a")])


def test_auto_resume_continues_an_unfinished_run_and_drops_the_rows_it_relogs(tiny_lvis, tmp_path):
    root = tiny_lvis["root"]
    straight = train(tiny_params(root, tmp_path / "a", **{"representation.epochs": 2}), device="cpu")
    train(tiny_params(root, tmp_path / "b", **{"representation.epochs": 1}), device="cpu")
    # As if the 2-epoch run had died in epoch 2 after logging two of its iterations.
    curve = tmp_path / "b" / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
    curve.write_text(curve.read_text() + "3\t9.0\n4\t9.0\n")
    resumed = train(tiny_params(root, tmp_path / "b", **{"representation.epochs": 2}), auto_resume=True,
                    device="cpu")
    assert same_weights(straight, resumed)
    assert_same_curves(tmp_path / "b", tmp_path / "a")


def test_checkpoint_holds_the_resumable_state(tiny_lvis, tmp_path):
    params = tiny_params(tiny_lvis["root"], tmp_path / "run")
    train(params, device="cpu")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "sampler", "rng", "epoch", "iteration", "params", "stage"} <= set(state)
    assert state["params"] == params.to_dict()
    assert load_params(tmp_path / "run" / "params.yaml") == params
    final = load_checkpoint(tmp_path / "run" / "model_final.pt")
    assert final["loss_statistics"]["image_counts"].tolist() == [int(c) for c in final["loss_statistics"]
                                                                  ["image_counts"]]
    assert final["loss_statistics"]["num_images"] == 12


def test_existing_run_is_not_overwritten_without_resume(tiny_lvis, tmp_path):
    params = tiny_params(tiny_lvis["root"], tmp_path / "run")
    train(params, device="cpu")
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train(params, device="cpu")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_refuses_another_runs_checkpoint(tiny_lvis, tmp_path):
    train(tiny_params(tiny_lvis["root"], tmp_path / "run", **{"representation.epochs": 1}), device="cpu")
    other = tiny_params(tiny_lvis["root"], tmp_path / "run", **{"representation.epochs": 2, "solver.momentum": 0.8})
    with pytest.raises(ParamError, match=r"different run \(its settings differ \(solver\)\)"):
        train(other, resume=True, device="cpu")


def test_auto_resume_restarts_a_finished_run(tiny_lvis, tmp_path):
    params = tiny_params(tiny_lvis["root"], tmp_path / "run")
    first = train(params, device="cpu")
    digest = load_checkpoint(first)["model"]
    again = load_checkpoint(train(params, auto_resume=True, device="cpu"))["model"]
    assert all(torch.equal(digest[k], again[k]) for k in digest)  # trained again from scratch, same seed
    assert [s for s, _ in read_curve(tmp_path / "run")] == [0, 1, 2]


def test_images_without_boxes_train(tiny_lvis, tmp_path):
    path = tiny_lvis["train"]
    data = json.loads(path.read_text())
    empty_ids = {img["id"] for img in data["images"][:4]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in empty_ids]
    path.write_text(json.dumps(data))
    params = tiny_params(tiny_lvis["root"], tmp_path / "run", **{"representation.filter_empty": "false"})
    assert train(params, device="cpu").exists()


def test_resume_and_auto_resume_exclude_each_other_on_the_command_line(capsys):
    from bacl.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--resume", "--auto-resume"])
    assert "not allowed" in capsys.readouterr().err

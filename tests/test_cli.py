import json
import subprocess
import sys
from pathlib import Path

import pytest

from bacl.cli import build_parser, main

COMMANDS = ["download", "data", "train", "evaluate", "predict", "demo", "preset", "convert-mmdet"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: bacl " + command in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "bacl", "--help"], capture_output=True, text=True, check=True)
    assert "evaluate" in out.stdout


def test_parameter_error_exits_2_and_names_the_key(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--set", "representation.epochs=0"]) == 2
    assert "representation.epochs: must be >= 1" in capsys.readouterr().err


def test_verbose_shows_the_traceback_of_a_project_error(tmp_path, monkeypatch):
    from bacl.params import ParamError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamError, match="representation.epochs"):
        main(["-v", "train", "--set", "representation.epochs=0"])


def test_a_bug_is_not_swallowed(monkeypatch, tmp_path):
    """Only the project's error types become one line; anything else raises with its traceback."""
    import bacl.data.prepare

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(bacl.data.prepare, "prepare_data", broken)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyError, match="a bug"):
        main(["data"])


def test_scoring_a_results_file_imports_no_torch(tiny_lvis, tmp_path):
    gt = json.loads(tiny_lvis["val"].read_text())
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5}
            for a in gt["annotations"]]
    det_path = tmp_path / "results.json"
    det_path.write_text(json.dumps(dets))
    code = ("import sys; from bacl.cli import main; "
            f"code = main(['evaluate', '--annotations', {str(tiny_lvis['val'])!r}, '--detections', {str(det_path)!r}, "
            f"'--summary', {str(tmp_path / 's.json')!r}, '--per-class', {str(tmp_path / 'c.csv')!r}]); "
            "assert code == 0; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_preset_writes_a_params_file_that_loads_back(tmp_path, monkeypatch):
    from bacl.params import load_params

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    out = tmp_path / "params.yaml"
    assert main(["preset", "lvis_v1_r50_fpn", "--output", str(out), "--set", "seed=3"]) == 0
    params = load_params(out)
    assert params == load_params(root / "configs" / "lvis_v1_r50_fpn.yaml", ["seed=3"])
    assert "Written by `bacl preset lvis_v1_r50_fpn`" in out.read_text()


def test_an_unknown_preset_lists_the_known_ones(capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(["preset", "lvis_v2", "--output", "-"]) == 2
    assert "presets here: ['synthetic', 'lvis_v0.5_r101_fpn'" in capsys.readouterr().err


def test_evaluate_a_results_file(tiny_lvis, tmp_path, capsys):
    gt = json.loads(tiny_lvis["val"].read_text())
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]
    det_path = tmp_path / "results.json"
    det_path.write_text(json.dumps(dets))
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--annotations", str(tiny_lvis["val"]), "--detections", str(det_path),
                 "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["AP"] == pytest.approx(1.0)
    assert "APr" in capsys.readouterr().out
    assert main(["evaluate", "--annotations", str(tiny_lvis["val"]), "--detections", str(det_path),
                 "--output", str(out), "--protocol", "pooled", "--protocol", "lvis@1", "--max-dets-per-class", "7"]) == 0
    metrics = json.loads(out.read_text())
    assert (metrics["protocol"], metrics["max_dets_per_class"], list(metrics["protocols"])) == (
        "pooled", 7, ["pooled", "lvis@1"])
    assert "pooled AP, at most 7 detections per class" in capsys.readouterr().out


def test_evaluate_writes_headline_metrics_and_per_class_csv(tiny_lvis, tmp_path):
    gt = json.loads(tiny_lvis["val"].read_text())
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]
    det_path = tmp_path / "results.json"
    det_path.write_text(json.dumps(dets))
    summary, per_class = tmp_path / "m" / "summary.json", tmp_path / "m" / "per_class.csv"
    assert main(["evaluate", "--annotations", str(tiny_lvis["val"]), "--detections", str(det_path),
                 "--output", str(tmp_path / "metrics.json"), "--summary", str(summary),
                 "--per-class", str(per_class)]) == 0
    headline = json.loads(summary.read_text())
    assert set(headline) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "num_images",
                             "num_detections", "protocol", "max_dets", "max_dets_per_class", "protocols"}
    assert list(headline["protocols"]) == ["lvis", "lvis@300", "fixed", "pooled"]  # evaluate.protocols
    assert headline["protocols"]["fixed"]["AP"] == pytest.approx(1.0)
    assert headline["AP"] == pytest.approx(1.0) and headline["APl"] is None  # undefined, not -1
    lines = per_class.read_text().splitlines()
    assert lines[0] == "category_id,name,frequency,image_count,AP"
    assert len(lines) == 1 + len({a["category_id"] for a in gt["annotations"]})


def test_evaluate_names_a_malformed_results_file(tiny_lvis, tmp_path, capsys):
    det_path = tmp_path / "broken.json"
    det_path.write_text('[{"image_id": 1000, "category_id": 1')
    assert main(["evaluate", "--annotations", str(tiny_lvis["val"]), "--detections", str(det_path)]) == 1
    assert "broken.json" in capsys.readouterr().err


def test_train_evaluate_predict_end_to_end(tiny_lvis, tmp_path, capsys):
    root, run = tiny_lvis["root"], tmp_path / "run"
    common = ["--set", f"data.root={root}", "--set", f"representation.output_dir={run}",
              "--set", "representation.epochs=1", "--set", "representation.min_sizes=[64]",
              "--set", "evaluate.min_size=64", "--set", "solver.workers=0", "--set", "evaluate.workers=0",
              "--set", "solver.batch_size=4"]
    assert main(["train", *common]) == 0
    assert main(["evaluate", *common]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert {"AP", "APr", "APc", "APf", "per_class"} <= set(metrics)
    assert json.loads((run / "eval" / "detections.json").read_text())  # a list of LVIS records
    out = tmp_path / "pred.json"
    assert main(["predict", "--checkpoint", str(run / "model_final.pt"), "--images",
                 str(tiny_lvis["image_root"] / "val"), "--output", str(out), "--score-threshold", "0",
                 "--draw", str(tmp_path / "drawn")]) == 0
    assert isinstance(json.loads(out.read_text()), list)


def test_convert_an_mmdetection_checkpoint_and_load_it(tmp_path, monkeypatch, capsys):
    """`bacl convert-mmdet` with an LVIS preset: every tensor mapped, and bacl's loader takes the result."""
    import torch

    from bacl.evaluation.inference import load_trained_model

    from .models.mmdet_reference import mmdet_faster_rcnn_shapes, random_state, save_mmdet_checkpoint

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    state = random_state(mmdet_faster_rcnn_shapes(fcbl=True, fhm=True))
    source = save_mmdet_checkpoint(tmp_path / "bacl_r50.pth", state)
    out = tmp_path / "converted.pt"
    assert main(["convert-mmdet", str(source), str(out), "--config", "configs/lvis_v1_r50_fpn.yaml",
                 "--set", "evaluate.min_size=64", "--set", "evaluate.max_size=96",
                 "--set", "data.dataset=synthetic", "--set", f"data.root={tmp_path}"]) == 0  # 5 classes, not 1,203
    assert "dropped (training-only)" in capsys.readouterr().out
    model, params, num_classes = load_trained_model(out, device=torch.device("cpu"))
    assert params.model.anchors == "mmdet" and params.model.pretrained_backbone is None
    torch.testing.assert_close(model.roi_heads.box_predictor.cls_score.weight, state["roi_head.bbox_head.fc_cls.weight"])
    with torch.no_grad():
        detections = model([torch.rand(3, 64, 80)])
    assert set(detections[0]) == {"boxes", "labels", "scores"}

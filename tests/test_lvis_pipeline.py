"""The LVIS chain of the pipeline, end to end, on a tiny LVIS-shaped dataset served on the loopback.

`bacl preset lvis_v1_r50_fpn` (plus overrides that make it tiny: the small CPU model, 1
epoch, small images, the archive server as mirror) turns the repository to LVIS; `dvc
repro` then downloads the annotations and COCO-style image archives, checks them, trains
stage 1 with large-scale jitter and copy-paste, the classifier stage and the seed table's
baseline (softmax CE from the model's initialisation), evaluates both and runs the
notebooks. A second `dvc repro` touches neither the network nor any stage. The v0.5 files
go through the download and data steps.

Marked ``pipeline`` (runs by default; ``-m "not pipeline"`` skips it).
"""

from __future__ import annotations

import json

import pytest
import yaml

from .data.lvis_like import ArchiveServer, build_lvis_like
from .pipeline_project import Project, commit, make_project, stages_run

pytestmark = pytest.mark.pipeline

TINY = ["solver.launcher=python", "model.preset=synthetic_small", "model.pretrained_backbone=null", "model.backbone_norm=null", "solver.batch_size=4",
        "solver.workers=0", "solver.warmup_iters=2", "solver.base_lr=0.01", "representation.lsj.output_size=96",
        "representation.lsj.bbox_occluded_thr=1", "representation.lsj.mask_occluded_thr=4", "evaluate.min_size=72",
        "evaluate.batch_size=4", "evaluate.workers=0", "data.lvis.download.retries=1",
        "data.lvis.download.timeout_s=10"]
TINY += [f"{stage}.{kv}" for stage in ("representation", "classifier", "baseline")
         for kv in ("epochs=1", "lr_steps=[1]", "min_sizes=[72]", "max_size=96")]


def manifest(like, base_url: str) -> dict:
    return {name: {"url": f"{base_url}/{e['relative_url']}", "kind": e["kind"], "contents": e["contents"],
                   "size": e["size"], "sha256": e["sha256"]} for name, e in like.entries.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    like = build_lvis_like(tmp_path_factory.mktemp("lvis_like"))
    with ArchiveServer(like.served_dir) as server:
        yield like, server


@pytest.fixture(scope="module")
def lvis_project(served, tmp_path_factory) -> Project:
    like, server = served
    project = make_project(tmp_path_factory.mktemp("lvis_pipeline"))
    (project.root / "mirror.json").write_text(json.dumps(manifest(like, server.url)))
    project.bacl("preset", "lvis_v1_r50_fpn", *[a for kv in TINY for a in ("--set", kv)],
                 "--set", "data.lvis.download.manifest=mirror.json")
    commit(project, "LVIS, tiny")
    project.first = project.dvc("repro")
    return project


def test_one_command_turns_the_pipeline_to_lvis(lvis_project):
    params = yaml.safe_load((lvis_project.root / "params.yaml").read_text())
    assert params["data"]["dataset"] == "lvis_v1" and params["evaluate"]["detections_per_img"] == 300
    assert params["baseline"]["loss"] == "softmax_ce" and params["baseline"]["init_from"] == "model"
    assert params["representation"]["lsj"]["enabled"] and params["representation"]["lsj"]["copy_paste"]
    preset = yaml.safe_load((lvis_project.root / "configs" / "lvis_v1_r50_fpn.yaml").read_text())
    assert preset["solver"]["launcher"].startswith("torchrun")  # the pipeline trains on GPUs with DDP


def test_repro_downloads_checks_trains_evaluates_and_reports(lvis_project, served):
    like, server = served
    assert stages_run(lvis_project.first.stdout) == {
        "download", "data", "representation", "train@classifier", "train@baseline", "evaluate@classifier",
        "evaluate@baseline", "tail_class_gains", "hallucinated_features"}
    root = lvis_project.root
    assert {p.name for p in (root / "data" / "lvis").iterdir()} >= {"lvis_v1_train.json", "lvis_v1_val.json"}
    coco = root / "data" / "coco"
    assert sorted(p.relative_to(coco).as_posix() for p in coco.rglob("*.jpg")) == sorted(
        f for f in like.tree["coco"] if f.endswith(".jpg"))
    summary = json.loads((root / "data" / "lvis_v1" / "summary.json").read_text())
    assert summary["dataset"] == "lvis_v1" and summary["splits"]["train"]["images"] > 0
    for run in ("representation", "bacl", "baseline"):
        assert (root / "runs" / "lvis_v1_r50_fpn" / run / "model_final.pt").is_file()
    metrics = json.loads((root / "runs" / "lvis_v1_r50_fpn" / "bacl" / "eval" / "metrics.json").read_text())
    assert metrics["max_dets"] == 300 and len(metrics["per_class"]) == 6
    for name in ("tail_class_gains", "hallucinated_features"):
        executed = json.loads((root / "reports" / f"{name}.ipynb").read_text())
        assert not [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert server.gets("/lvis_v1_train.json.zip")


def test_a_second_repro_asks_the_network_nothing(lvis_project, served):
    _, server = served
    before = len(server.requests)
    again = lvis_project.dvc("repro")
    assert not stages_run(again.stdout)
    lvis_project.bacl("download")  # the step itself, run again by hand: everything is in place
    assert len(server.requests) == before


def test_lvis_v05_records_go_through_download_and_data(served, tmp_path_factory):
    like, server = served
    project = make_project(tmp_path_factory.mktemp("lvis_v05"))
    (project.root / "mirror.json").write_text(json.dumps(manifest(like, server.url)))
    project.bacl("preset", "lvis_v0.5_r50_fpn", *[a for kv in TINY for a in ("--set", kv)],
                 "--set", "data.lvis.download.manifest=mirror.json")
    commit(project, "LVIS v0.5, tiny")
    done = project.dvc("repro", "data")
    assert stages_run(done.stdout) == {"download", "data"}
    summary = json.loads((project.root / "data" / "lvis_v0.5" / "summary.json").read_text())
    assert summary["dataset"] == "lvis_v0.5" and summary["splits"]["val"]["images"] > 0

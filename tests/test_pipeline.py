"""The DVC pipeline end to end, on a copy of the repository with tiny parameters.

`dvc repro` runs every stage (data check, three trainings, two evaluations, both
notebooks); a second `dvc repro` runs nothing; an ablation of a classifier key
(`dvc exp run -S classifier.fcbl.alpha=0.5`) re-runs the classifier stage and what is
downstream of it only; metrics and plots are readable by dvc; a wrong parameter stops
the data stage naming the key. Also: every stage's code deps cover what it imports.

Marked ``pipeline`` (runs by default; ``-m "not pipeline"`` skips it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .conftest import use_train_counts, write_tiny_lvis
from .pipeline_project import REPO, Project, commit, make_project, stages_run

pytestmark = pytest.mark.pipeline

ALL_STAGES = {"download", "data", "representation", "train@classifier", "train@baseline", "evaluate@classifier",
              "evaluate@baseline", "tail_class_gains", "hallucinated_features"}
TINY_STAGE = {"epochs": 1, "lr_steps": [1], "min_sizes": [64]}


def tiny_params(tiny: dict) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(dataset="lvis_v1", root="data/checked")
    params["data"]["lvis"].update(train_annotations=str(tiny["train"]), val_annotations=str(tiny["val"]),
                                  image_root=str(tiny["image_root"]))
    params["solver"].update(batch_size=4, workers=0, warmup_iters=2, base_lr=0.01)
    for section in ("representation", "classifier", "baseline"):
        params[section].update(TINY_STAGE)
    params["evaluate"].update(min_size=64, batch_size=4, workers=0)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp("pipeline")
    proj = make_project(base)
    tiny = write_tiny_lvis(base / "tiny", num_train=16, num_val=6, seed=5)
    use_train_counts(tiny["train"], tiny["val"])
    (proj.root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny), sort_keys=False))
    commit(proj, "tiny study")
    proj.first = proj.dvc("repro")
    return proj


def test_repro_runs_every_stage(project):
    assert stages_run(project.first.stdout) == ALL_STAGES
    root = project.root
    for name in ("tail_class_gains", "hallucinated_features"):
        assert (root / "reports" / f"{name}.ipynb").is_file()
        assert "<html" in (root / "reports" / f"{name}.html").read_text()[:2000].lower()
        assert list((root / "reports" / "figures" / name).glob("*.png"))
        executed = json.loads((root / "reports" / f"{name}.ipynb").read_text())
        assert not [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    for run in ("representation", "bacl", "baseline"):
        assert (root / "runs" / run / "model_final.pt").is_file()
        assert not (root / "runs" / run / "train_log.jsonl").exists()  # one training log: the curves
        assert (root / "runs" / run / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    summary = json.loads((root / "data" / "checked" / "summary.json").read_text())
    assert summary["dataset"] == "lvis_v1" and summary["splits"]["train"]["images"] == 16


def test_metrics_and_plots_are_readable_by_dvc(project):
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert {"metrics/classifier.json", "metrics/baseline.json"} <= set(files)
    assert "APr" in files["metrics/classifier.json"]["data"]
    out = project.root.parent / "plots"
    project.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    for name in ("training_loss", "per_class_ap", "metrics/classifier_per_class.csv", "fcbl_margins.png"):
        assert name in html, name


def test_second_repro_runs_nothing(project):
    before = project.mtime("runs/bacl/model_final.pt")
    again = project.dvc("repro")
    assert not stages_run(again.stdout), again.stdout
    assert "up to date" in project.dvc("status").stdout
    assert project.mtime("runs/bacl/model_final.pt") == before


def test_classifier_ablation_reruns_only_downstream(project):
    commit(project, "results")
    kept = {p: project.mtime(p) for p in ("runs/representation/model_final.pt", "runs/baseline/model_final.pt",
                                           "runs/baseline/eval/metrics.json", "data/checked/summary.json")}
    changed = {p: project.mtime(p) for p in ("runs/bacl/model_final.pt", "metrics/classifier.json",
                                              "reports/tail_class_gains.html")}
    before = json.loads((project.root / "metrics" / "classifier.json").read_text())
    done = project.dvc("exp", "run", "-S", "classifier.fhm.enabled=false", "-S", "losses.fcbl.alpha=0.5")
    assert stages_run(done.stdout) == {"train@classifier", "evaluate@classifier", "tail_class_gains",
                                       "hallucinated_features"}
    assert {p: project.mtime(p) for p in kept} == kept
    assert all(project.mtime(p) != t for p, t in changed.items())
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    assert (params["classifier"]["fhm"]["enabled"], params["losses"]["fcbl"]["alpha"]) == (False, 0.5)
    checkpoint = torch.load(project.root / "runs" / "bacl" / "model_final.pt", weights_only=True)
    assert not any(k.startswith("roi_heads.hallucinator.") for k in checkpoint["model"])  # trained without FHM
    assert checkpoint["params"]["losses"]["fcbl"]["alpha"] == 0.5

    table = json.loads(project.dvc("exp", "show", "--json").stdout)
    assert table, "dvc exp show lists the experiment"
    after = json.loads((project.root / "metrics" / "classifier.json").read_text())
    diff = json.loads(project.dvc("metrics", "diff", "--json").stdout)
    if after != before:  # the ablation changed some number: dvc reports it against the commit
        assert "metrics/classifier.json" in diff
    project.dvc("plots", "diff", "HEAD", "-o", str(project.root.parent / "plots-diff"))


def test_a_test_time_setting_reruns_evaluation_and_what_reads_it_only(project):
    path = project.root / "params.yaml"
    good = path.read_text()
    params = yaml.safe_load(good)
    params["evaluate"]["detections_per_img"] = 7
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert project.stale_stages() == {"evaluate@classifier", "evaluate@baseline"}  # their direct params
        done = project.dvc("repro")
        # hallucinated_features reads the checkpoint, not the evaluation: it stays.
        assert stages_run(done.stdout) == {"evaluate@classifier", "evaluate@baseline", "tail_class_gains"}
        metrics = json.loads((project.root / "runs" / "bacl" / "eval" / "metrics.json").read_text())
        assert metrics["test_settings"]["detections_per_img"] == metrics["max_dets"] == 7
    finally:
        path.write_text(good)


def test_a_wrong_parameter_stops_the_first_stage_naming_the_key(project):
    path = project.root / "params.yaml"
    good = path.read_text()
    params = yaml.safe_load(good)
    params["data"]["dataset"] = "coco"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        failed = project.dvc("repro", check=False)
        assert failed.returncode != 0
        assert "data.dataset" in failed.stdout + failed.stderr
    finally:
        path.write_text(good)


# ---------------------------------------------------------------- dvc.yaml against the code

# What each stage's command imports: the modules the `bacl` command loads for it, or the notebook's.
STAGE_ENTRY = {
    "download": "bacl.cli; bacl.data.download_step; bacl.data.download",
    "data": "bacl.cli; bacl.data.prepare",
    "representation": "bacl.cli; bacl.engine.train",
    "train": "bacl.cli; bacl.engine.train",
    "evaluate": "bacl.cli; bacl.evaluation.checkpoint_eval; bacl.evaluation.report; bacl.analysis.tail_gains",
}


def notebook_code(name: str) -> str:
    cells = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    lines = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code").splitlines()
    return "; ".join(line.strip() for line in lines if line.startswith(("import bacl", "from bacl")))


def imported_project_files(imports: str) -> set[str]:
    """The files of the package a fresh interpreter loads to run ``imports`` (package
    ``__init__`` files left out: they hold no code, see below)."""
    code = ("import sys, importlib; "
            + "; ".join(f"importlib.import_module({m.strip()!r})" if not m.strip().startswith(("from", "import"))
                        else m.strip() for m in imports.split(";"))
            + "; print('\\n'.join(sorted(m.__file__ for m in list(sys.modules.values()) "
              "if getattr(m, '__file__', None))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    files = {Path(f).resolve() for f in out.stdout.splitlines()}
    package = (REPO / "bacl").resolve()
    return {f.relative_to(REPO).as_posix() for f in files if package in f.parents and f.name != "__init__.py"}


def test_every_stage_lists_the_code_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    entries = {**STAGE_ENTRY, **{n: notebook_code(n) for n in ("tail_class_gains", "hallucinated_features")}}
    assert set(entries) == set(stages)
    for name, imports in entries.items():
        spec = stages[name].get("do", stages[name])
        deps = [d for d in spec["deps"] if isinstance(d, str) and d.startswith("bacl")]
        missing = sorted(f for f in imported_project_files(imports)
                         if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
        assert not missing, f"stage {name}: deps miss {missing}"
        if (REPO / "notebooks" / f"{name}.ipynb").exists():
            assert f"notebooks/{name}.ipynb" in spec["deps"]


def test_training_stages_do_not_depend_on_evaluation_or_analysis_code():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("representation", "train"):
        deps = stages[name].get("do", stages[name])["deps"]
        assert not [d for d in deps if d.startswith(("bacl/evaluation", "bacl/analysis"))], name
        assert not [f for f in imported_project_files(STAGE_ENTRY[name])
                    if f.startswith(("bacl/evaluation", "bacl/analysis"))], name


def test_package_init_files_hold_no_code():
    for init in (REPO / "bacl").rglob("__init__.py"):
        text = init.read_text()
        assert not re.search(r"^\s*(def|class) ", text, flags=re.M), init

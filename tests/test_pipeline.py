"""The DVC pipeline end to end, on a copy of the repository with tiny parameters.

`dvc repro` runs every stage (data check, three trainings, two evaluations, both
notebooks); a second `dvc repro` runs nothing; an ablation of a classifier key
(`dvc exp run -S classifier.fcbl.alpha=0.5`) re-runs the classifier stage and what is
downstream of it only; metrics and plots are readable by dvc; a wrong parameter stops
the data stage naming the key. Also: every stage's code deps cover what it imports.

Marked ``pipeline`` (runs by default; ``-m "not pipeline"`` skips it).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import use_train_counts, write_tiny_lvis

pytestmark = pytest.mark.pipeline

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ALL_STAGES = {"data", "representation", "classifier", "baseline", "evaluate_bacl", "evaluate_baseline",
              "tail_class_gains", "hallucinated_features"}
TINY_STAGE = {"epochs": 1, "batch_size": 4, "workers": 0, "warmup_iters": 2, "lr_steps": [1], "base_lr": 0.01}


def project_files() -> list[str]:
    """The files a clone would have: tracked plus new ones git does not ignore."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                             capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the pipeline test copies the repository's files with git")
    return [f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()]


def tiny_params(tiny: dict) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(dataset="lvis_v1", root="data/checked")
    params["data"]["lvis"] = {"train_annotations": str(tiny["train"]), "val_annotations": str(tiny["val"]),
                              "image_root": str(tiny["image_root"])}
    params["model"].update(min_size_train=[64], min_size_test=64)
    for section in ("train", "classifier", "baseline"):
        params[section].update(TINY_STAGE)
    params["evaluate"].update(batch_size=4, workers=0)
    return params


class Project:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
                                 f"{done.stderr[-4000:]}")
        return done

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check)

    def mtime(self, path: str) -> int:
        return (self.root / path).stat().st_mtime_ns


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp("pipeline")
    root = base / "repo"
    for name in project_files():
        if name == "dvc.lock" or name.startswith(("metrics/", "reports/")):
            continue  # results of the real run; this one starts from nothing
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    tiny = write_tiny_lvis(base / "tiny", num_train=16, num_val=6, seed=5)
    use_train_counts(tiny["train"], tiny["val"])
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny), sort_keys=False))

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(root),
           "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test",
           "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@example.com"}
    env.pop("DVC_ROOT", None)
    proj = Project(root, env)
    proj.run("git", "init", "-q")
    if not (root / ".dvc").is_dir():
        proj.dvc("init", "-q")
    proj.dvc("config", "--local", "core.site_cache_dir", str(base / "dvc-site-cache"))
    proj.run("git", "add", "-A")
    proj.run("git", "commit", "-q", "-m", "tiny study")
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
        assert (root / "runs" / run / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    summary = json.loads((root / "data" / "checked" / "summary.json").read_text())
    assert summary["dataset"] == "lvis_v1" and summary["splits"]["train"]["images"] == 16


def test_metrics_and_plots_are_readable_by_dvc(project):
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert {"metrics/bacl.json", "metrics/baseline.json"} <= set(files)
    assert "APr" in files["metrics/bacl.json"]["data"]
    out = project.root.parent / "plots"
    project.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    for name in ("training_loss", "per_class_ap", "metrics/bacl_per_class.csv", "fcbl_margins.png"):
        assert name in html, name


def test_second_repro_runs_nothing(project):
    before = project.mtime("runs/bacl/model_final.pt")
    again = project.dvc("repro")
    assert not stages_run(again.stdout), again.stdout
    assert "up to date" in project.dvc("status").stdout
    assert project.mtime("runs/bacl/model_final.pt") == before


def test_classifier_ablation_reruns_only_downstream(project):
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "results")
    kept = {p: project.mtime(p) for p in ("runs/representation/model_final.pt", "runs/baseline/model_final.pt",
                                           "runs/baseline/eval/metrics.json", "data/checked/summary.json")}
    changed = {p: project.mtime(p) for p in ("runs/bacl/model_final.pt", "metrics/bacl.json",
                                              "reports/tail_class_gains.html")}
    done = project.dvc("exp", "run", "-S", "classifier.fcbl.alpha=0.5")
    assert stages_run(done.stdout) == {"classifier", "evaluate_bacl", "tail_class_gains", "hallucinated_features"}
    assert {p: project.mtime(p) for p in kept} == kept
    assert all(project.mtime(p) != t for p, t in changed.items())
    assert yaml.safe_load((project.root / "params.yaml").read_text())["classifier"]["fcbl"]["alpha"] == 0.5

    table = json.loads(project.dvc("exp", "show", "--json").stdout)
    assert "0.5" in json.dumps(table)  # the experiment's parameter
    diff = json.loads(project.dvc("metrics", "diff", "--json").stdout)
    assert "metrics/bacl.json" in json.dumps(diff) or diff == {}  # identical numbers are possible on tiny data
    project.dvc("plots", "diff", "HEAD", "-o", str(project.root.parent / "plots-diff"))


def test_a_wrong_parameter_stops_the_data_stage_naming_the_key(project):
    path = project.root / "params.yaml"
    good = path.read_text()
    params = yaml.safe_load(good)
    params["data"]["dataset"] = "coco"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        failed = project.dvc("repro", "-s", "data", check=False)
        assert failed.returncode != 0
        assert "data.dataset" in failed.stdout + failed.stderr
    finally:
        path.write_text(good)


# ---------------------------------------------------------------- dvc.yaml against the code


def stage_entry_modules() -> dict[str, list[str]]:
    """The modules each stage's command imports at its start (the ``bacl`` command's
    lazy imports for that command, or the notebook's imports); their imports follow."""
    training = ["bacl.cli", "bacl.engine.train"]
    evaluation = ["bacl.cli", "bacl.engine.evaluate", "bacl.evaluation.report", "bacl.analysis.tail_gains"]
    return {
        "data": ["bacl.cli", "bacl.data.synthetic", "bacl.data.lvis_dataset", "bacl.data.summary"],
        "representation": training, "classifier": training, "baseline": training,
        "evaluate_bacl": evaluation, "evaluate_baseline": evaluation,
        "tail_class_gains": notebook_imports(REPO / "notebooks" / "tail_class_gains.ipynb"),
        "hallucinated_features": notebook_imports(REPO / "notebooks" / "hallucinated_features.ipynb"),
    }


def module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def top_level_imports(source: str, package: str = "") -> set[str]:
    """The bacl modules ``source`` imports when it runs as a module: import statements
    outside functions and classes (imports inside functions run with the function, and
    the stages' entry modules name the ones their commands reach)."""
    found: set[str] = set()
    pending = list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        else:
            pending.extend(ast.iter_child_nodes(node))
    return {m for m in found if m.split(".")[0] == "bacl" and module_file(m) is not None}


def module_imports(name: str) -> set[str]:
    path = module_file(name)
    return top_level_imports(path.read_text(), name if path.name == "__init__.py" else name.rpartition(".")[0])


def notebook_imports(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return sorted(top_level_imports(code))


def imported_files(modules: list[str]) -> set[str]:
    """Files of the bacl modules that importing ``modules`` loads (parents packages
    included), package ``__init__`` files left out: they only re-export, and the modules
    they import are followed."""
    seen: set[str] = set()
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        pending.extend(".".join(parts[:k]) for k in range(1, len(parts)))
        pending.extend(module_imports(name))
    files = {module_file(m).relative_to(REPO).as_posix() for m in seen}
    return {f for f in files if not f.endswith("__init__.py")}


def test_every_stage_lists_the_code_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == ALL_STAGES
    for name, modules in stage_entry_modules().items():
        deps = [d for d in stages[name]["deps"] if isinstance(d, str) and d.startswith("bacl")]
        missing = [f for f in sorted(imported_files(modules))
                   if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
        assert not missing, f"stage {name}: deps miss {missing}"
        if (REPO / "notebooks" / f"{name}.ipynb").exists():
            assert f"notebooks/{name}.ipynb" in stages[name]["deps"]


def test_package_init_files_hold_no_code():
    for init in (REPO / "bacl").rglob("__init__.py"):
        text = init.read_text()
        assert not re.search(r"^\s*(def|class) ", text, flags=re.M), init

"""A copy of the repository in a temporary folder, with its own git and DVC, for pipeline tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def project_files() -> list[str]:
    """The files a clone would have: tracked plus new ones git does not ignore."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                             capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the pipeline tests copy the repository's files with git")
    return [f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()]


class Project:
    """The copy at ``root``; commands run there with the test's environment."""

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

    def bacl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "bacl"), *args, check=check)

    def mtime(self, path: str) -> int:
        return (self.root / path).stat().st_mtime_ns

    def stale_stages(self) -> set[str]:
        return set(json.loads(self.dvc("status", "--json").stdout))


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w@-]+)'", output))


def make_project(base: Path) -> Project:
    """Copy the repository (without the real run's results) to ``base/repo`` and init git and DVC."""
    root = base / "repo"
    for name in project_files():
        if name == "dvc.lock" or name.startswith(("metrics/", "reports/")):
            continue  # results of the real run; this one starts from nothing
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(root),
           "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test",
           "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@example.com"}
    env.pop("DVC_ROOT", None)
    project = Project(root, env)
    project.run("git", "init", "-q")
    if not (root / ".dvc").is_dir():
        project.dvc("init", "-q")
    project.dvc("config", "--local", "core.site_cache_dir", str(base / "dvc-site-cache"))
    return project


def commit(project: Project, message: str) -> None:
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", message)

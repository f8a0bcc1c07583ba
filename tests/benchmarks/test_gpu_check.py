"""The GPU check's CPU smoke mode: the script runs end to end and prints its table."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_prints_one_table():
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(["bash", str(SCRIPT), "--smoke", "--threads", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "gpu_check --smoke on CPU" in out and "graphs compiled by dynamo: 0" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    checks = [r.split("|")[1].strip() for r in rows]
    assert checks == [
        "train: ours, reference settings (= baseline stage step)",
        "train: ours, reference settings",
        "train: torchvision stock Faster R-CNN",
        "train: torchvision stock Faster R-CNN",
        "stage 2: FCBL + FHM, frozen but cls/bbox/RPN",
        "evaluate: ours, test size 64, batch 1",
    ]
    finite = [r.split("|")[7].strip() for r in rows]
    assert finite == ["yes"] * 5 + ["-"]
    assert "of stock" in rows[0] and "of baseline step time" in rows[4] and "detections/image" in rows[5]


def test_table_marks_skipped_rows():
    gpu_check = load_module()
    done = gpu_check.Row("train", "fp32", step_s=[0.2, 0.1, 0.3], images_per_step=2, finite=True, ratio=0.5,
                         ratio_of="of stock")
    skipped = gpu_check.Row("evaluate", "fp32", skipped=True, note="skipped: past the 1 s budget")
    table = gpu_check.format_table([done, skipped]).splitlines()
    assert len(table) == 4 and set(table[1]) <= {"|", "-"}
    cells = [c.strip() for c in table[2].split("|")[1:-1]]
    assert cells[:7] == ["train", "fp32", "200.0", "10.00", "0.50x of stock", "1.50", "yes"]
    assert "skipped: past the 1 s budget" in table[3]

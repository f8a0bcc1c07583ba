import hashlib
import json

from bacl.cli import main
from bacl.data.lvis_dataset import LVISDetection
from bacl.data.summary import write_data_summary
from bacl.params import load_params


def test_summary_counts_and_hashes(tiny_lvis, tmp_path):
    data = load_params(None, [f"data.root={tiny_lvis['root']}"]).data
    splits = {s: LVISDetection(annotation_file=getattr(data, f"{s}_annotations"), image_root=data.image_root)
              for s in ("train", "val")}
    path = write_data_summary(data, splits)
    summary = json.loads(path.read_text())
    assert path == tiny_lvis["root"] / "summary.json"
    train = summary["splits"]["train"]
    assert train["images"] == 12 and train["classes"] == 3 and (train["rare"], train["common"], train["frequent"]) == (1, 1, 1)
    assert train["annotations_sha256"] == hashlib.sha256(tiny_lvis["train"].read_bytes()).hexdigest()


def test_bacl_data_checks_lvis_files_in_place(tiny_lvis, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["data", "--set", "data.dataset=lvis_v1", "--set", "data.root=checked",
            "--set", f"data.lvis.train_annotations={tiny_lvis['train']}",
            "--set", f"data.lvis.val_annotations={tiny_lvis['val']}",
            "--set", f"data.lvis.image_root={tiny_lvis['image_root']}"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "checked" / "summary.json").read_text())
    assert summary["dataset"] == "lvis_v1" and summary["splits"]["val"]["images"] == 4
    assert sorted(p.name for p in (tmp_path / "checked").iterdir()) == ["summary.json"]

"""``bacl data`` and ``bacl download`` at the level of the parameters."""

import json

import pytest

from bacl.data.download_step import download_data
from bacl.data.prepare import prepare_data
from bacl.params import ParamError, load_params


def test_a_benchmark_the_generator_cannot_realise_is_a_parameter_error(tmp_path):
    data = load_params(None, [f"data.root={tmp_path}", "data.synthetic.num_train_images=60"]).data
    with pytest.raises(ParamError, match=r"^data\.synthetic\.num_train_images: .*need >= 1004"):
        prepare_data(data)
    assert not (tmp_path / "annotations").exists()


def test_lvis_files_in_place_are_checked_and_summarised(tiny_lvis, tmp_path):
    data = load_params(None, ["data.dataset=lvis_v1", f"data.root={tmp_path / 'checked'}",
                              f"data.lvis.train_annotations={tiny_lvis['train']}",
                              f"data.lvis.val_annotations={tiny_lvis['val']}",
                              f"data.lvis.image_root={tiny_lvis['image_root']}",
                              f"data.lvis.download.dir={tmp_path / 'downloads'}"]).data
    record = json.loads(download_data(data, progress=False).read_text())
    assert record["dataset"] == "lvis_v1" and record["downloaded"].startswith("nothing")
    summary = json.loads(prepare_data(data).read_text())
    assert summary["splits"]["train"]["images"] == 12 and summary["splits"]["val"]["classes"] == 3


def test_the_synthetic_benchmark_needs_no_download(tmp_path):
    data = load_params(None, [f"data.lvis.download.dir={tmp_path}"]).data
    record = download_data(data, progress=False)
    assert record == tmp_path / "synthetic.json" and "nothing" in json.loads(record.read_text())["downloaded"]

"""``data:``: which dataset, where it lives, and the synthetic benchmark's size."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field

from .section import Bool, Float, Int, Section, Str

DATASETS = ("synthetic", "lvis_v0.5", "lvis_v1")


class SyntheticParams(Section):
    """The embedded LVIS-style long-tailed benchmark (``bacl data``)."""

    seed: Int = Field(0, ge=0, description="generator seed: same seed, same benchmark (byte for byte)")
    num_train_images: Int = Field(1200, ge=1, description="long-tailed train split: >= 15 rare, 15 common, "
                                                          "10 frequent classes")
    num_val_images: Int = Field(300, ge=1, description="val split: >= 10 instances of every class, so APr "
                                                       "is measurable")
    image_size: Int = Field(160, ge=32, description="square images, pixels")


class DownloadParams(Section):
    """``bacl download``: fetching the LVIS annotations and COCO 2017 images (docs/lvis_data.md)."""

    dir: Str = Field("data/downloads", description="archives (kept for a resumed or repeated run) and the step's "
                                                   "record <dir>/<dataset>.json")
    mirror: Optional[Str] = Field(None, description="null = the official addresses; or a base URL serving the archives "
                                                    "under their official file names")
    link_coco: Optional[Str] = Field(None, description="an existing folder with train2017/ and val2017/, linked "
                                                       "instead of downloading the images")
    keep_archives: Bool = Field(True, description="false deletes each archive once it is unpacked")
    timeout_s: Float = Field(60.0, gt=0, description="seconds a connection or read may wait for data")
    retries: Int = Field(5, ge=0, description="failed attempts in a row before giving up on a file")


class LVISPaths(Section):
    """Where real LVIS annotations and COCO 2017 images live."""

    train_annotations: Str = Field("data/lvis/lvis_v1_train.json", description="LVIS train json")
    val_annotations: Str = Field("data/lvis/lvis_v1_val.json", description="LVIS val json (evaluation)")
    image_root: Str = Field("data/coco", description="holds train2017/ and val2017/")
    download: DownloadParams = Field(default_factory=DownloadParams, description="bacl download")


class DataParams(Section):
    dataset: Literal["synthetic", "lvis_v0.5", "lvis_v1"] = Field(
        "synthetic", description="synthetic | lvis_v0.5 | lvis_v1")
    root: Str = Field("data/synthetic", description="synthetic: where the benchmark is written and read; any "
                                                    "dataset: where bacl data writes summary.json")
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams, description="used when dataset is synthetic")
    lvis: LVISPaths = Field(default_factory=LVISPaths, description="used when dataset is lvis_v0.5 or lvis_v1")

    @property
    def train_annotations(self) -> Path:
        if self.dataset == "synthetic":
            return Path(self.root) / "annotations" / "lvis_v1_train.json"
        return Path(self.lvis.train_annotations)

    @property
    def val_annotations(self) -> Path:
        if self.dataset == "synthetic":
            return Path(self.root) / "annotations" / "lvis_v1_val.json"
        return Path(self.lvis.val_annotations)

    @property
    def image_root(self) -> Path:
        if self.dataset == "synthetic":
            return Path(self.root) / "images"
        return Path(self.lvis.image_root)

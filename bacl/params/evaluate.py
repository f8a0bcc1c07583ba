"""``evaluate:``: the test-time settings and the evaluation protocol.

Everything here is read at evaluation only, so changing it re-runs evaluation and the
notebooks, never a training stage.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .section import Float, Int, Section, Str

_PROTOCOL = re.compile(r"^(lvis|fixed|pooled)(@[1-9][0-9]*)?$")


def parse_protocol(name: str, *, detections_per_img: int, max_dets_per_class: int) -> tuple[str, int]:
    """``"lvis"`` -> ``("lvis", detections_per_img)``, ``"fixed@150"`` -> ``("fixed", 150)``:
    the protocol and its budget (per image for lvis, per class for fixed and pooled)."""
    kind, _, budget = name.partition("@")
    if budget:
        return kind, int(budget)
    return kind, detections_per_img if kind == "lvis" else max_dets_per_class


class EvaluateParams(Section):
    detections_per_img: Int = Field(
        15, ge=1, description="detections kept per image; LVIS's protocol keeps 300 for 1,203 classes, "
                              "15 is that budget per class for 60")
    max_dets_per_class: Int = Field(
        150, ge=1, description="fixed and pooled AP: detections per class over the val set; LVIS: 10000 for 20k "
                               "images, half a detection per class and image, so 150 for 300 images")
    protocols: list[Str] = Field(
        ["lvis", "lvis@300", "fixed", "pooled"], min_length=1,
        description="each computed from one inference: lvis (per-image cap detections_per_img), fixed (Fixed AP), "
                    "pooled (pooled AP), @N for another budget; the first is the headline (docs/evaluation_protocols.md)")
    score_thresh: Float = Field(1e-4, ge=0, lt=1, description="LVIS protocol: keep low-scoring detections "
                                                             "(rare classes score low)")
    nms_thresh: Float = Field(0.5, gt=0, le=1, description="per-class NMS IoU")
    min_size: Int = Field(160, ge=1, description="shorter side at test time (LVIS: 800)")
    max_size: Int = Field(1333, ge=1, description="longer side cap at test time")
    batch_size: Int = Field(8, ge=1, description="images per step")
    workers: Int = Field(2, ge=0, description="data-loading processes")

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _PROTOCOL.match(name):
                raise ValueError(f"unknown protocol {name!r}: lvis, fixed or pooled, with an optional @budget")
        if len(set(names)) != len(names):
            raise ValueError(f"lists a protocol twice: {names}")
        return names

    def budgets(self) -> list[tuple[str, str, int]]:
        """``(name, protocol, budget)`` of each of :attr:`protocols`, in order."""
        return [(name, *parse_protocol(name, detections_per_img=self.detections_per_img,
                                       max_dets_per_class=self.max_dets_per_class)) for name in self.protocols]

    @model_validator(mode="after")
    def _sizes(self):
        if self.max_size < self.min_size:
            raise ValueError(f"max_size: must be >= min_size ({self.min_size}), got {self.max_size}")
        return self

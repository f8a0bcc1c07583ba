"""``evaluate:``: the test-time settings and the evaluation protocol.

Everything here is read at evaluation only, so changing it re-runs evaluation and the
notebooks, never a training stage.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .section import Float, Int, Section


class EvaluateParams(Section):
    detections_per_img: Int = Field(
        15, ge=1, description="detections kept per image; LVIS's protocol keeps 300 for 1,203 classes, "
                              "15 is that budget per class for 60")
    score_thresh: Float = Field(1e-4, ge=0, lt=1, description="LVIS protocol: keep low-scoring detections "
                                                             "(rare classes score low)")
    nms_thresh: Float = Field(0.5, gt=0, le=1, description="per-class NMS IoU")
    min_size: Int = Field(160, ge=1, description="shorter side at test time (LVIS: 800)")
    max_size: Int = Field(1333, ge=1, description="longer side cap at test time")
    batch_size: Int = Field(8, ge=1, description="images per step")
    workers: Int = Field(2, ge=0, description="data-loading processes")

    @model_validator(mode="after")
    def _sizes(self):
        if self.max_size < self.min_size:
            raise ValueError(f"max_size: must be >= min_size ({self.min_size}), got {self.max_size}")
        return self

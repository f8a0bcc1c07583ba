"""Multi-scale RoIAlign with a choice of pixel model: ``aligned=True`` is mmcv's default.

torchvision's :class:`~torchvision.ops.MultiScaleRoIAlign` always calls ``roi_align`` with
``aligned=False``: a box edge at image coordinate ``x`` samples the feature map as if
cell ``i`` were centred on ``i * stride`` rather than ``(i + 0.5) * stride``, a shift of
half a cell. mmcv's ``RoIAlign`` (mmcv 1.2.x, ``mmcv/ops/roi_align.py``), which the
reference uses through mmdetection's ``SingleRoIExtractor``, defaults to
``aligned=True``: box coordinates are scaled to the level and shifted by -0.5 before
bilinear sampling, and a RoI is not stretched to at least one cell. torchvision's
``roi_align(..., aligned=True)`` computes the same thing, so only the pooler around it
is needed here.

Level assignment is torchvision's :class:`~torchvision.ops.poolers.LevelMapper`:
``level = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)``, clamped
to the levels present. With ``canonical_scale=224, canonical_level=4`` and levels P2-P5
that is ``floor(log2(sqrt(area) / 56) + 1e-6)`` counted from P2, which is mmdetection's
``floor(log2(sqrt(area) / finest_scale + 1e-6))`` with ``finest_scale=56``
(``mmdet/models/roi_heads/roi_extractors/single_level_roi_extractor.py``) except for
where the 1e-6 sits: for a box whose side lies within about one part in a million
below a power-of-two multiple of 56 px the two rules can pick adjacent levels.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper


def level_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """The power of two nearest to ``feature_height / image_height`` (e.g. 0.25 for P2).

    FPN levels halve the resolution, so the ratio of a feature map's height to the
    (unpadded) image's is ``2**-k`` up to the padding; rounding in log space recovers ``k``.
    """
    ratio = float(feature_size[0]) / float(image_size[0])
    return 2.0 ** round(math.log2(ratio))


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """:class:`~torchvision.ops.MultiScaleRoIAlign` with a switchable ``aligned`` flag.

    Same constructor and call as torchvision's, plus ``aligned``. ``aligned=False``
    gives torchvision's result; ``aligned=True`` gives mmcv's ``RoIAlign`` (its default)
    with the same sampling ratio (0 = adaptive, ``ceil(roi_size / output_size)`` samples
    per bin and axis).

    Args:
        featmap_names: names of the feature maps to pool from, finest first.
        output_size: pooled size, e.g. 7.
        sampling_ratio: samples per bin and axis; 0 = adaptive.
        aligned: shift box coordinates by -0.5 cell before sampling (mmcv's default).
        canonical_scale, canonical_level: the level rule (see the module docstring).

    Call: ``pool(features, boxes, image_shapes)`` with ``features`` a dict of
    ``(B, K, H_l, W_l)`` maps, ``boxes`` a list of ``(N_b, 4)`` xyxy boxes per image in
    input-image pixels, ``image_shapes`` the unpadded ``(height, width)`` of each image;
    returns ``(sum N_b, K, output_size, output_size)`` in the order of the boxes.
    """

    def __init__(
        self,
        *,
        featmap_names: list[str],
        output_size: Union[int, tuple[int, int]],
        sampling_ratio: int,
        aligned: bool = True,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        if not featmap_names:
            raise ValueError("AlignedMultiScaleRoIAlign: featmap_names must not be empty")
        if int(sampling_ratio) < 0:
            raise ValueError(f"AlignedMultiScaleRoIAlign: sampling_ratio must be >= 0, got {sampling_ratio}")
        if int(canonical_scale) < 1:
            raise ValueError(f"AlignedMultiScaleRoIAlign: canonical_scale must be >= 1, got {canonical_scale}")
        super().__init__(featmap_names, output_size, sampling_ratio,
                         canonical_scale=canonical_scale, canonical_level=canonical_level)
        self.aligned = bool(aligned)

    def level_mapper(self, features: list[Tensor], image_shapes: list[tuple[int, int]]) -> tuple[list[float], LevelMapper]:
        """Per-level spatial scales and torchvision's level mapper for these features."""
        if not image_shapes:
            raise ValueError("AlignedMultiScaleRoIAlign: image_shapes must not be empty")
        largest = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        scales = [level_scale(f.shape[-2:], largest) for f in features]
        finest, coarsest = -int(round(math.log2(scales[0]))), -int(round(math.log2(scales[-1])))
        mapper = LevelMapper(finest, coarsest, canonical_scale=self.canonical_scale,
                             canonical_level=self.canonical_level)
        return scales, mapper

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        missing = [name for name in self.featmap_names if name not in x]
        if missing:
            raise KeyError(f"AlignedMultiScaleRoIAlign: feature maps {missing} not among {list(x)}")
        features = [x[name] for name in self.featmap_names]
        scales, mapper = self.level_mapper(features, image_shapes)
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
        first = features[0]
        result = first.new_zeros((rois.shape[0], first.shape[1], *self.output_size))
        if rois.shape[0] == 0:
            return result
        levels = mapper(boxes) if len(features) > 1 else torch.zeros(rois.shape[0], dtype=torch.int64,
                                                                       device=rois.device)
        for level, (feature, scale) in enumerate(zip(features, scales)):
            index = torch.where(levels == level)[0]
            if index.numel() == 0:
                continue
            pooled = roi_align(feature, rois[index], output_size=self.output_size, spatial_scale=scale,
                               sampling_ratio=self.sampling_ratio, aligned=self.aligned)
            # Under autocast levels may come out in different dtypes; the result keeps the first's.
            result[index] = pooled.to(result.dtype)
        return result

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})")

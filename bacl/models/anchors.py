"""RPN anchors placed as mmdetection 2.x places them.

torchvision's :class:`~torchvision.models.detection.anchor_utils.AnchorGenerator` and
mmdetection 2.x's ``AnchorGenerator`` (``mmdet/core/anchor/anchor_generator.py``, with
the reference's ``scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]``)
agree on most things: base anchors centred on 0 (mmdetection's ``center_offset=0``),
``h = size * sqrt(ratio)``, ``w = size / sqrt(ratio)``, ratio-major order within a cell
(with one scale per level), cells in row-major order (y outer, x inner), anchors of one
cell consecutive, i.e. the order in which both frameworks flatten the RPN's
``(A, H, W)`` outputs. They differ in two places, both fixed here:

- torchvision rounds base anchors to whole pixels (``[-22.63, -11.31, 22.63, 11.31]``
  becomes ``[-23, -11, 23, 11]`` for size 32 at ratio 0.5); mmdetection keeps them exact;
- torchvision infers a level's stride as ``padded_image_size // feature_size``. The
  stride-64 level (P6, a stride-2 max-pool of P5) of an image padded to 800 px has
  ``ceil(800 / 64) = 13`` rows, so torchvision spaces its anchors 800 // 13 = 61 px apart;
  mmdetection always uses the level's stride, 64. With the LVIS test size of 800 this
  moves P6's bottom rows of anchors by up to 36 px.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList


class FixedStrideAnchorGenerator(AnchorGenerator):
    """mmdetection 2.x's anchors with torchvision's interface.

    Args:
        sizes: anchor sizes per level, e.g. ``((32,), (64,), (128,), (256,), (512,))``
            (mmdetection: ``stride * scale`` with ``scales=[8]``).
        aspect_ratios: height / width ratios per level, e.g. ``((0.5, 1.0, 2.0),) * 5``.
        strides: the stride of each level in input pixels, e.g. ``(4, 8, 16, 32, 64)``.

    ``forward(image_list, feature_maps)`` returns, per image, ``(sum_l H_l * W_l * A, 4)``
    xyxy anchors: level by level, cell by cell in row-major order, ``A`` anchors per cell
    in the order of ``aspect_ratios`` (ratio-major when a level has several sizes).
    """

    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        strides: Sequence[int],
    ) -> None:
        if not (len(sizes) == len(aspect_ratios) == len(strides)) or not sizes:
            raise ValueError(
                f"FixedStrideAnchorGenerator: one entry per level in sizes ({len(sizes)}), "
                f"aspect_ratios ({len(aspect_ratios)}) and strides ({len(strides)})"
            )
        if any(int(s) < 1 for s in strides):
            raise ValueError(f"FixedStrideAnchorGenerator: strides must be >= 1, got {list(strides)}")
        if any(float(v) <= 0 for level in (*sizes, *aspect_ratios) for v in level):
            raise ValueError("FixedStrideAnchorGenerator: sizes and aspect ratios must be > 0")
        super().__init__(tuple(tuple(s) for s in sizes), tuple(tuple(r) for r in aspect_ratios))
        self.strides = tuple(int(s) for s in strides)

    def generate_anchors(
        self,
        scales: list[int],
        aspect_ratios: list[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device = torch.device("cpu"),
    ) -> Tensor:
        """``(len(aspect_ratios) * len(scales), 4)`` base anchors centred on 0, not rounded."""
        scales_t = torch.as_tensor(scales, dtype=dtype, device=device)
        ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        heights = (torch.sqrt(ratios)[:, None] * scales_t[None, :]).reshape(-1)
        widths = ((1 / torch.sqrt(ratios))[:, None] * scales_t[None, :]).reshape(-1)
        return torch.stack([-widths, -heights, widths, heights], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(
                f"FixedStrideAnchorGenerator: {len(feature_maps)} feature maps for {len(self.strides)} strides"
            )
        first = feature_maps[0]
        self.set_cell_anchors(first.dtype, first.device)
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        strides = [[torch.tensor(s, dtype=torch.int64, device=first.device)] * 2 for s in self.strides]
        per_level = self.grid_anchors(grid_sizes, strides)
        return [torch.cat(per_level) for _ in image_list.image_sizes]

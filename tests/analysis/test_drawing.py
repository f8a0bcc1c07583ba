"""``draw_boxes``: the box is whole, its label sits on a dark strip above it when there is room."""

from __future__ import annotations

from PIL import Image

from bacl.analysis.drawing import PALETTE, draw_boxes


def test_label_strip_above_box_and_box_outline_whole():
    image = Image.new("RGB", (80, 60), "white")
    out = draw_boxes(image, [[10, 30, 50, 55]], ["cat"], [0.5])
    assert image.getpixel((11, 27)) == (255, 255, 255)  # the input is not drawn on
    assert out.getpixel((11, 27)) != (255, 255, 255)  # the strip, just above the box
    colours = {tuple(int(PALETTE[k][i:i + 2], 16) for i in (1, 3, 5)) for k in range(len(PALETTE))}
    assert out.getpixel((10, 30)) in colours and out.getpixel((50, 55)) in colours  # both corners
    assert out.getpixel((30, 45)) == (255, 255, 255)  # inside untouched


def test_label_inside_when_box_touches_top():
    image = Image.new("RGB", (80, 60), "white")
    out = draw_boxes(image, [[10, 0, 70, 50]], ["dog"])
    assert out.getpixel((12, 5)) != (255, 255, 255)  # strip inside the top edge
    assert out.getpixel((40, 40)) == (255, 255, 255)

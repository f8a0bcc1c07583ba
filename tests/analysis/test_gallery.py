import pytest
from PIL import Image

from bacl.analysis import gallery

ANNS = {"categories": [{"id": 1, "frequency": "f"}, {"id": 2, "frequency": "r"}],
        "annotations": [{"image_id": 5, "category_id": 2}, {"image_id": 7, "category_id": 2},
                        {"image_id": 7, "category_id": 2}, {"image_id": 9, "category_id": 1}]}


def test_images_with_frequency():
    assert gallery.images_with_frequency(ANNS, "r") == [7, 5]
    assert gallery.images_with_frequency(ANNS, "r", limit=1) == [7]
    assert gallery.images_with_frequency(ANNS, "c") == []


def test_image_detections():
    dets = [{"image_id": 7, "score": s, "category_id": 1, "bbox": [0, 0, 1, 1]} for s in (0.2, 0.9, 0.5)]
    dets.append({"image_id": 8, "score": 1.0, "category_id": 1, "bbox": [0, 0, 1, 1]})
    assert [d["score"] for d in gallery.image_detections(dets, 7, min_score=0.3)] == [0.9, 0.5]
    assert len(gallery.image_detections(dets, 7, min_score=0.0, max_boxes=1)) == 1


def test_side_by_side_and_stack():
    image = Image.new("RGB", (40, 30), "black")
    dets = [{"bbox": [5, 5, 10, 10], "category_id": 1, "score": 0.8}]
    row = gallery.side_by_side(image, [("a", dets), ("b", [])], {1: "thing"}, gap=4)
    assert row.size == (84, 30 + gallery.TITLE_HEIGHT)
    assert row.getpixel((5, 5 + gallery.TITLE_HEIGHT)) != (0, 0, 0)  # the box's corner is drawn
    assert row.getpixel((44 + 5, 5 + gallery.TITLE_HEIGHT)) == (0, 0, 0)  # nothing on the right panel
    sheet = gallery.stack_rows([row, row], gap=2)
    assert sheet.size == (84, 2 * row.height + 2)
    with pytest.raises(ValueError):
        gallery.side_by_side(image, [], {})
    with pytest.raises(ValueError):
        gallery.stack_rows([])


def test_scale_enlarges_image_and_boxes():
    image = Image.new("RGB", (20, 10), "black")
    dets = [{"bbox": [2, 2, 4, 4], "category_id": 1, "score": 0.8}]
    drawn = gallery.draw_detections(image, dets, {1: "thing"}, scale=3)
    assert drawn.size == (60, 30)
    assert drawn.getpixel((6, 6)) != (0, 0, 0) and drawn.getpixel((2, 2)) == (0, 0, 0)  # corner at 3 x (2, 2)
    with pytest.raises(ValueError, match="scale"):
        gallery.draw_detections(image, dets, {}, scale=0)

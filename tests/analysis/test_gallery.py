import random

import pytest
from PIL import Image

from bacl.analysis import gallery

ANNS = {"categories": [{"id": 1, "frequency": "f"}, {"id": 2, "frequency": "r"}, {"id": 3, "frequency": "r"}],
        "annotations": [{"image_id": 5, "category_id": 2, "bbox": [0, 0, 4, 4]},
                        {"image_id": 7, "category_id": 2, "bbox": [1, 1, 4, 4]},
                        {"image_id": 7, "category_id": 2, "bbox": [9, 9, 4, 4]},
                        {"image_id": 7, "category_id": 3, "bbox": [2, 2, 4, 4]},
                        {"image_id": 9, "category_id": 1, "bbox": [3, 3, 4, 4]}]}


def test_images_for_classes_prefers_most_boxes_then_an_unused_image():
    assert gallery.images_for_classes(ANNS, [2]) == {2: 7}
    assert gallery.images_for_classes(ANNS, [3, 2]) == {3: 7, 2: 5}  # 7 taken: the next best image for 2
    assert gallery.images_for_classes(ANNS, [2, 3]) == {2: 7, 3: 7}  # 3 has no other image
    assert gallery.images_for_classes(ANNS, [4, 2, 2]) == {2: 7}  # no ground truth: left out


def test_by_image():
    grouped = gallery.by_image(ANNS["annotations"], [7, 8])
    assert sorted(grouped) == [7, 8] and len(grouped[7]) == 3 and grouped[8] == []


def test_class_gallery_rows_and_titles():
    picks = [{"category_id": 3, "name": "tiny", "image_count": 2, "AP_baseline": 0.0, "AP_method": 0.25,
              "delta": 0.25, "pick": "gained"},
             {"category_id": 4, "name": "absent", "image_count": 1, "AP_baseline": 0.1, "AP_method": 0.0,
              "delta": -0.1, "pick": "lost"}]
    dets = [{"image_id": 7, "category_id": 3, "bbox": [2, 2, 4, 4], "score": s} for s in (0.2, 0.9, 0.5)]
    rows = gallery.class_gallery(picks, ANNS, {"baseline": dets[:1], "BACL": dets}, min_score=0.3)
    assert len(rows) == 1 and rows[0]["image_id"] == 7 and rows[0]["category_id"] == 3  # class 4: no image
    (t0, truth), (t1, base), (t2, new) = rows[0]["panels"]
    assert t0 == "tiny (2 train imgs)" and truth == [{"bbox": [2, 2, 4, 4], "category_id": 3}]
    assert t1 == "baseline AP 0.0" and base == []
    assert t2 == "BACL AP 25.0" and [d["score"] for d in new] == [0.9, 0.5]
    with pytest.raises(ValueError, match="two runs"):
        gallery.class_gallery(picks, ANNS, {"baseline": dets})


def test_class_gallery_at_lvis_scale_is_bounded():
    rng = random.Random(0)
    cats = [{"id": k, "frequency": "r" if k < 337 else "f"} for k in range(1, 1204)]
    anns = [{"image_id": rng.randrange(500), "category_id": rng.randrange(1, 1204), "bbox": [0, 0, 5, 5]}
            for _ in range(20000)]
    dets = [{"image_id": rng.randrange(500), "category_id": rng.randrange(1, 1204), "bbox": [0, 0, 5, 5],
             "score": rng.random()} for _ in range(50000)]
    present = sorted({a["category_id"] for a in anns if a["category_id"] < 337})
    picks = [{"category_id": c, "name": f"c{c}", "image_count": 1, "AP_baseline": 0.0, "AP_method": 0.1}
             for c in present[:4]]
    rows = gallery.class_gallery(picks, {"categories": cats, "annotations": anns}, {"a": dets, "b": dets})
    assert len(rows) == 4 and len({r["image_id"] for r in rows}) == 4
    assert all(len(dets_) <= 10 for r in rows for _, dets_ in r["panels"][1:])


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
    titled = gallery.stack_rows([row, row], gap=2, title="two rows")
    assert titled.size == (84, gallery.TITLE_HEIGHT + 2 + 2 * row.height + 2)
    assert any(titled.getpixel((x, y)) != (255, 255, 255) for x in range(40) for y in range(gallery.TITLE_HEIGHT))
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

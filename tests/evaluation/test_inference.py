"""Model outputs -> LVIS results records."""

import torch

from bacl.evaluation.inference import detections_to_lvis


def test_records_keep_full_precision_scores_and_map_labels_to_category_ids():
    outputs = [{"boxes": torch.tensor([[1.0, 2.0, 11.5, 7.25], [0.0, 0.0, 3.0, 3.0]]),
                "labels": torch.tensor([1, 2]), "scores": torch.tensor([1.2345678e-4, 1.2345679e-4])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}]
    records = detections_to_lvis(outputs, [7, 8], {1: 10, 2: 30})
    assert [r["category_id"] for r in records] == [10, 30] and {r["image_id"] for r in records} == {7}
    assert records[0]["bbox"] == [1.0, 2.0, 10.5, 5.25]  # xywh
    # Distinct float32 scores stay distinct (rounding to 5 decimals made them tie).
    assert records[0]["score"] == float(torch.tensor(1.2345678e-4)) != records[1]["score"]

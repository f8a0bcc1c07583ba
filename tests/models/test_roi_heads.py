import pytest
import torch
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

from bacl.losses import LOSSES, build_loss
from bacl.models.box_predictor import BoxPredictor
from bacl.models.roi_heads import BACLRoIHeads, to_loss_labels

C = 4
CHANNELS = 8
EMBED = 32
SIZE = 64


def make_heads(loss_name="bce", **kwargs):
    torch.manual_seed(0)
    return BACLRoIHeads(
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(CHANNELS * 49, EMBED),
        box_predictor=BoxPredictor(in_channels=EMBED, num_classes=C, use_sigmoid=loss_name != "softmax_ce"),
        loss=build_loss(loss_name, num_classes=C),
        batch_size_per_image=32,
        **kwargs,
    )


def make_inputs(with_empty_image=True):
    g = torch.Generator().manual_seed(1)
    features = {"0": torch.randn(2, CHANNELS, SIZE // 4, SIZE // 4, generator=g)}
    xy = torch.rand(2, 30, 2, generator=g) * 40
    wh = torch.rand(2, 30, 2, generator=g) * 20 + 4
    proposals = [torch.cat([xy[i], xy[i] + wh[i]], dim=1) for i in range(2)]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0], [20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1, 3])}]
    if with_empty_image:
        targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    else:
        targets.append({"boxes": torch.tensor([[10.0, 30.0, 40.0, 60.0]]), "labels": torch.tensor([4])})
    return features, proposals, [(SIZE, SIZE)] * 2, targets


def train_step(heads, seed=0, **input_kwargs):
    features, proposals, shapes, targets = make_inputs(**input_kwargs)
    heads.train()
    torch.manual_seed(seed)  # RoI sampling is random
    _, losses = heads(features, proposals, shapes, targets)
    return losses


def test_label_conversion():
    labels = torch.tensor([0, 1, 2, 4, 0])
    assert to_loss_labels(labels, 4).tolist() == [4, 0, 1, 3, 4]


@pytest.mark.parametrize("loss_name", ["bce", "softmax_ce"])
def test_training_losses_and_backward(loss_name):
    heads = make_heads(loss_name)
    losses = train_step(heads, with_empty_image=False)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    assert heads.box_predictor.cls_score.weight.grad is not None
    assert heads.box_predictor.bbox_pred.weight.grad.abs().sum() > 0


def test_image_without_boxes_trains():
    heads = make_heads()
    features, proposals, shapes, _ = make_inputs()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    _, losses = heads.train()(features, proposals, shapes, empty)
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert heads.box_predictor.cls_score.weight.grad is not None


def test_box_regression_loss_matches_loop():
    heads = make_heads()
    torch.manual_seed(3)
    deltas = torch.randn(6, 4 * C)
    labels = torch.tensor([0, 2, 0, 4, 1, 0])
    targets = torch.randn(6, 4)
    expected = 0.0
    for i in range(6):
        if labels[i] > 0:
            k = int(labels[i]) - 1
            expected += (deltas[i, 4 * k : 4 * k + 4] - targets[i]).abs().sum().item()
    got = heads.box_regression_loss(deltas, labels, targets)
    assert got.item() == pytest.approx(expected / 6, rel=1e-6)


def test_rejects_labels_out_of_range():
    heads = make_heads()
    features, proposals, shapes, targets = make_inputs()
    targets[0]["labels"] = torch.tensor([1, C + 1])
    with pytest.raises(ValueError, match="1..4"):
        heads.train()(features, proposals, shapes, targets)


class DummyHallucinator(torch.nn.Module):
    def __init__(self, num=5):
        super().__init__()
        self.num = num
        self.calls = []

    def forward(self, *, roi_heads, features, proposals, targets, image_shapes):
        self.calls.append((roi_heads, len(proposals), len(targets), image_shapes))
        if self.num == 0:
            return None
        embeddings = torch.full((self.num, EMBED), 3.0)
        labels = torch.arange(self.num) % C
        return embeddings, labels


def test_hallucinated_rows_reach_classifier_only():
    heads = make_heads()
    base = train_step(heads)

    seen = {}
    heads.box_predictor.cls_score.register_forward_hook(lambda m, i, o: seen.setdefault("cls", []).append(o.shape[0]))
    heads.box_predictor.bbox_pred.register_forward_hook(lambda m, i, o: seen.setdefault("box", []).append(o.shape[0]))
    captured = {}

    def capture(logits, labels):
        captured["logits"], captured["labels"] = logits, labels

    heads.classification_loss.register_forward_pre_hook(lambda m, args: capture(*args))
    heads.hallucinator = DummyHallucinator(num=5)
    with_extra = train_step(heads)

    num_real = seen["box"][0]
    assert seen["cls"] == [num_real, 5]  # real RoIs, then the hallucinated batch
    assert seen["box"] == [num_real]  # box regression never sees hallucinated rows
    assert captured["logits"].shape == (num_real + 5, C + 1)
    assert captured["labels"][num_real:].tolist() == [0, 1, 2, 3, 0]
    assert with_extra["loss_cls"].item() != pytest.approx(base["loss_cls"].item())
    torch.testing.assert_close(with_extra["loss_box_reg"], base["loss_box_reg"])
    call = heads.hallucinator.calls[0]
    assert call[0] is heads and call[1] == 2 and call[2] == 2 and call[3] == [(SIZE, SIZE)] * 2


def test_hallucinator_returning_none_changes_nothing():
    heads = make_heads()
    base = train_step(heads)
    heads.hallucinator = DummyHallucinator(num=0)
    same = train_step(heads)
    torch.testing.assert_close(same["loss_cls"], base["loss_cls"])


def test_no_tensors_left_on_module_after_training():
    heads = make_heads()
    heads.hallucinator = DummyHallucinator()
    keys = set(heads.state_dict())
    train_step(heads)
    assert set(heads.state_dict()) == keys
    leaked = [name for name, value in vars(heads).items() if isinstance(value, torch.Tensor)]
    assert leaked == []


def reference_postprocess(heads, logits, deltas, proposals, image_shapes):
    """torchvision's order: decode every (RoI, class) box, clip, then filter."""
    scores = heads.classification_loss.scores(logits)
    boxes_all = heads.box_coder.decode(deltas, proposals)  # (N, C, 4)
    results = []
    start = 0
    for props, shape in zip(proposals, image_shapes):
        n = len(props)
        boxes = box_ops.clip_boxes_to_image(boxes_all[start : start + n], shape).reshape(-1, 4)
        s = scores[start : start + n].reshape(-1)
        labels = torch.arange(1, C + 1).repeat(n)
        start += n
        keep = s > heads.score_thresh
        boxes, s, labels = boxes[keep], s[keep], labels[keep]
        keep = box_ops.remove_small_boxes(boxes, 1e-2)
        boxes, s, labels = boxes[keep], s[keep], labels[keep]
        keep = box_ops.batched_nms(boxes, s, labels, heads.nms_thresh)[: heads.detections_per_img]
        results.append((boxes[keep], s[keep], labels[keep]))
    return results


@pytest.mark.parametrize("loss_name", ["bce", "softmax_ce"])
def test_postprocess_matches_torchvision_order(loss_name):
    heads = make_heads(loss_name, score_thresh=0.05, detections_per_img=20)
    _, proposals, shapes, _ = make_inputs()
    torch.manual_seed(5)
    logits = torch.randn(60, C + 1) * 2
    deltas = torch.randn(60, 4 * C) * 0.5
    boxes, scores, labels = heads.postprocess_detections(logits, deltas, proposals, shapes)
    for got_b, got_s, got_l, (ref_b, ref_s, ref_l) in zip(
        boxes, scores, labels, reference_postprocess(heads, logits, deltas, proposals, shapes)
    ):
        assert len(got_s) > 0
        torch.testing.assert_close(got_s, ref_s)
        torch.testing.assert_close(got_b, ref_b)
        assert got_l.tolist() == ref_l.tolist()


def test_eval_output_format_and_label_range():
    heads = make_heads(score_thresh=0.0, detections_per_img=25).eval()
    features, proposals, shapes, _ = make_inputs()
    with torch.no_grad():
        result, losses = heads(features, proposals, shapes)
    assert losses == {}
    assert len(result) == 2
    for r in result:
        assert set(r) == {"boxes", "scores", "labels"}
        assert r["boxes"].shape == (len(r["scores"]), 4) and 0 < len(r["scores"]) <= 25
        assert r["labels"].dtype == torch.int64
        assert r["labels"].min() >= 1 and r["labels"].max() <= C
        assert bool((r["scores"][:-1] >= r["scores"][1:]).all())
        assert r["boxes"].min() >= 0 and r["boxes"].max() <= SIZE


def test_eval_sigmoid_scores_formula():
    heads = make_heads(score_thresh=0.0).eval()
    proposals = [torch.tensor([[10.0, 10.0, 40.0, 40.0]])]
    logits = torch.tensor([[-3.0, 2.0, -1.0, 0.5, -0.7]])
    deltas = torch.zeros(1, 4 * C)
    _, scores, labels = heads.postprocess_detections(logits, deltas, proposals, [(SIZE, SIZE)])
    p = torch.sigmoid(logits[0])
    expected = {k + 1: (p[k] * (1 - p[C])).item() for k in range(C)}
    assert {int(l): s.item() for l, s in zip(labels[0], scores[0])} == pytest.approx(expected)


def test_eval_without_detections():
    heads = make_heads(score_thresh=1.0).eval()
    features, proposals, shapes, _ = make_inputs()
    with torch.no_grad():
        result, _ = heads(features, proposals, shapes)
    for r in result:
        assert r["boxes"].shape == (0, 4) and r["scores"].shape == (0,) and r["labels"].shape == (0,)


def test_predictor_loss_class_count_must_match():
    with pytest.raises(ValueError):
        BACLRoIHeads(
            box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
            box_head=TwoMLPHead(CHANNELS * 49, EMBED),
            box_predictor=BoxPredictor(in_channels=EMBED, num_classes=C),
            loss=build_loss("bce", num_classes=C + 1),
        )


# -- every registered loss, with the predictor it declares ------------------------------

STATISTICS = {"image_counts": torch.tensor([30, 4, 0, 12]), "instance_counts": torch.tensor([90, 6, 0, 1500]),
              "num_images": 40}


def make_loss_heads(loss_name, **kwargs):
    torch.manual_seed(0)
    loss = build_loss(loss_name, num_classes=C, statistics=STATISTICS)
    return BACLRoIHeads(
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(CHANNELS * 49, EMBED),
        box_predictor=BoxPredictor.for_loss(loss, in_channels=EMBED),
        loss=loss,
        batch_size_per_image=32,
        **kwargs,
    )


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_trains_with_hallucinated_rows(loss_name):
    heads = make_loss_heads(loss_name)
    captured = {}
    heads.classification_loss.register_forward_pre_hook(lambda m, args: captured.update(logits=args[0]))
    heads.hallucinator = DummyHallucinator(num=5)
    losses = train_step(heads, with_empty_image=False)
    assert "loss_box_reg" in losses and any(key.startswith("loss_cls") for key in losses)
    assert captured["logits"].shape[1] == heads.classification_loss.num_logits
    sum(losses.values()).backward()
    grad = heads.box_predictor.cls_score.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_postprocesses_with_its_scores(loss_name):
    heads = make_loss_heads(loss_name, score_thresh=0.01, detections_per_img=20)
    _, proposals, shapes, _ = make_inputs()
    torch.manual_seed(5)
    logits = torch.randn(60, heads.classification_loss.num_logits) * 2
    deltas = torch.randn(60, 4 * C) * 0.5
    boxes, scores, labels = heads.postprocess_detections(logits, deltas, proposals, shapes)
    for got_b, got_s, got_l, (ref_b, ref_s, ref_l) in zip(
        boxes, scores, labels, reference_postprocess(heads, logits, deltas, proposals, shapes)
    ):
        assert len(got_s) > 0 and got_l.min() >= 1 and got_l.max() <= C
        torch.testing.assert_close(got_s, ref_s)
        torch.testing.assert_close(got_b, ref_b)
        assert got_l.tolist() == ref_l.tolist()


def test_predictor_width_must_match_the_loss_layout():
    loss = build_loss("seesaw", num_classes=C)
    with pytest.raises(ValueError, match=f"reads {C + 2}"):
        BACLRoIHeads(
            box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
            box_head=TwoMLPHead(CHANNELS * 49, EMBED),
            box_predictor=BoxPredictor(in_channels=EMBED, num_classes=C),
            loss=loss,
        )

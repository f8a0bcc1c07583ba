import math

import pytest
import torch
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from bacl.losses import build_loss
from bacl.models.anchors import FixedStrideAnchorGenerator
from bacl.models.detector import build_detector
from bacl.models.rpn import BoxLossRegionProposalNetwork


def rpn(cls=BoxLossRegionProposalNetwork, **kwargs):
    generator = FixedStrideAnchorGenerator(sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),), strides=(4,))
    return cls(generator, RPNHead(8, 3), fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=16,
               positive_fraction=0.5, pre_nms_top_n={"training": 50, "testing": 50},
               post_nms_top_n={"training": 20, "testing": 20}, nms_thresh=0.7, **kwargs)


class FixedSampler:
    """Returns given positive / negative masks instead of drawing them."""

    def __init__(self, pos, neg):
        self.pos, self.neg = pos, neg

    def __call__(self, labels):
        return self.pos, self.neg


def loss_inputs(seed=0, per_image=(30, 20)):
    g = torch.Generator().manual_seed(seed)
    total = sum(per_image)
    objectness = torch.randn(total, 1, generator=g, dtype=torch.float64, requires_grad=True)
    deltas = torch.randn(total, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = [torch.randint(-1, 2, (n,), generator=g).double() for n in per_image]
    targets = [torch.randn(n, 4, generator=g, dtype=torch.float64) for n in per_image]
    pos = [(lab == 1) & (torch.rand(len(lab), generator=g) < 0.7) for lab in labels]
    neg = [(lab == 0) & (torch.rand(len(lab), generator=g) < 0.5) for lab in labels]
    return objectness, deltas, labels, targets, pos, neg


def reference_losses(objectness, deltas, labels, targets, pos, neg, *, box_loss):
    """One anchor at a time: mean BCE over sampled anchors; box loss summed over sampled
    positives and divided by the number of sampled anchors (mmdetection's avg_factor)."""
    labels, targets = torch.cat(labels).tolist(), torch.cat(targets).tolist()
    pos, neg = torch.cat(pos).tolist(), torch.cat(neg).tolist()
    z, d = objectness.detach().flatten().tolist(), deltas.detach().tolist()
    sampled = [i for i in range(len(z)) if pos[i] or neg[i]]
    bce = 0.0
    for i in sampled:
        p = 1 / (1 + math.exp(-z[i]))
        bce -= labels[i] * math.log(p) + (1 - labels[i]) * math.log(1 - p)
    box = 0.0
    for i in range(len(z)):
        if pos[i]:
            for k in range(4):
                diff = abs(d[i][k] - targets[i][k])
                if box_loss == "l1":
                    box += diff
                else:
                    beta = 1 / 9
                    box += 0.5 * diff * diff / beta if diff < beta else diff - 0.5 * beta
    return bce / len(sampled), box / len(sampled)


@pytest.mark.parametrize("box_loss", ["l1", "smooth_l1"])
def test_losses_match_anchor_by_anchor_reference(box_loss):
    objectness, deltas, labels, targets, pos, neg = loss_inputs()
    net = rpn(box_loss=box_loss)
    net.fg_bg_sampler = FixedSampler(pos, neg)
    obj_loss, box = net.compute_loss(objectness, deltas, labels, targets)
    ref_obj, ref_box = reference_losses(objectness, deltas, labels, targets, pos, neg, box_loss=box_loss)
    assert math.isclose(obj_loss.item(), ref_obj, rel_tol=1e-12)
    assert math.isclose(box.item(), ref_box, rel_tol=1e-12)
    (obj_loss + box).backward()
    assert deltas.grad.abs().sum() > 0


def test_smooth_l1_mode_is_torchvisions_loss():
    objectness, deltas, labels, targets, _, _ = loss_inputs(seed=3)
    ours, stock = rpn(box_loss="smooth_l1"), rpn(cls=RegionProposalNetwork)
    torch.manual_seed(5)
    expected = stock.compute_loss(objectness, deltas, labels, targets)
    torch.manual_seed(5)
    got = ours.compute_loss(objectness, deltas, labels, targets)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_no_positives_and_nothing_sampled():
    objectness, deltas, labels, targets, pos, neg = loss_inputs(seed=1)
    net = rpn(box_loss="l1")
    net.fg_bg_sampler = FixedSampler([torch.zeros_like(p) for p in pos], neg)
    obj_loss, box = net.compute_loss(objectness, deltas, labels, targets)
    assert box.item() == 0.0 and torch.isfinite(obj_loss)
    (obj_loss + box).backward()
    assert torch.equal(deltas.grad, torch.zeros_like(deltas))
    net.fg_bg_sampler = FixedSampler([torch.zeros_like(p) for p in pos], [torch.zeros_like(n) for n in neg])
    obj_loss, box = net.compute_loss(objectness, deltas, labels, targets)
    assert obj_loss.item() == 0.0 and box.item() == 0.0
    (obj_loss + box).backward()


def test_unknown_box_loss():
    with pytest.raises(ValueError, match="huber"):
        rpn(box_loss="huber")


def test_detector_wires_the_l1_rpn_with_the_stock_settings():
    torch.manual_seed(0)
    stock = build_detector(preset="synthetic_small", num_classes=3, loss=build_loss("bce", num_classes=3))
    torch.manual_seed(0)
    model = build_detector(preset="synthetic_small", num_classes=3, loss=build_loss("bce", num_classes=3),
                           rpn_box_loss="l1")
    assert type(stock.rpn) is RegionProposalNetwork
    assert isinstance(model.rpn, BoxLossRegionProposalNetwork) and model.rpn.box_loss == "l1"
    for name in ("_pre_nms_top_n", "_post_nms_top_n", "nms_thresh", "score_thresh", "min_size"):
        assert getattr(model.rpn, name) == getattr(stock.rpn, name), name
    assert (model.rpn.proposal_matcher.high_threshold, model.rpn.proposal_matcher.low_threshold) == (0.7, 0.3)
    assert model.rpn.proposal_matcher.allow_low_quality_matches
    assert model.rpn.fg_bg_sampler.batch_size_per_image == 256 and model.rpn.fg_bg_sampler.positive_fraction == 0.5
    assert model.rpn.box_coder.weights == (1.0, 1.0, 1.0, 1.0)
    for key, value in stock.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

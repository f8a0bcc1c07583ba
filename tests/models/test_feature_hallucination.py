"""FHM (docs/method.md section 3): statistics, class sampling, box jitter, checkpointing, the hook."""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from scipy import stats as sstats
from torch import nn

from bacl.models.feature_hallucination import FeatureHallucination


def reference_update(mean, var, seen, embeddings, labels, decay):
    """Class by class, as the reference's ``per_cls_feature_distribution_collect``."""
    for c in sorted(set(labels.tolist())):
        x = embeddings[labels == c].double()
        mu = x.mean(0)
        v = x.var(0, unbiased=True) if x.shape[0] > 1 else torch.zeros_like(mu)
        if seen[c]:
            mean[c] = decay * mu + (1 - decay) * mean[c]
            var[c] = decay * v + (1 - decay) * var[c]
        else:
            mean[c], var[c], seen[c] = mu, v, True


def test_update_matches_loop_reference():
    c, d = 7, 5
    fhm = FeatureHallucination(num_classes=c, feat_dim=d, decay=0.1)
    mean = torch.zeros(c, d, dtype=torch.float64)
    var = torch.zeros(c, d, dtype=torch.float64)
    seen = [False] * c
    gen = torch.Generator().manual_seed(1)
    batches = [
        torch.tensor([0, 0, 0, 2, 2, 5]),  # class 5 a singleton: variance 0
        torch.tensor([], dtype=torch.long),
        torch.tensor([5, 5, 5, 5, 1, 0, 0]),
        torch.tensor([3] * 16 + [0] * 16 + [2]),
    ]
    for labels in batches:
        emb = torch.rand(labels.numel(), d, generator=gen) * 4 + 1
        fhm.update(emb, labels)
        reference_update(mean, var, seen, emb, labels, 0.1)
        torch.testing.assert_close(fhm.mean, mean.float(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fhm.var, var.float(), rtol=1e-5, atol=1e-6)
        assert fhm.seen.tolist() == seen
    assert not fhm.seen[4] and not fhm.seen[6]


def seeded_fhm(c=6, d=3, seen=(0, 1, 3, 4), **kwargs):
    fhm = FeatureHallucination(num_classes=c, feat_dim=d, **kwargs)
    for k in seen:
        fhm.mean[k] = float(k)
        fhm.var[k] = 0.25
        fhm.seen[k] = True
    return fhm


def test_sampling_follows_one_minus_accuracy_on_seen_classes():
    draws = 4000
    fhm = seeded_fhm(num_sampled_classes=draws, num_samples_per_class=1, seed=3)
    acc = torch.tensor([0.1, 0.6, 0.0, 0.3, 0.95, 0.0], dtype=torch.float64)  # 2, 5 never seen
    emb, labels = fhm.sample(acc)
    assert emb.shape == (draws, 3) and labels.shape == (draws,) and labels.dtype == torch.long
    counts = torch.bincount(labels, minlength=6)
    assert counts[2] == 0 and counts[5] == 0
    seen = [0, 1, 3, 4]
    p = (1 - acc[seen]) / (1 - acc[seen]).sum()
    result = sstats.chisquare(counts[seen].double().numpy(), (p * draws).numpy())
    assert result.pvalue > 0.01


def test_samples_are_gaussian_around_the_class_statistics():
    fhm = seeded_fhm(seen=(2,), num_sampled_classes=1, num_samples_per_class=4000, d=4)
    emb, labels = fhm.sample(torch.zeros(6))
    assert (labels == 2).all()
    torch.testing.assert_close(emb.mean(0), torch.full((4,), 2.0), atol=0.05, rtol=0)
    torch.testing.assert_close(emb.std(0), torch.full((4,), 0.5), atol=0.03, rtol=0)


def test_sample_shapes_and_empty_cases():
    fhm = FeatureHallucination(num_classes=4, feat_dim=3)
    emb, labels = fhm.sample(torch.zeros(4))  # nothing seen yet
    assert emb.shape == (0, 3) and labels.shape == (0,) and labels.dtype == torch.long
    fhm = seeded_fhm(c=4, seen=(0, 2))
    emb, labels = fhm.sample(torch.tensor([1.0, 0.0, 1.0, 0.0]))  # every seen class perfect
    assert emb.shape == (0, 3) and labels.shape == (0,)
    emb, labels = fhm.sample(torch.tensor([1.0, 0.0, 0.5, 0.0]))
    assert emb.shape == (8 * 12, 3) and (labels == 2).all()
    with pytest.raises(ValueError, match="class_accuracy"):
        fhm.sample(torch.zeros(5))


def test_jitter_rule():
    fhm = FeatureHallucination(num_classes=2, feat_dim=2, seed=5)
    boxes = torch.tensor([[100.0, 120.0, 160.0, 150.0], [200.0, 50.0, 230.0, 170.0]])
    out = fhm.jitter_boxes(boxes, (400, 500))
    assert out.shape == (32, 4)
    out = out.view(2, 16, 4)
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, 1)
    rel = (out - boxes[:, None]) / size[:, None]  # offsets in units of w, h
    assert (rel.abs() <= 1 / 6 + 1e-6).all() and (rel.abs() > 0).all()
    patterns = [tuple(int(v) for v in row) for row in (rel[0] > 0).int()]
    assert patterns == list(itertools.product([0, 1], repeat=4))  # x1 slowest, y2 fastest
    torch.testing.assert_close(rel[0], rel[1])  # one draw per call, shared by the boxes
    again = fhm.jitter_boxes(boxes, (400, 500)).view(2, 16, 4)
    assert not torch.allclose(again, out)  # fresh draw per call
    # a multiple of 16 repeats the sign patterns with fresh magnitudes
    fhm32 = FeatureHallucination(num_classes=2, feat_dim=2, num_jitter=32)
    rel32 = (fhm32.jitter_boxes(boxes[:1], (400, 500)) - boxes[0]) / size[0]
    assert torch.equal(rel32[:16] > 0, rel32[16:] > 0) and not torch.allclose(rel32[:16], rel32[16:])


def test_jitter_stays_in_image():
    fhm = FeatureHallucination(num_classes=2, feat_dim=2)
    h, w = 60, 80
    boxes = torch.tensor([[0.0, 0.0, 30.0, 59.0], [50.0, 10.0, 79.0, 59.0], [0.0, 0.0, 79.0, 59.0]])
    out = fhm.jitter_boxes(boxes, (h, w))
    assert out[:, 0::2].min() >= 0 and out[:, 0::2].max() <= w - 1
    assert out[:, 1::2].min() >= 0 and out[:, 1::2].max() <= h - 1
    assert fhm.jitter_boxes(torch.zeros(0, 4), (h, w)).shape == (0, 4)


def test_state_dict_round_trip_reproduces_next_draws():
    a = seeded_fhm(seed=11)
    a.sample(torch.full((6,), 0.5))
    a.jitter_boxes(torch.tensor([[1.0, 1.0, 9.0, 9.0]]), (20, 20))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = FeatureHallucination(num_classes=6, feat_dim=3, seed=999)
    b.load_state_dict(torch.load(buf, weights_only=True))
    acc = torch.tensor([0.1, 0.2, 0.0, 0.7, 0.4, 0.0])
    box = torch.tensor([[2.0, 3.0, 12.0, 15.0]])
    for _ in range(2):
        ea, la = a.sample(acc)
        eb, lb = b.sample(acc)
        assert torch.equal(la, lb) and torch.equal(ea, eb)
        assert torch.equal(a.jitter_boxes(box, (20, 20)), b.jitter_boxes(box, (20, 20)))
    assert torch.equal(a.seen, b.seen) and torch.equal(a.mean, b.mean)


class FakePool(nn.Module):
    """Stands in for MultiScaleRoIAlign: a per-box "feature" from its coordinates."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, features, boxes, image_shapes):
        self.calls.append([b.clone() for b in boxes])
        scale = features["0"].mean()
        return torch.cat(boxes) * scale


class FakeRoIHeads(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.box_roi_pool = FakePool()
        self.box_head = nn.Sequential(nn.Linear(4, d), nn.ReLU())


def test_hook_against_fake_roi_heads():
    c, d = 5, 6
    accuracy = torch.tensor([0.2, 0.5, 0.0, 0.9, 0.0])
    fhm = FeatureHallucination(num_classes=c, feat_dim=d, accuracy_source=lambda: accuracy)
    heads = FakeRoIHeads(d)
    features = {"0": torch.ones(2, 8, 10, 10, requires_grad=True)}
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0], [5.0, 5.0, 20.0, 20.0]]), "labels": torch.tensor([1, 4])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        {"boxes": torch.tensor([[30.0, 30.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
    ]
    shapes = [(100, 120), (100, 120), (90, 80)]
    emb, labels = fhm(roi_heads=heads, features=features, proposals=[None] * 3, targets=targets, image_shapes=shapes)
    assert emb.shape == (8 * 12, d) and not emb.requires_grad
    assert set(labels.tolist()) <= {0, 3}  # torchvision labels 1 and 4, shifted to 0..C-1
    assert fhm.seen.tolist() == [True, False, False, True, False]
    (pooled,) = heads.box_roi_pool.calls
    assert [b.shape[0] for b in pooled] == [32, 0, 16]  # one entry per image, empty ones kept
    # the statistics are those of the head's embeddings of the jittered boxes
    with torch.no_grad():
        emb_real = heads.box_head(torch.cat(pooled))
    expected = FeatureHallucination(num_classes=c, feat_dim=d)
    expected.update(emb_real, torch.tensor([0] * 16 + [3] * 16 + [0] * 16))
    torch.testing.assert_close(fhm.mean, expected.mean)
    torch.testing.assert_close(fhm.var, expected.var)
    # no ground truth anywhere: nothing pooled, nothing changes, sampling still runs
    before = fhm.mean.clone()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    emb, labels = fhm(roi_heads=heads, features=features, proposals=[None], targets=empty, image_shapes=[(10, 10)])
    assert len(heads.box_roi_pool.calls) == 1 and torch.equal(fhm.mean, before) and emb.shape == (96, d)


def test_accuracy_source_must_not_be_a_module():
    with pytest.raises(TypeError, match="accuracy_source"):
        FeatureHallucination(num_classes=2, feat_dim=2, accuracy_source=nn.Identity())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.5}, "decay"),
        ({"num_jitter": 8}, "num_jitter"),
        ({"feat_dim": 0}, "feat_dim"),
        ({"num_sampled_classes": -1}, "num_sampled_classes"),
    ],
)
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FeatureHallucination(**{"num_classes": 3, "feat_dim": 4, **kwargs})

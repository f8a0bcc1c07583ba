import math

import pytest
import torch

from bacl.analysis import hallucination
from bacl.analysis.trained_stage import load_trained_stage
from bacl.data.lvis_dataset import LVISDetection
from bacl.evaluation.inference import load_trained_model
from bacl.losses.fcbl import FCBL
from bacl.models.feature_hallucination import FeatureHallucination

LVIS_CLASSES = 1203


def fcbl_with(cm_num: torch.Tensor, num_gt: torch.Tensor, alpha: float = 0.85) -> FCBL:
    fcbl = FCBL(num_classes=int(num_gt.numel()), alpha=alpha)
    fcbl.cm_num.copy_(cm_num)
    fcbl.num_gt.copy_(num_gt)
    return fcbl


def random_fcbl(num_classes: int, seed: int, alpha: float = 0.85) -> FCBL:
    """Statistics as FCBL builds them: rows of summed softmax probabilities, some classes never seen."""
    g = torch.Generator().manual_seed(seed)
    num_gt = torch.randint(0, 50, (num_classes,), generator=g).double()
    probs = torch.softmax(3 * torch.randn(num_classes, num_classes, generator=g, dtype=torch.float64), dim=1)
    return fcbl_with(probs * num_gt[:, None], num_gt, alpha)


def random_fhm(num_classes: int, feat_dim: int, seed: int, **kwargs) -> FeatureHallucination:
    g = torch.Generator().manual_seed(seed)
    fhm = FeatureHallucination(num_classes=num_classes, feat_dim=feat_dim, seed=seed, **kwargs)
    fhm.mean.copy_(torch.randn(num_classes, feat_dim, generator=g))
    fhm.var.copy_(torch.rand(num_classes, feat_dim, generator=g))
    fhm.seen.copy_(torch.rand(num_classes, generator=g) < 0.8)
    return fhm


def slow_draw_probabilities(accuracy, seen):
    weights = [max(0.0, 1.0 - float(a)) if bool(s) else 0.0 for a, s in zip(accuracy, seen)]
    total = sum(weights)
    return [w / total if total > 0 else 0.0 for w in weights]


def slow_margin(fcbl, y, j):
    cm = fcbl.cm_num / fcbl.num_gt.clamp(min=1)[:, None]
    return fcbl.alpha * math.log(max(float(cm[y, j]), 1e-3) / max(float(cm[j, y]), 1e-3))


# -- FHM's class draw, the one implementation the analysis reads ------------------------------------


def test_draw_probabilities_match_a_slow_reference():
    fhm = random_fhm(40, 3, seed=0)
    accuracy = torch.rand(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    accuracy[:3] = torch.tensor([1.0, 1.2, 0.0])  # perfect, out of range (clamped), never right
    prob = fhm.draw_probabilities(accuracy)
    assert prob.tolist() == pytest.approx(slow_draw_probabilities(accuracy, fhm.seen), abs=1e-15)
    assert float(prob.sum()) == pytest.approx(1.0)
    weights = fhm.draw_weights(accuracy)
    assert torch.allclose(weights / weights.sum(), prob, rtol=0, atol=0)
    # nothing seen, or every seen class perfect: no draw at all
    assert FeatureHallucination(num_classes=4, feat_dim=2).draw_probabilities(torch.zeros(4)).sum() == 0
    assert fhm.draw_probabilities(torch.ones(40, dtype=torch.float64)).sum() == 0
    with pytest.raises(ValueError, match="draw_weights: class_accuracy"):
        fhm.draw_probabilities(torch.zeros(5))


def test_sample_draws_exactly_as_before_the_public_methods():
    """sample() now goes through draw_weights and draw; its numbers are those of the former
    inline code, written out here (weights by a loop, multinomial, then the Gaussian per row)."""
    fhm = random_fhm(12, 5, seed=2, num_sampled_classes=7, num_samples_per_class=3)
    twin = random_fhm(12, 5, seed=2, num_sampled_classes=7, num_samples_per_class=3)
    accuracy = torch.rand(12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for _ in range(3):
        emb, labels = fhm.sample(accuracy)
        weights = torch.tensor([max(0.0, 1.0 - float(a)) * float(s) for a, s in zip(accuracy, twin.seen)],
                               dtype=torch.float64)
        classes = torch.multinomial(weights, 7, replacement=True, generator=twin.generator)
        expected_labels = classes.repeat_interleave(3)
        noise = torch.randn(21, 5, generator=twin.generator, dtype=torch.float32)
        expected = torch.stack([twin.mean[c] + twin.var[c].clamp(min=0).sqrt() * noise[k]
                                for k, c in enumerate(expected_labels.tolist())])
        assert torch.equal(labels, expected_labels) and torch.equal(emb, expected)


def test_draw_probabilities_are_what_fhm_samples_by():
    fcbl = random_fcbl(6, seed=3)
    fhm = random_fhm(6, 2, seed=3, num_sampled_classes=40000, num_samples_per_class=1)
    prob = hallucination.draw_probabilities(fcbl, fhm)
    assert torch.equal(prob, fhm.draw_probabilities(fcbl.class_accuracy))
    _, labels = fhm.sample(fcbl.class_accuracy)
    drawn = torch.bincount(labels, minlength=6).double() / labels.numel()
    assert torch.allclose(drawn, prob, atol=0.01)


def test_draw_uses_the_given_generator_and_leaves_fhm_own_alone():
    fhm = random_fhm(3, 2, seed=5)
    before = fhm.generator.get_state()
    labels = torch.tensor([0, 2, 2])
    x = fhm.draw(labels, generator=torch.Generator().manual_seed(9))
    assert torch.equal(fhm.generator.get_state(), before)
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(x, fhm.mean[labels] + fhm.var[labels].sqrt() * noise)
    assert fhm.draw(torch.zeros(0, dtype=torch.long)).shape == (0, 2)


# -- what the notebook shows --------------------------------------------------------------------------


def test_margin_submatrix_matches_a_slow_reference():
    fcbl = fcbl_with(torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64),
                     torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), alpha=2.0)
    m = hallucination.margin_submatrix(fcbl, [1, 0, 2])
    expected = [[slow_margin(fcbl, y, j) for j in (1, 0, 2)] for y in (1, 0, 2)]
    assert torch.allclose(m, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    assert m[1, 0] == pytest.approx(2.0 * math.log(0.5 / 0.1))
    assert m[2].tolist() == pytest.approx([0.0, 0.0, 0.0])  # a class never seen: both floors
    assert hallucination.margin_submatrix(fcbl, []).shape == (0, 0)


def test_top_and_rarest_first():
    assert hallucination.top_classes(torch.tensor([0.1, 0.5, 0.5, 0.2]), 3) == [1, 2, 3]
    assert hallucination.top_classes(torch.tensor([0.1]), 0) == []
    with pytest.raises(ValueError):
        hallucination.top_classes(torch.tensor([0.1]), -1)
    assert hallucination.rarest_first([3, 0, 2, 1], [5, 1, 5, 0]) == [3, 1, 0, 2]  # counts per class index


def test_variance_neighbours_and_choice():
    var = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    assert hallucination.per_class_variance(var).tolist() == [2.0, 0.0]
    mean = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [-2.0, 0.0]])
    assert hallucination.nearest_classes(mean, 0, [0, 1, 2, 3], k=2) == [1, 3]
    assert hallucination.nearest_classes(mean, 0, [0], k=2) == []
    prob = torch.tensor([0.1, 0.5, 0.3, 0.3])
    seen = torch.tensor([True, True, True, False])
    assert hallucination.choose_classes(prob, ["r", "f", "r", "r"], seen, bin="r", num=5) == [2, 0]
    assert hallucination.choose_classes(prob, ["r", "f", "r", "r"], seen, bin="r", num=1) == [2]


def test_pca_classes_pairs_rare_classes_with_nearest_frequent():
    fhm = FeatureHallucination(num_classes=5, feat_dim=1)
    fhm.mean.copy_(torch.tensor([[0.0], [10.0], [1.0], [9.0], [4.0]]))
    fhm.seen.fill_(True)
    priority = torch.tensor([0.3, 0.6, 0.0, 0.0, 0.1])
    freq = ["r", "r", "f", "f", "f"]
    assert hallucination.pca_classes(fhm, priority, freq, num_rare=2, num_neighbours=1) == [1, 3, 0, 2]
    assert hallucination.pca_classes(fhm, priority, freq, num_rare=2, num_neighbours=0) == [1, 0]
    fhm.seen[:2] = False
    assert hallucination.pca_classes(fhm, priority, freq) == []


def test_hallucinate_is_fhm_draw_with_a_seeded_generator():
    fhm = FeatureHallucination(num_classes=2, feat_dim=2)
    fhm.mean.copy_(torch.tensor([[0.0, 10.0], [5.0, -5.0]]))
    fhm.var.copy_(torch.tensor([[1.0, 4.0], [0.0, 0.0]]))
    before = fhm.generator.get_state()
    x, labels = hallucination.hallucinate(fhm, [0, 1], 4000, seed=1)
    assert torch.equal(fhm.generator.get_state(), before)
    assert x.dtype == torch.float64 and x.shape == (8000, 2)
    assert labels.tolist()[:2] == [0, 0] and labels.tolist()[-1] == 1
    assert torch.equal(x, fhm.draw(labels, generator=torch.Generator().manual_seed(1)).double())
    zero = x[labels == 0]
    assert torch.allclose(zero.mean(0), fhm.mean[0].double(), atol=0.1)
    assert torch.allclose(zero.var(0), fhm.var[0].double(), rtol=0.1)
    assert torch.equal(x[labels == 1], fhm.mean[1].double().expand(4000, 2))
    again, _ = hallucination.hallucinate(fhm, [0, 1], 4000, seed=1)
    assert torch.equal(x, again)
    empty, empty_labels = hallucination.hallucinate(fhm, [], 5)
    assert empty.shape == (0, 2) and empty_labels.numel() == 0


def test_pca_recovers_the_main_axis():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(500, generator=g, dtype=torch.float64)
    x = torch.stack([3 * t, -3 * t, 0.01 * torch.randn(500, generator=g, dtype=torch.float64)], dim=1) + 7
    centre, comps = hallucination.fit_pca(x, k=2)
    assert torch.allclose(centre, x.mean(0))
    axis = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64) / 2 ** 0.5
    assert abs(float(comps[0] @ axis)) == pytest.approx(1.0, abs=1e-4)
    assert comps[0].abs().argmax() in (0, 1) and comps[0][comps[0].abs().argmax()] > 0
    y = hallucination.project(x, centre, comps)
    assert y.shape == (500, 2) and torch.allclose(y.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    with pytest.raises(ValueError, match="k="):
        hallucination.fit_pca(x, k=4)


# -- at LVIS's 1,203 classes: every per-class figure shows a bounded set ----------------------------


def test_at_lvis_scale_the_figures_pick_bounded_sets():
    fcbl = random_fcbl(LVIS_CLASSES, seed=7)
    fhm = random_fhm(LVIS_CLASSES, 64, seed=7)
    g = torch.Generator().manual_seed(7)
    image_count = torch.randint(1, 2000, (LVIS_CLASSES,), generator=g).tolist()
    frequency = ["r" if n <= 10 else "c" if n <= 100 else "f" for n in image_count]

    shown, num_pairs = hallucination.margin_classes(fcbl, image_count, num_pairs=30)
    assert num_pairs == 30 and 2 <= len(shown) <= 60 and len(set(shown)) == len(shown)
    assert [image_count[c] for c in shown] == sorted(image_count[c] for c in shown)
    cm = (fcbl.cm_num / fcbl.num_gt.clamp(min=1)[:, None]).clone()
    cm.fill_diagonal_(-1)
    # the 30 largest entries overall lie among the 30 largest of each row
    candidates = [(float(cm[a, b]), a, b) for a in range(LVIS_CLASSES) for b in torch.topk(cm[a], 30).indices.tolist()]
    pairs = sorted(candidates, reverse=True)[:30]
    assert set(shown) == {a for _, a, _ in pairs} | {b for _, _, b in pairs}

    margins = hallucination.margin_submatrix(fcbl, shown)
    assert margins.shape == (len(shown), len(shown))
    for i in (0, len(shown) - 1):
        for j in (0, len(shown) // 2):
            assert float(margins[i, j]) == pytest.approx(slow_margin(fcbl, shown[i], shown[j]), abs=1e-9)

    prob = hallucination.draw_probabilities(fcbl, fhm)
    assert prob.tolist() == pytest.approx(slow_draw_probabilities(fcbl.class_accuracy, fhm.seen), abs=1e-12)
    assert len(hallucination.top_classes(prob, 10)) == 10
    chosen = hallucination.pca_classes(fhm, prob, frequency, num_rare=3, num_neighbours=2)
    assert 3 <= len(chosen) <= 9
    assert sum(frequency[c] == "r" for c in chosen) == 3
    fake, labels = hallucination.hallucinate(fhm, chosen, 32)
    assert fake.shape == (32 * len(chosen), 64) and set(labels.tolist()) == set(chosen)


# -- on a trained run ------------------------------------------------------------------------------


def test_statistics_and_real_embeddings_of_a_trained_run(tiny_study):
    stage = load_trained_stage(tiny_study["bacl"]["final"])
    fcbl, fhm = stage.fcbl, stage.fhm
    prob = hallucination.draw_probabilities(fcbl, fhm)
    assert prob.shape == (3,) and float(prob.sum()) == pytest.approx(1.0)
    shown, num_pairs = hallucination.margin_classes(fcbl, [1, 2, 3])
    off_diagonal = (fcbl.cm > 0) & ~torch.eye(3, dtype=torch.bool)
    assert num_pairs == int(off_diagonal.sum()) > 0  # softmax mass is positive everywhere on seen rows
    assert set(shown) == {int(c) for pair in off_diagonal.nonzero().tolist() for c in pair}
    fake, labels = hallucination.hallucinate(fhm, [0, 1], 4)
    assert fake.shape == (8, fhm.feat_dim)

    model, _, _ = load_trained_model(tiny_study["bacl"]["final"], device=torch.device("cpu"))
    val = LVISDetection(annotation_file=tiny_study["val"], image_root=tiny_study["image_root"])
    emb, labels = hallucination.real_embeddings(model, val, [0, 1, 2], max_per_class=2)
    assert emb.shape == (len(labels), fhm.feat_dim) and len(labels) > 0
    assert all(int((labels == c).sum()) <= 2 for c in range(3))
    none, none_labels = hallucination.real_embeddings(model, val, [], max_per_class=2)
    assert none.shape == (0, fhm.feat_dim) and none_labels.numel() == 0

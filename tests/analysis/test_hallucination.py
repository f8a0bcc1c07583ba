import pytest
import torch

from bacl.analysis import hallucination
from bacl.data.lvis_dataset import LVISDetection
from bacl.evaluation.inference import load_trained_model
from bacl.losses.fcbl import FCBL
from bacl.models.feature_hallucination import FeatureHallucination


def test_class_accuracy_and_sampling_probability():
    cm_num = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    num_gt = torch.tensor([4.0, 2.0, 0.0], dtype=torch.float64)
    acc = hallucination.class_accuracy(cm_num, num_gt)
    assert acc.tolist() == pytest.approx([0.75, 0.5, 0.0])
    fcbl = FCBL(num_classes=3)
    fcbl.cm_num.copy_(cm_num)
    fcbl.num_gt.copy_(num_gt)
    assert torch.equal(acc, fcbl.class_accuracy)
    prob = hallucination.sampling_probability(acc, torch.tensor([True, True, False]))
    assert prob.tolist() == pytest.approx([0.25 / 0.75, 0.5 / 0.75, 0.0])
    assert hallucination.sampling_probability(torch.ones(3), torch.ones(3, dtype=torch.bool)).sum() == 0


def test_sampling_probability_is_what_fhm_draws_by():
    fhm = FeatureHallucination(num_classes=3, feat_dim=2, num_sampled_classes=20000, num_samples_per_class=1, seed=0)
    fhm.update(torch.randn(6, 2), torch.tensor([0, 0, 1, 1, 2, 2]))
    acc = torch.tensor([0.9, 0.6, 0.0], dtype=torch.float64)
    _, labels = fhm.sample(acc)
    drawn = torch.bincount(labels, minlength=3).double() / labels.numel()
    expected = hallucination.sampling_probability(acc, fhm.seen)
    assert torch.allclose(drawn, expected, atol=0.02)


def test_margin_matrix_by_hand():
    cm_num = torch.tensor([[0.5, 0.5], [0.1, 0.9]], dtype=torch.float64)
    num_gt = torch.ones(2, dtype=torch.float64)
    m = hallucination.margin_matrix(cm_num, num_gt, alpha=2.0)
    expected = torch.tensor([[0.0, 2.0 * torch.log(torch.tensor(0.5 / 0.1)).item()],
                             [2.0 * torch.log(torch.tensor(0.1 / 0.5)).item(), 0.0]], dtype=torch.float64)
    assert torch.allclose(m, expected)


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


def test_hallucinate_follows_the_class_gaussians():
    mean = torch.tensor([[0.0, 10.0], [5.0, -5.0]])
    var = torch.tensor([[1.0, 4.0], [0.0, 0.0]])
    x, labels = hallucination.hallucinate(mean, var, [0, 1], 4000, seed=1)
    assert x.shape == (8000, 2) and labels.tolist()[:2] == [0, 0] and labels.tolist()[-1] == 1
    zero = x[labels == 0]
    assert torch.allclose(zero.mean(0), mean[0].double(), atol=0.1)
    assert torch.allclose(zero.var(0), var[0].double(), rtol=0.1)
    assert torch.equal(x[labels == 1], mean[1].double().expand(4000, 2))
    again, _ = hallucination.hallucinate(mean, var, [0, 1], 4000, seed=1)
    assert torch.equal(x, again)


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


def test_statistics_and_real_embeddings_of_a_trained_run(tiny_study):
    stats = hallucination.load_stage_statistics(tiny_study["bacl"]["final"])
    again = hallucination.load_stage_statistics(tiny_study["bacl"]["last"])
    assert torch.equal(stats.mean, again.mean)  # model_final.pt keeps FHM's statistics too
    assert stats.num_classes == 3 and stats.mean.shape == stats.var.shape
    assert bool(stats.seen.any()) and stats.alpha == pytest.approx(0.85)
    assert stats.has_fhm and stats.has_fcbl
    plain = hallucination.load_stage_statistics(tiny_study["baseline"]["final"])  # BCE, no FHM
    assert not plain.has_fhm and not plain.has_fcbl and plain.num_classes == 3
    assert plain.mean is None and plain.cm_num is None
    with pytest.raises(KeyError, match="no FCBL statistics"):
        plain.accuracy

    model, _, _ = load_trained_model(tiny_study["bacl"]["final"], device=torch.device("cpu"))
    val = LVISDetection(annotation_file=tiny_study["val"], image_root=tiny_study["image_root"])
    emb, labels = hallucination.real_embeddings(model, val, [0, 1, 2], max_per_class=2)
    assert emb.shape == (len(labels), stats.mean.shape[1]) and len(labels) > 0
    assert all(int((labels == c).sum()) <= 2 for c in range(3))
    none, none_labels = hallucination.real_embeddings(model, val, [], max_per_class=2)
    assert none.shape == (0, stats.mean.shape[1]) and none_labels.numel() == 0

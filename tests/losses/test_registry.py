"""Every registered loss honours the ClassificationLoss contract."""

import copy
import importlib
import inspect
import pkgutil

import pytest
import torch

import bacl.losses
from bacl.errors import BaclError
from bacl.losses import (LOSSES, ClassificationLoss, LossArgumentError, build_loss, placeholder_statistics, register_loss,
                         statistics_arguments)
from bacl.models.box_predictor import BoxPredictor

# Import every module of the package so each loss registers, listed in __init__ or not.
for _module in pkgutil.iter_modules(bacl.losses.__path__):
    importlib.import_module(f"bacl.losses.{_module.name}")

NUM_CLASSES = 6
# A long tail with a class never annotated (the last).
STATISTICS = {
    "image_counts": torch.tensor([500, 120, 40, 9, 2, 0]),
    "instance_counts": torch.tensor([5000, 1200, 150, 40, 5, 0]),
    "num_images": 1000,
}
PEERS = {"eql", "eqlv2", "seesaw", "federated", "logit_adjusted", "ecm", "bags"}


def make(name, **kwargs):
    return build_loss(name, num_classes=NUM_CLASSES, statistics=STATISTICS, **kwargs)


def batch(loss, n, *, seed=0, pos_frac=0.5, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, loss.num_logits, generator=gen) * scale).requires_grad_()
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) >= pos_frac] = NUM_CLASSES
    return logits, labels


def test_everything_registered():
    assert {"bce", "softmax_ce", "fcbl"} | PEERS <= set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_builds(name):
    loss = make(name)
    assert isinstance(loss, ClassificationLoss)
    assert loss.num_classes == NUM_CLASSES


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_forward_backward_over_steps(name):
    torch.manual_seed(0)
    loss = make(name)
    for step, pos_frac in enumerate([0.5, 0.0, 0.6]):  # the second batch has no positives
        logits, labels = batch(loss, 32, seed=step, pos_frac=pos_frac)
        terms = loss(logits, labels)
        assert terms and all(key.startswith("loss_cls") for key in terms)
        for value in terms.values():
            assert value.dim() == 0 and torch.isfinite(value)
        sum(terms.values()).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_empty_batch(name):
    loss = make(name)
    logits = torch.zeros(0, loss.num_logits, requires_grad=True)
    terms = loss(logits, torch.zeros(0, dtype=torch.int64))
    total = sum(terms.values())
    assert total.item() == 0.0
    total.backward()
    assert logits.grad is not None and logits.grad.shape == (0, loss.num_logits)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_wrong_width_rejected(name):
    loss = make(name)
    with pytest.raises(ValueError, match=str(loss.num_logits)):
        loss(torch.zeros(3, loss.num_logits + 1), torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_scores_shape_and_range(name):
    torch.manual_seed(0)
    loss = make(name)
    scores = loss.scores(torch.randn(10, loss.num_logits) * 3)
    assert scores.shape == (10, NUM_CLASSES)
    assert bool(((scores >= 0) & (scores <= 1)).all())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_predictor_for_loss(name):
    loss = make(name)
    predictor = BoxPredictor.for_loss(loss, in_channels=16)
    assert predictor.cls_score.in_features == 16
    assert predictor.cls_score.out_features == loss.num_logits
    logits, deltas = predictor(torch.randn(5, 16))
    assert logits.shape == (5, loss.num_logits) and deltas.shape == (5, 4 * NUM_CLASSES)
    assert loss.scores(logits.detach()).shape == (5, NUM_CLASSES)
    plain = isinstance(predictor.cls_score, torch.nn.Linear) and type(predictor.cls_score) is torch.nn.Linear
    assert loss.uses_standard_classifier == (plain and loss.num_logits == NUM_CLASSES + 1)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_resumed_from_state_dict_matches_uninterrupted(name):
    """Statistics and random draws continue exactly from a saved state_dict."""
    extra = {"seed": 5} if "seed" in inspect.signature(LOSSES[name].__init__).parameters else {}
    running = make(name, **extra)
    steps = [batch(running, 24, seed=s, pos_frac=f) for s, f in enumerate([0.5, 0.3, 0.0, 0.7, 0.5])]
    for logits, labels in steps[:2]:
        running(logits, labels)
    saved = copy.deepcopy(running.state_dict())
    resumed = make(name, **({"seed": 99} if extra else {}))  # another seed: the state must bring the draws
    resumed.load_state_dict(saved)
    for logits, labels in steps[2:]:
        a, b = running(logits, labels), resumed(logits, labels)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    for key, value in running.state_dict().items():
        other = resumed.state_dict()[key]
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, other), key


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_rebuilt_with_placeholders_then_loaded_equals_the_trained_loss(name):
    """Inference rebuilds a loss without the training split: the checkpoint's buffers
    carry everything the statistics determined."""
    trained = make(name)
    for seed in range(2):
        trained(*batch(trained, 16, seed=seed))
    rebuilt = build_loss(name, num_classes=NUM_CLASSES, statistics=placeholder_statistics(NUM_CLASSES))
    assert rebuilt.num_logits == trained.num_logits
    rebuilt.load_state_dict(trained.state_dict())
    z = torch.randn(7, trained.num_logits)
    assert torch.equal(rebuilt.scores(z), trained.scores(z))
    logits, labels = batch(trained, 16, seed=5)
    a, b = trained(logits, labels), rebuilt(logits, labels)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_statistics_arguments():
    assert statistics_arguments("bce") == ()
    assert statistics_arguments("fcbl") == ()
    assert statistics_arguments("eql") == ("image_counts", "num_images")
    assert statistics_arguments("federated") == ("image_counts",)
    assert statistics_arguments("ecm") == ("image_counts",)
    assert statistics_arguments("logit_adjusted") == ("instance_counts",)
    assert statistics_arguments("bags") == ("instance_counts",)
    assert statistics_arguments("eqlv2") == statistics_arguments("seesaw") == ()


def test_statistics_only_passed_where_taken():
    loss = build_loss("bce", num_classes=NUM_CLASSES, statistics=STATISTICS)
    assert type(loss).__name__ == "SigmoidBCELoss"


def test_missing_statistics_named():
    with pytest.raises(LossArgumentError, match="image_counts") as err:
        build_loss("eql", num_classes=NUM_CLASSES, statistics={"num_images": 10})
    assert isinstance(err.value, BaclError) and isinstance(err.value, ValueError)
    with pytest.raises(KeyError, match="image_count"):
        build_loss("eql", num_classes=NUM_CLASSES, statistics={"image_count": STATISTICS["image_counts"]})


@pytest.mark.parametrize("name", sorted(n for n in LOSSES if statistics_arguments(n)))
def test_bad_counts_rejected(name):
    key = statistics_arguments(name)[0]
    for bad, match in [
        (torch.ones(NUM_CLASSES + 1, dtype=torch.long), "shape"),
        (torch.ones(NUM_CLASSES), "integer"),
        (torch.full((NUM_CLASSES,), -1), ">= 0"),
    ]:
        with pytest.raises(LossArgumentError, match=match):
            build_loss(name, num_classes=NUM_CLASSES, statistics={**STATISTICS, key: bad})


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="bce"):
        build_loss("no_such_loss", num_classes=3)


def test_duplicate_name_rejected():
    with pytest.raises(KeyError):
        register_loss("bce")(ClassificationLoss)
    assert LOSSES["bce"] is not ClassificationLoss

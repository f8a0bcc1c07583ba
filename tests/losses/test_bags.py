"""BAGS: grouping, layout, the group losses and the test-time merge against slow references."""

from __future__ import annotations

import pytest
import torch

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.bags import BalancedGroupSoftmax

C = 7
# groups with bounds (10, 100, 1000): [0, 10) -> 0, 3, 6; [10, 100) -> 1; [100, 1000) -> 4, 5; >= 1000 -> 2
COUNTS = torch.tensor([3, 50, 5000, 0, 999, 100, 9])


def reference_layout(counts, bounds):
    """Per class: (group, column); the columns: [bg, fg], then per group [others, classes...]."""
    groups = []
    for n in counts.tolist():
        g = 0
        while g < len(bounds) and n >= bounds[g]:
            g += 1
        groups.append(g)
    column, start = {}, 2
    for g in range(len(bounds) + 1):
        members = [j for j in range(len(groups)) if groups[j] == g]
        for k, j in enumerate(members):
            column[j] = start + 1 + k
        start += 1 + len(members)
    return groups, column, start


def reference_losses(logits, labels, counts, bounds):
    """Every row used in every group that has a row of its own (no "others" sampling)."""
    groups, column, _ = reference_layout(counts, bounds)
    n, c = logits.shape[0], len(groups)
    out = {}
    total = logits.new_zeros(())
    for i in range(n):
        target = 1 if int(labels[i]) < c else 0
        total = total + torch.logsumexp(logits[i, :2], 0) - logits[i, target]
    out["loss_cls_bin0"] = total / n
    for g in range(len(bounds) + 1):
        members = [j for j in range(c) if groups[j] == g]
        cols = [column[members[0]] - 1] + [column[j] for j in members] if members else None
        inside = [i for i in range(n) if int(labels[i]) < c and groups[int(labels[i])] == g]
        if not inside:
            out[f"loss_cls_bin{g + 1}"] = logits.new_zeros(())
            continue
        total = logits.new_zeros(())
        for i in range(n):
            y = int(labels[i])
            entry = members.index(y) + 1 if i in inside else 0
            z = torch.stack([logits[i, col] for col in cols])
            total = total + torch.logsumexp(z, 0) - z[entry]
        out[f"loss_cls_bin{g + 1}"] = total / n
    return out


def test_grouping_and_layout():
    loss_fn = BalancedGroupSoftmax(num_classes=C, instance_counts=COUNTS)
    groups, column, width = reference_layout(COUNTS, (10, 100, 1000))
    assert loss_fn.class_group.tolist() == groups == [0, 1, 3, 0, 2, 2, 0]
    assert loss_fn.num_logits == width == C + 2 + 4
    assert loss_fn.class_columns().tolist() == [column[j] for j in range(C)]
    assert loss_fn.group_slices() == [(2, 4), (6, 2), (8, 3), (11, 2)]


@pytest.mark.parametrize("bounds", [(10, 100, 1000), (5, 60), (10000,)])
def test_losses_match_reference_over_steps(bounds):
    """A large others_sample_ratio keeps every row, so the reference needs no sampling."""
    gen = torch.Generator().manual_seed(0)
    loss_fn = BalancedGroupSoftmax(num_classes=C, instance_counts=COUNTS, group_bounds=bounds, others_sample_ratio=1e6)
    for n, pos_frac in [(20, 0.5), (12, 0.0), (15, 1.0)]:  # the second has no positives
        logits = (torch.randn(n, loss_fn.num_logits, generator=gen, dtype=torch.float64) * 3).requires_grad_()
        labels = torch.randint(0, C, (n,), generator=gen)
        labels[torch.rand(n, generator=gen) >= pos_frac] = C
        ours = loss_fn(logits, labels)
        ref = reference_losses(logits, labels, COUNTS, bounds)
        assert ours.keys() == ref.keys()
        for key in ref:
            torch.testing.assert_close(ours[key], ref[key], rtol=1e-12, atol=1e-12)
        g_ours = torch.autograd.grad(sum(ours.values()), logits)[0]
        g_ref = torch.autograd.grad(sum(ref.values()), logits)[0]
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def test_others_sampling():
    loss_fn = BalancedGroupSoftmax(num_classes=C, instance_counts=COUNTS, others_sample_ratio=2.0, seed=1)
    group_labels = torch.zeros(40, dtype=torch.long)
    group_labels[[3, 17, 30]] = torch.tensor([1, 2, 1])
    picks = torch.zeros(40)
    for _ in range(2000):
        w = loss_fn.group_weights(group_labels)
        assert w[[3, 17, 30]].all() and int(w.sum()) == 3 + 6  # int(2.0 * 3) others
        picks += w.float()
    others = torch.ones(40, dtype=torch.bool)
    others[[3, 17, 30]] = False
    freq = picks[others] / 2000
    torch.testing.assert_close(freq, torch.full_like(freq, 6 / 37), atol=0.04, rtol=0.0)  # uniform over others
    assert not loss_fn.group_weights(torch.zeros(5, dtype=torch.long)).any()  # no row of the group: no loss
    assert loss_fn.group_weights(torch.tensor([1, 0, 0])).all()  # fewer others than wanted: all of them


def test_sampled_losses_divide_by_rows_used():
    loss_fn = BalancedGroupSoftmax(num_classes=C, instance_counts=COUNTS, seed=4)
    replay = BalancedGroupSoftmax(num_classes=C, instance_counts=COUNTS, seed=4)
    gen = torch.Generator().manual_seed(5)
    n = 200
    logits = torch.randn(n, loss_fn.num_logits, generator=gen, dtype=torch.float64)
    labels = torch.full((n,), C)
    labels[:3] = torch.tensor([2, 2, 4])  # groups 3 and 2 (1 and 2 rows): 8 and 16 others drawn
    ours = loss_fn(logits, labels)
    for k, (start, length) in enumerate(replay.group_slices()):
        safe = labels.clamp(max=C - 1)
        inside = (labels < C) & (replay.class_group[safe] == k)
        group_labels = torch.where(inside, replay.class_position[safe], torch.zeros_like(labels))
        rows = replay.group_weights(group_labels).nonzero().squeeze(1)
        if rows.numel() == 0:
            assert ours[f"loss_cls_bin{k + 1}"] == 0
            continue
        assert rows.numel() == int(inside.sum()) * 9
        z = logits[rows, start : start + length]
        expected = (torch.logsumexp(z, 1) - z.gather(1, group_labels[rows, None]).squeeze(1)).sum() / rows.numel()
        torch.testing.assert_close(ours[f"loss_cls_bin{k + 1}"], expected)


def test_scores_merge():
    loss_fn = build_loss("bags", num_classes=C, statistics={"instance_counts": COUNTS})
    assert not loss_fn.use_sigmoid and not loss_fn.uses_standard_classifier
    z = torch.randn(4, loss_fn.num_logits, dtype=torch.float64)
    scores = loss_fn.scores(z)
    _, column, _ = reference_layout(COUNTS, (10, 100, 1000))
    fg = torch.softmax(z[:, :2], 1)[:, 1]
    for j in range(C):
        start, length = loss_fn.group_slices()[int(loss_fn.class_group[j])]
        group_probs = torch.softmax(z[:, start : start + length], 1)
        torch.testing.assert_close(scores[:, j], fg * group_probs[:, column[j] - start])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"group_bounds": ()}, "group_bounds"), ({"group_bounds": (10, 10)}, "group_bounds"),
     ({"group_bounds": (0, 10)}, "group_bounds"), ({"others_sample_ratio": -1.0}, "others_sample_ratio")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        BalancedGroupSoftmax(num_classes=C, instance_counts=COUNTS, **kwargs)

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from bacl.analysis import fcbl_diagnostics as diag
from bacl.analysis.hallucination import real_embeddings
from bacl.data.collate import collate_detection
from bacl.engine.build import build_dataset
from bacl.evaluation.inference import load_trained_model
from bacl.losses.fcbl import FCBL
from bacl.models.feature_hallucination import FeatureHallucination

FREQ = ["r", "r", "c", "f", "f", "c", "r", "f"]  # C = 8


def random_fcbl(seed, *, num_classes=8, unseen=(1,), reweight=True, alpha=0.85):
    """FCBL with statistics as after training: softmax rows summed over random counts."""
    g = torch.Generator().manual_seed(seed)
    fcbl = FCBL(num_classes=num_classes, alpha=alpha, reweight=reweight)
    counts = torch.randint(1, 30, (num_classes,), generator=g).double()
    counts[list(unseen)] = 0
    probs = torch.softmax(3 * torch.randn(num_classes, num_classes, generator=g, dtype=torch.float64), dim=1)
    fcbl.cm_num.copy_(probs * counts[:, None])
    fcbl.num_gt.copy_(counts)
    return fcbl


def random_batch(seed, n=40, num_classes=8):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, num_classes + 1, generator=g, dtype=torch.float64) - 2
    labels = torch.randint(0, num_classes + 1, (n,), generator=g)
    return logits, labels


# -- bins and statistics ------------------------------------------------------------------

def test_bin_index_and_unknown_bins():
    assert diag.bin_index(["f", "r", "c"]).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="unknown bins"):
        diag.bin_index(["r", "x"])


def test_statistics_by_bin_match_a_slow_reference():
    fcbl = random_fcbl(0, unseen=(1, 3))
    cm, num_gt = fcbl.cm, fcbl.num_gt
    rows = diag.statistics_by_bin(cm, num_gt, FREQ)
    total = sum(num_gt.tolist())
    for row in rows:
        members = [k for k, f in enumerate(FREQ) if f == row["bin"]]
        seen = [k for k in members if num_gt[k] > 0]
        counts = [float(num_gt[k]) for k in members]
        acc = [float(cm[k, k]) for k in seen]
        assert row["classes"] == len(members) and row["seen"] == len(seen)
        assert row["positives"] == pytest.approx(sum(counts))
        assert row["share"] == pytest.approx(sum(counts) / total)
        assert row["per_class"] == pytest.approx(sum(counts) / len(counts))
        assert row["per_class_min"] == min(counts)
        assert row["accuracy"] == pytest.approx(sum(acc) / len(acc))
        assert (row["accuracy_min"], row["accuracy_max"]) == (pytest.approx(min(acc)), pytest.approx(max(acc)))
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_statistics_of_a_fresh_fcbl_are_empty_not_errors():
    fcbl = FCBL(num_classes=8)
    rows = diag.statistics_by_bin(fcbl.cm, fcbl.num_gt, FREQ)
    assert all(r["seen"] == 0 and r["positives"] == 0 for r in rows)
    assert all(math.isnan(r["share"]) and math.isnan(r["accuracy"]) for r in rows)
    spread = diag.confusion_spread(fcbl.cm, fcbl.num_gt, FREQ)
    assert all(r["rows"] == 0 and math.isnan(r["self"]) for r in spread)
    with pytest.raises(ValueError, match="cm must be"):
        diag.statistics_by_bin(torch.zeros(3, 3), fcbl.num_gt, FREQ)


def test_confusion_spread_matches_a_slow_reference():
    fcbl = random_fcbl(1, unseen=(0,))
    cm, num_gt = fcbl.cm, fcbl.num_gt
    for row in diag.confusion_spread(cm, num_gt, FREQ):
        seen = [k for k, f in enumerate(FREQ) if f == row["bin"] and num_gt[k] > 0]
        assert row["rows"] == len(seen)
        assert row["self"] == pytest.approx(np.mean([float(cm[y, y]) for y in seen]))
        for other in diag.BINS:
            mass = [sum(float(cm[y, j]) for j in range(8) if j != y and FREQ[j] == other) for y in seen]
            assert row[f"to_{other}"] == pytest.approx(np.mean(mass))
        tops = []
        for y in seen:
            best = max((j for j in range(8) if j != y), key=lambda j: (float(cm[y, j]), -j))
            tops.append(best)
        assert row["top"] == pytest.approx(np.mean([float(cm[y, j]) for y, j in zip(seen, tops)]))
        for other in diag.BINS:
            assert row[f"top_in_{other}"] == pytest.approx(np.mean([FREQ[j] == other for j in tops]))
        assert row["self"] + row["to_r"] + row["to_c"] + row["to_f"] == pytest.approx(1.0)


# -- margins ----------------------------------------------------------------------------------

def test_margin_matrix_is_the_formula():
    fcbl = random_fcbl(2, unseen=(4,), alpha=0.6)
    cm = (fcbl.cm_num / fcbl.num_gt.clamp(min=1)[:, None]).tolist()
    m = diag.margin_matrix(fcbl)
    for y in range(8):
        for j in range(8):
            expected = 0.6 * math.log(max(cm[y][j], 1e-3) / max(cm[j][y], 1e-3))
            assert float(m[y, j]) == pytest.approx(expected, abs=1e-6)
    assert torch.all(torch.diagonal(m) == 0)


def test_margin_summary_matches_a_slow_reference():
    fcbl = random_fcbl(3, unseen=(2,))
    m, cm, num_gt = diag.margin_matrix(fcbl), fcbl.cm, fcbl.num_gt
    for row in diag.margin_summary(m, num_gt, cm, FREQ):
        seen = [y for y, f in enumerate(FREQ) if f == row["bin"] and num_gt[y] > 0]
        entries = np.array([float(m[y, j]) for y in seen for j in range(8) if j != y])
        assert row["rows"] == len(seen)
        assert row["mean"] == pytest.approx(entries.mean())
        assert row["median"] == pytest.approx(np.quantile(entries, 0.5))
        assert (row["q10"], row["q90"]) == (pytest.approx(np.quantile(entries, 0.1)),
                                            pytest.approx(np.quantile(entries, 0.9)))
        assert row["positive"] == pytest.approx((entries > 0).mean())
        assert row["negative"] == pytest.approx((entries < 0).mean())
        for other in diag.BINS:
            block = [float(m[y, j]) for y in seen for j in range(8) if j != y and FREQ[j] == other]
            assert row[f"to_{other}"] == pytest.approx(np.mean(block))
        tops = [max((j for j in range(8) if j != y), key=lambda j: (float(cm[y, j]), -j)) for y in seen]
        assert row["top_confused"] == pytest.approx(np.mean([float(m[y, j]) for y, j in zip(seen, tops)]))


def test_rare_rows_get_positive_margins_towards_what_they_are_confused_with():
    # class 0 (rare) is mostly called class 3 (frequent); class 3 is almost never called 0
    fcbl = FCBL(num_classes=8, alpha=1.0)
    cm = torch.full((8, 8), 0.01, dtype=torch.float64)
    cm.fill_diagonal_(0.93)
    cm[0] = 0.01
    cm[0, 3], cm[0, 0] = 0.7, 0.24
    cm[3, 0] = 0.001
    cm /= cm.sum(dim=1, keepdim=True)
    fcbl.cm_num.copy_(cm * 10)
    fcbl.num_gt.fill_(10)
    m = diag.margin_matrix(fcbl)
    assert float(m[0, 3]) > 5 and float(m[3, 0]) < -5
    rare = diag.margin_summary(m, fcbl.num_gt, fcbl.cm, FREQ)[0]
    assert rare["top_confused"] > 0


# -- one step's gradient ---------------------------------------------------------------------

@pytest.mark.parametrize("reweight", [False, True])
def test_gradient_split_adds_up_to_fcbl_autograd(reweight):
    fcbl = random_fcbl(4, reweight=reweight)
    logits, labels = random_batch(5)
    margins, keep = diag.fcbl_row_terms(fcbl, logits, labels)  # before forward: the statistics it uses
    z = logits.clone().requires_grad_(True)
    fcbl(z, labels)["loss_cls"].backward()
    split = diag.channel_gradient_split(logits, labels, margins=margins, keep=keep)
    total = split["push_background"] + split["push_positive"] - split["pull_own"]
    torch.testing.assert_close(total, z.grad.sum(dim=0) * len(labels), rtol=1e-9, atol=1e-9)
    assert all(bool((v >= 0).all()) for v in split.values())
    if reweight:
        assert not bool(keep.all())


def test_gradient_split_without_terms_is_plain_bce():
    logits, labels = random_batch(6)
    z = logits.clone().requires_grad_(True)
    F.binary_cross_entropy_with_logits(z, F.one_hot(labels, 9).double(), reduction="sum").backward()
    split = diag.channel_gradient_split(logits, labels)
    torch.testing.assert_close(split["push_background"] + split["push_positive"] - split["pull_own"],
                               z.grad.sum(dim=0))


def test_gradient_split_matches_a_slow_reference():
    fcbl = random_fcbl(7)
    logits, labels = random_batch(8, n=25)
    margins, keep = diag.fcbl_row_terms(fcbl, logits, labels)
    split = diag.channel_gradient_split(logits, labels, margins=margins, keep=keep)
    expected = {k: [0.0] * 9 for k in split}
    for i in range(25):
        y = int(labels[i])
        for j in range(9):
            if not keep[i, j]:
                continue
            p = 1 / (1 + math.exp(-(float(logits[i, j]) + float(margins[i, j]))))
            if j == y:
                expected["pull_own"][j] += 1 - p
            elif y == 8:
                expected["push_background"][j] += p
            else:
                expected["push_positive"][j] += p
    for key, values in expected.items():
        torch.testing.assert_close(split[key], torch.tensor(values, dtype=torch.float64))
    # the background channel is pushed only by positive rows, pulled by background rows
    assert float(split["push_background"][8]) == 0.0


def test_row_terms_leave_background_rows_alone():
    fcbl = random_fcbl(9)
    logits, labels = random_batch(10)
    margins, keep = diag.fcbl_row_terms(fcbl, logits, labels)
    background = labels == 8
    assert bool(background.any()) and bool((~background).any())
    assert bool((margins[background] == 0).all()) and bool(keep[background].all())
    assert bool((margins[:, 8] == 0).all()) and bool(keep[:, 8].all())
    pos = (~background).nonzero().squeeze(1)
    torch.testing.assert_close(margins[pos], fcbl.margins(labels[pos]))


def test_gradient_split_of_an_empty_batch_is_zero():
    split = diag.channel_gradient_split(torch.zeros(0, 9), torch.zeros(0, dtype=torch.long))
    assert all(v.shape == (9,) and bool((v == 0).all()) for v in split.values())
    margins, keep = diag.fcbl_row_terms(random_fcbl(0), torch.zeros(0, 9), torch.zeros(0, dtype=torch.long))
    assert margins.shape == (0, 9) and keep.shape == (0, 9)
    with pytest.raises(ValueError, match="logits must be"):
        diag.channel_gradient_split(torch.zeros(3, 9), torch.zeros(2, dtype=torch.long))


def test_dropped_negative_share_matches_a_slow_reference():
    fcbl = random_fcbl(11)
    logits, labels = random_batch(12, n=60)
    _, keep = diag.fcbl_row_terms(fcbl, logits, labels)
    out = diag.dropped_negative_share(keep, labels, FREQ)
    for name in diag.BINS:
        shares = [sum(1 for j in range(8) if j != int(labels[i]) and not keep[i, j]) / 7
                  for i in range(60) if int(labels[i]) < 8 and FREQ[int(labels[i])] == name]
        assert out[name] == pytest.approx(np.mean(shares))
    negatives = sum(1 for i in range(60) for j in range(9) if j != int(labels[i]))
    dropped = sum(1 for i in range(60) for j in range(9) if not keep[i, j])
    assert out["all_negatives"] == pytest.approx(dropped / negatives)
    assert out["all_negatives"] > 0


def test_dropped_negative_share_without_positives_or_rows():
    labels = torch.full((5,), 8)
    out = diag.dropped_negative_share(torch.ones(5, 9, dtype=torch.bool), labels, FREQ)
    assert all(math.isnan(out[b]) for b in diag.BINS) and out["all_negatives"] == 0.0
    empty = diag.dropped_negative_share(torch.ones(0, 9, dtype=torch.bool), torch.zeros(0, dtype=torch.long), FREQ)
    assert math.isnan(empty["all_negatives"])


def test_classifier_change_matches_a_slow_reference():
    torch.manual_seed(15)
    before, after = torch.nn.Linear(5, 9).requires_grad_(False), torch.nn.Linear(5, 9).requires_grad_(False)
    rows = diag.classifier_change(before, after, FREQ)
    for row in rows:
        members = [k for k, f in enumerate(FREQ) if f == row["bin"]]
        moved = [math.dist(before.weight[k].tolist(), after.weight[k].tolist()) for k in members]
        norms = [math.hypot(*before.weight[k].tolist()) for k in members]
        assert row["weight_norm"] == pytest.approx(np.mean(moved), rel=1e-5)
        assert row["relative"] == pytest.approx(np.mean([m / n for m, n in zip(moved, norms)]), rel=1e-5)
        assert row["bias"] == pytest.approx(np.mean([float(after.bias[k] - before.bias[k]) for k in members]),
                                            rel=1e-5)
    same = diag.classifier_change(before, before, FREQ)
    assert all(r["weight_norm"] == 0 and r["bias"] == 0 for r in same)
    with pytest.raises(ValueError, match="outputs"):
        diag.classifier_change(before, torch.nn.Linear(5, 4), FREQ)


# -- what a step classifies -------------------------------------------------------------------

def test_label_counts_by_hand():
    labels = torch.tensor([8, 8, 0, 3, 3, 2, 6, 8])
    assert diag.label_counts(labels, FREQ) == {"rows": 8, "background": 3, "positive": 5, "r": 2, "c": 1, "f": 2}
    assert diag.label_counts(torch.zeros(0, dtype=torch.long), FREQ)["rows"] == 0
    with pytest.raises(ValueError, match="labels must be in"):
        diag.label_counts(torch.tensor([9]), FREQ)


def test_expected_hallucinated_counts_match_fhm_draws():
    fhm = FeatureHallucination(num_classes=8, feat_dim=4, seed=3)
    fhm.update(torch.randn(16, 4), torch.tensor([0, 2, 3, 4, 5, 6, 7] * 2 + [0, 0]))  # class 1 never seen
    accuracy = torch.tensor([0.1, 0.0, 0.5, 0.9, 0.8, 0.6, 0.2, 0.95], dtype=torch.float64)
    expected = diag.expected_hallucinated_counts(fhm.draw_probabilities(accuracy), FREQ, rows_per_step=96)
    assert sum(expected.values()) == pytest.approx(96)
    counts = Counter()
    steps = 400
    for _ in range(steps):
        _, labels = fhm.sample(accuracy)
        counts.update(FREQ[int(k)] for k in labels)
    for name in diag.BINS:  # 400 steps of 8 draws: within a few standard errors
        assert counts[name] / steps == pytest.approx(expected[name], abs=2.0)
    zero = diag.expected_hallucinated_counts(torch.zeros(8, dtype=torch.float64), FREQ, rows_per_step=96)
    assert zero == {"r": 0.0, "c": 0.0, "f": 0.0}


# -- test time ----------------------------------------------------------------------------------

def test_true_class_rank_matches_a_slow_reference():
    g = torch.Generator().manual_seed(13)
    scores = torch.rand(30, 8, generator=g).round(decimals=1)  # ties
    labels = torch.randint(0, 8, (30,), generator=g)
    ranks = diag.true_class_rank(scores, labels)
    expected = [1 + sum(1 for j in range(8) if scores[i, j] > scores[i, labels[i]]) for i in range(30)]
    assert ranks.tolist() == expected
    assert diag.true_class_rank(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)).shape == (0,)


def slow_detection_rank(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, thr):
    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    out = []
    for g, gl in zip(gt_boxes.tolist(), gt_labels.tolist()):
        best = None
        for d, s, dl in zip(det_boxes.tolist(), det_scores.tolist(), det_labels.tolist()):
            if dl == gl and iou(g, d) >= thr and (best is None or s > best):
                best = s
        out.append(0 if best is None else 1 + sum(1 for s in det_scores.tolist() if s > best))
    return out


def test_truth_detection_rank_matches_a_slow_reference():
    g = torch.Generator().manual_seed(14)

    def boxes(n):
        xy = torch.rand(n, 2, generator=g) * 40
        return torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 20], dim=1)

    gt_boxes, gt_labels = boxes(6), torch.randint(1, 4, (6,), generator=g)
    det_boxes = torch.cat([gt_boxes + torch.randn(6, 4, generator=g), gt_boxes + 2 * torch.randn(6, 4, generator=g),
                           boxes(20)])
    det_scores = torch.rand(32, generator=g)
    det_labels = torch.randint(1, 4, (32,), generator=g)
    det_labels[:6] = gt_labels
    for thr in (0.3, 0.5, 0.8):
        ranks = diag.truth_detection_rank(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, iou_threshold=thr)
        assert ranks.tolist() == slow_detection_rank(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, thr)
    assert bool((diag.truth_detection_rank(gt_boxes, gt_labels, det_boxes, det_scores, det_labels) > 0).any())


def test_truth_detection_rank_edge_cases():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    none = diag.truth_detection_rank(gt, torch.tensor([2]), torch.zeros(0, 4), torch.zeros(0),
                                     torch.zeros(0, dtype=torch.long))
    assert none.tolist() == [0]
    assert diag.truth_detection_rank(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), gt, torch.ones(1),
                                     torch.tensor([2])).shape == (0,)
    # right place, wrong class; then the right class below two others
    dets = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 9.0]])
    assert diag.truth_detection_rank(gt, torch.tensor([2]), dets[:1], torch.ones(1), torch.tensor([1])).tolist() == [0]
    ranks = diag.truth_detection_rank(gt, torch.tensor([2]), dets, torch.tensor([0.9, 0.8, 0.1]),
                                      torch.tensor([1, 3, 2]))
    assert ranks.tolist() == [3]
    with pytest.raises(ValueError, match="iou_threshold"):
        diag.truth_detection_rank(gt, torch.tensor([2]), dets, torch.ones(3), torch.ones(3, dtype=torch.long),
                                  iou_threshold=0)


def test_cap_outcomes_by_hand():
    out = diag.cap_outcomes(torch.tensor([1, 15, 16, 0, 300]), cap=15)
    assert out == {"kept": 0.4, "cut": 0.4, "missed": 0.2}
    assert all(math.isnan(v) for v in diag.cap_outcomes(torch.zeros(0, dtype=torch.long), cap=15).values())
    with pytest.raises(ValueError, match="cap"):
        diag.cap_outcomes(torch.tensor([1]), cap=0)


# -- collectors, on a tiny trained study --------------------------------------------------------

def first_batches(dataset, count, batch_size=4):
    loader = DataLoader(Subset(dataset, range(min(len(dataset), count * batch_size))), batch_size=batch_size,
                        shuffle=False, collate_fn=collate_detection)
    return list(loader)


def test_sampled_rois_are_what_the_loss_sees(tiny_study):
    model, params, num_classes = load_trained_model(tiny_study["representation"], device=torch.device("cpu"))
    batches = first_batches(build_dataset(params.data, split="train"), 2)
    torch.manual_seed(0)
    sampled = diag.sample_training_rois(model, batches, num_steps=2)
    assert len(sampled) == 2 and not model.training

    seen = []
    hook = model.roi_heads.classification_loss.register_forward_hook(lambda m, args, out: seen.append(args))
    model.train()
    for module in model.modules():  # the classifier stage keeps every BatchNorm frozen
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for images, targets in batches:
            model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
    hook.remove()
    model.eval()
    for (embeddings, labels), (logits, loss_labels) in zip(sampled, seen):
        assert torch.equal(labels, loss_labels)
        torch.testing.assert_close(model.roi_heads.box_predictor.cls_score(embeddings), logits)
        counts = diag.label_counts(labels, ["f"] * num_classes)
        assert counts["positive"] >= 1 and counts["rows"] == len(labels)
    assert diag.sample_training_rois(model, batches, num_steps=0) == []


def test_val_truth_ranks_agree_with_the_detector(tiny_study):
    model, params, num_classes = load_trained_model(tiny_study["bacl"]["final"], device=torch.device("cpu"))
    dataset = build_dataset(params.data, split="val")
    batches = first_batches(dataset, 2, batch_size=3)
    out = diag.val_truth_ranks(model, batches, max_detections=50, iou_threshold=0.1)  # a tiny model: loose boxes
    num_gt = sum(len(t["labels"]) for _, targets in batches for t in targets)
    assert all(v.shape == (num_gt,) for v in out.values())
    assert bool(((out["class_rank"] >= 1) & (out["class_rank"] <= num_classes)).all())
    assert model.roi_heads.detections_per_img == params.evaluate.detections_per_img  # restored

    # the scores on the ground-truth boxes, through the embedding path the FHM analysis uses
    embeddings, labels = real_embeddings(model, dataset, range(num_classes), max_per_class=1000)
    scores = model.roi_heads.classification_loss.scores(model.roi_heads.box_predictor.cls_score(embeddings.float()))
    assert torch.equal(labels[:num_gt], out["labels"])
    torch.testing.assert_close(scores[:num_gt].double().gather(1, labels[:num_gt, None]).squeeze(1),
                               out["truth_score"], rtol=1e-5, atol=1e-7)

    # the detections' ranks, from the detector's own outputs in image coordinates
    model.roi_heads.detections_per_img, model.roi_heads.score_thresh = 50, 1e-4
    expected = []
    with torch.no_grad():
        for images, targets in batches:
            for target, det in zip(targets, model(images)):
                expected.append(diag.truth_detection_rank(target["boxes"], target["labels"], det["boxes"],
                                                          det["scores"], det["labels"], iou_threshold=0.1))
    assert out["detection_rank"].tolist() == torch.cat(expected).tolist()
    assert bool((out["detection_rank"] > 0).any())


# -- the script ----------------------------------------------------------------------------------

def load_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "fcbl_diagnostics.py"
    spec = importlib.util.spec_from_file_location("fcbl_diagnostics_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_prints_every_table_and_combines_seeds(tiny_study, tmp_path, capsys):
    tool = load_tool()
    out = tmp_path / "seed.json"
    tool.main(["--stage1", str(tiny_study["representation"]), "--run", f"bacl={tiny_study['bacl']['final']}",
               "--steps", "2", "--val-images", "4", "--json", str(out)])
    printed = capsys.readouterr().out
    for title, _, _ in tool.TABLES.values():
        assert f"### {title}" in printed
    result = __import__("json").loads(out.read_text())
    assert result["meta"]["steps"] == 2 and result["meta"]["val_images"] == 4
    losses = {(r["classifier"], r["loss"]) for r in result["tables"]["gradients"]}
    assert {("stage 1", "bce"), ("bacl", "fcbl + fhm rows"), ("bacl", "bce (counterfactual)")} <= losses

    combined = tool.combine([str(out), str(out)])
    row = combined["tables"]["rois"][0]
    assert row["source"] == "real RoIs" and row["rows"][1] == 0.0
    assert row["rows"][0] == result["tables"]["rois"][0]["rows"]


def test_tool_refuses_a_run_with_another_representation(tiny_study):
    tool = load_tool()
    with pytest.raises(SystemExit, match="differs from stage 1's"):
        tool.main(["--stage1", str(tiny_study["representation"]), "--run",
                   f"baseline={tiny_study['baseline']['final']}", "--steps", "1", "--val-images", "1"])


def test_tool_metrics_mode(tiny_study, capsys, tmp_path):
    tool = load_tool()
    tool.main(["--metrics", f"bacl={tiny_study['bacl']['metrics']}", f"baseline={tiny_study['baseline']['metrics']}"])
    printed = capsys.readouterr().out
    metrics = __import__("json").loads(tiny_study["bacl"]["metrics"].read_text())
    for protocol, values in metrics["protocols"].items():
        assert f"### Protocol {protocol} " in printed
    first = next(iter(metrics["protocols"]))
    assert f"| bacl | 1 | {100 * metrics['protocols'][first]['AP']:.1f} |" in printed
    with pytest.raises(SystemExit, match="expected NAME=PATTERN"):
        tool.main(["--metrics", f"none={tmp_path}/*.json"])

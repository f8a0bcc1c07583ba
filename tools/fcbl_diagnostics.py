"""What FCBL does in a classifier stage, measured on the checkpoints of one seed; or those
measurements combined over seeds (docs/fcbl_on_synthetic.md).

One seed: stage 1 and the classifier-stage runs trained from it (any loss, with or without
FHM; they must share stage 1's frozen representation, which is checked):

    python tools/fcbl_diagnostics.py --stage1 runs/compare/seed0/representation/model_final.pt \\
        --run cls-bce=runs/compare/seed0/cls-bce/model_final.pt \\
        --run cls-fcbl=runs/compare/seed0/cls-fcbl/model_final.pt \\
        --run bacl=runs/compare/seed0/bacl/model_final.pt --json reports/fcbl/seed0.json

prints, per frequency bin: the rows a classifier-stage step classifies (the RoI sampler over
the first ``--steps`` training batches of the stage, with stage 1's RPN) and the rows FHM
adds; each FCBL run's statistics, confusion spread and margins; where the gradient on each
class's logit comes from in those steps and what the auto-adjusted weights drop, under
each run's loss as trained and under plain BCE; and, on the first ``--val-images`` val
images, the rank of the true class among classes on the ground-truth box and whether the
true-class detection survives the per-image cap.

Several seeds: ``--combine seed0.json seed1.json seed2.json`` prints every table as
mean ± standard deviation over the files. ``--metrics NAME=PATTERN ...`` prints AP, APr,
APc and APf of ``bacl evaluate``'s metrics files (a glob per run, one file per seed) as
mean ± standard deviation, one table per evaluation protocol.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bacl.analysis import fcbl_diagnostics as diag  # noqa: E402
from bacl.analysis.tables import markdown_table  # noqa: E402
from bacl.analysis.trained_stage import TrainedStage, load_trained_stage  # noqa: E402
from bacl.atomic_io import atomic_write_json  # noqa: E402
from bacl.checkpoint import load_checkpoint  # noqa: E402
from bacl.engine.build import build_dataset, build_eval_loader, build_train_dataset, build_train_loader  # noqa: E402
from bacl.engine.stages import CLASSIFIER_STAGE_TRAINABLE, STAGE_STATE  # noqa: E402
from bacl.errors import BaclError  # noqa: E402
from bacl.evaluation.inference import load_trained_model  # noqa: E402
from bacl.losses.fcbl import FCBL  # noqa: E402
from bacl.params import params_from_dict  # noqa: E402
from bacl.params.loading import merge, parse_overrides  # noqa: E402

log = logging.getLogger("fcbl_diagnostics")

# name -> (title, columns, columns shown in percent)
TABLES: dict[str, tuple[str, list[str], list[str]]] = {
    "rois": ("Rows classified per step (RoI sampler, first training batches of the stage)",
             ["source", "rows", "background", "positive", "r", "c", "f", "positive_share", "rare_share"],
             ["positive_share", "rare_share"]),
    "statistics": ("FCBL's statistics after the stage", ["run", "bin", "classes", "seen", "positives", "share",
                                                          "per_class", "per_class_min", "accuracy", "accuracy_min",
                                                          "accuracy_max"],
                   ["share", "accuracy", "accuracy_min", "accuracy_max"]),
    "confusion": ("Where each bin's rows of cm put their probability (seen classes)",
                  ["run", "bin", "rows", "self", "to_r", "to_c", "to_f", "top", "top_in_r", "top_in_c", "top_in_f"],
                  ["self", "to_r", "to_c", "to_f", "top", "top_in_r", "top_in_c", "top_in_f"]),
    "margins": ("Margins m[y, j], j != y, by bin of the row class y (seen classes)",
                ["run", "bin", "rows", "mean", "q10", "median", "q90", "positive", "to_r", "to_c", "to_f",
                 "top_confused"], ["positive"]),
    "gradients": ("Gradient on each class's logit per step and class (mean over the bin's classes)",
                  ["classifier", "loss", "bin", "pull_own", "push_background", "push_positive", "background_part",
                   "net"], ["background_part"]),
    "change": ("How far each run moved the classification layer from stage 1's (mean over the bin's classes)",
               ["run", "bin", "weight_norm", "relative", "bias"], ["relative"]),
    "dropped": ("Negative channels the auto-adjusted weights drop", ["classifier", "loss", "r", "c", "f",
                                                                    "all_negatives"],
                ["r", "c", "f", "all_negatives"]),
    "test": ("Validation ground truth: rank of the true class on its box, and its detection under the cap",
             ["run", "bin", "boxes", "rank1", "top5", "median_rank", "median_score", "kept", "cut", "missed"],
             ["rank1", "top5", "kept", "cut", "missed"]),
}


class DiagnosticsInputError(BaclError, ValueError):
    """Checkpoints or result files that cannot be analysed together; the message names them."""


def load_params(checkpoint: Path, overrides: list[str]):
    state = load_checkpoint(checkpoint)
    return params_from_dict(merge(state["params"], parse_overrides(overrides)), source=f"{checkpoint} (params)")


def check_same_representation(stage1: torch.nn.Module, other: torch.nn.Module, source: str) -> None:
    """Every weight the classifier stage freezes must equal stage 1's."""
    reference = stage1.state_dict()
    for name, value in other.state_dict().items():
        if name.startswith(CLASSIFIER_STAGE_TRAINABLE + STAGE_STATE):
            continue
        if name not in reference or not torch.equal(reference[name], value):
            raise DiagnosticsInputError(f"{source}: {name} differs from stage 1's; not a classifier stage trained "
                                        "from this stage 1")


def per_bin_gradients(total: dict[str, torch.Tensor], bins: torch.Tensor, steps: int) -> list[dict[str, Any]]:
    rows = []
    for b, name in enumerate(diag.BINS):
        members = bins == b
        values = {k: float(v[:-1][members].mean()) / max(steps, 1) for k, v in total.items()}
        push = values["push_background"] + values["push_positive"]
        rows.append({"bin": name, **values, "background_part": values["push_background"] / push if push else None,
                     "net": values["pull_own"] - push})
    return rows


def gradient_variants(stage1_model, runs: dict[str, tuple[Any, TrainedStage]], num_classes: int):
    """(classifier name, loss name, classification layer, FCBL or None, FHM stage or None)."""
    fcbl_options = next((s.settings.get("fcbl") for _, s in runs.values() if s.has_fcbl), None) or {}
    start = FCBL(num_classes=num_classes, alpha=float(fcbl_options.get("alpha", 0.85)),
                 prob_thr=float(fcbl_options.get("prob_thr", 0.7)), reweight=True)
    cls1 = stage1_model.roi_heads.box_predictor.cls_score
    out = [("stage 1", "bce", cls1, None, None), ("stage 1", "fcbl, empty statistics", cls1, start, None)]
    for name, (model, stage) in runs.items():
        layer = model.roi_heads.box_predictor.cls_score
        loss = stage.settings.get("loss")
        fhm = stage if stage.has_fhm else None
        if stage.has_fcbl:
            fcbl = stage.require_fcbl()
            label = "fcbl" if (fcbl.alpha > 0 or fcbl.reweight) else "fcbl reduced to bce"
            out.append((name, label + (" + fhm rows" if fhm else ""), layer, fcbl, fhm))
        elif loss == "bce":
            out.append((name, "bce" + (" + fhm rows" if fhm else ""), layer, None, fhm))
        else:
            log.info("%s: loss %s has no gradient split here; shown with bce only", name, loss)
        if loss != "bce" or fhm is not None:
            out.append((name, "bce (counterfactual)", layer, None, None))
    return out


@torch.no_grad()
def gradient_tables(sampled, variants, bins, frequency, seed: int):
    gradients, dropped = [], []
    for classifier, loss, layer, fcbl, fhm_stage in variants:
        total: Optional[dict[str, torch.Tensor]] = None
        keeps, labels_all = [], []
        fhm = fhm_stage.require_fhm() if fhm_stage is not None else None
        if fhm is not None:
            fhm.generator.manual_seed(seed)  # a rebuilt copy: its own draws, reproducible
            accuracy = fhm_stage.require_fcbl().class_accuracy
        for embeddings, labels in sampled:
            logits = layer(embeddings)
            if fhm is not None:
                extra, extra_labels = fhm.sample(accuracy)
                logits = torch.cat([logits, layer(extra.float())])
                labels = torch.cat([labels, extra_labels])
            margins = keep = None
            if fcbl is not None:
                margins, keep = diag.fcbl_row_terms(fcbl, logits, labels)
                if fcbl.reweight:
                    keeps.append(keep)
                    labels_all.append(labels)
            split = diag.channel_gradient_split(logits, labels, margins=margins, keep=keep)
            total = split if total is None else {k: total[k] + split[k] for k in total}
        for row in per_bin_gradients(total, bins, len(sampled)):
            gradients.append({"classifier": classifier, "loss": loss, **row})
        if keeps:
            share = diag.dropped_negative_share(torch.cat(keeps), torch.cat(labels_all), frequency)
            dropped.append({"classifier": classifier, "loss": loss, **share})
    return gradients, dropped


def roi_table(sampled, frequency, runs) -> list[dict[str, Any]]:
    steps = max(len(sampled), 1)
    sums: dict[str, float] = {}
    for _, labels in sampled:
        for key, value in diag.label_counts(labels, frequency).items():
            sums[key] = sums.get(key, 0.0) + value
    real = {k: v / steps for k, v in sums.items()}

    def shares(row):
        return {**row, "positive_share": row["positive"] / row["rows"] if row["rows"] else None,
                "rare_share": row["r"] / row["rows"] if row["rows"] else None}

    rows = [shares({"source": "real RoIs", **real})]
    for name, (_, stage) in runs.items():
        if not stage.has_fhm:
            continue
        fhm, fcbl = stage.require_fhm(), stage.require_fcbl()
        per_step = fhm.num_sampled_classes * fhm.num_samples_per_class
        extra = diag.expected_hallucinated_counts(fhm.draw_probabilities(fcbl.class_accuracy), frequency,
                                                  rows_per_step=per_step)
        with_fhm = {"rows": real["rows"] + per_step, "background": real["background"],
                    "positive": real["positive"] + per_step, **{b: real[b] + extra[b] for b in diag.BINS}}
        rows.append(shares({"source": f"real + FHM rows, {name}'s final accuracy", **with_fhm}))
    return rows


def test_table(name, model, val_loader, bins, cap: int) -> list[dict[str, Any]]:
    out = diag.val_truth_ranks(model, val_loader, max_detections=300)
    label_bins = bins[out["labels"]]
    rows = []
    for b, bin_name in enumerate(diag.BINS):
        members = label_bins == b
        rank = out["class_rank"][members]
        outcome = diag.cap_outcomes(out["detection_rank"][members], cap=cap)
        rows.append({"run": name, "bin": bin_name, "boxes": int(members.sum()),
                     "rank1": float((rank == 1).double().mean()) if rank.numel() else None,
                     "top5": float((rank <= 5).double().mean()) if rank.numel() else None,
                     "median_rank": float(rank.double().median()) if rank.numel() else None,
                     "median_score": float(out["truth_score"][members].median()) if rank.numel() else None,
                     **outcome})
    return rows


def analyse_seed(args) -> dict[str, Any]:
    device = torch.device("cpu")
    params = load_params(Path(args.stage1), args.overrides)
    stage1_model, _, num_classes = load_trained_model(args.stage1, device=device, test=params.evaluate)
    train_set = build_train_dataset(params.data, params.classifier)
    frequency = list(train_set.class_frequency)
    bins = diag.bin_index(frequency)
    runs: dict[str, tuple[Any, TrainedStage]] = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        if not path:
            raise DiagnosticsInputError(f"--run {spec!r}: expected NAME=CHECKPOINT")
        model, _, classes = load_trained_model(path, device=device, test=params.evaluate)
        if classes != num_classes:
            raise DiagnosticsInputError(f"{path}: {classes} classes, stage 1 has {num_classes}")
        check_same_representation(stage1_model, model, path)
        runs[name] = (model, load_trained_stage(path))

    tables: dict[str, list[dict[str, Any]]] = {"statistics": [], "confusion": [], "margins": []}
    for name, (_, stage) in runs.items():
        if not stage.has_fcbl:
            continue
        fcbl = stage.require_fcbl()
        cm, num_gt = fcbl.cm, fcbl.num_gt
        tables["statistics"] += [{"run": name, **r} for r in diag.statistics_by_bin(cm, num_gt, frequency)]
        tables["confusion"] += [{"run": name, **r} for r in diag.confusion_spread(cm, num_gt, frequency)]
        tables["margins"] += [{"run": name, **r}
                              for r in diag.margin_summary(diag.margin_matrix(fcbl), num_gt, cm, frequency)]

    tables["change"] = [{"run": name, **r} for name, (model, _) in runs.items()
                        for r in diag.classifier_change(stage1_model.roi_heads.box_predictor.cls_score,
                                                        model.roi_heads.box_predictor.cls_score, frequency)]

    solver = params.solver.model_copy(update={"workers": 0})
    loader, sampler = build_train_loader(train_set, stage=params.classifier, solver=solver, seed=params.seed)
    sampler.set_epoch(0)
    torch.manual_seed(params.seed)
    log.info("sampling the RoIs of %d training steps with stage 1's RPN", args.steps)
    sampled = diag.sample_training_rois(stage1_model, loader, num_steps=args.steps)
    tables["rois"] = roi_table(sampled, frequency, runs)
    tables["gradients"], tables["dropped"] = gradient_tables(
        sampled, gradient_variants(stage1_model, runs, num_classes), bins, frequency, params.seed)

    val_set = build_dataset(params.data, split="val")
    val_loader = build_eval_loader(Subset(val_set, range(min(args.val_images, len(val_set)))),
                                   params.evaluate.model_copy(update={"workers": 0}))
    cap = params.evaluate.detections_per_img if args.cap is None else args.cap
    tables["test"] = []
    for name, model in [("stage 1", stage1_model), *((n, m) for n, (m, _) in runs.items())]:
        log.info("validation ranks: %s", name)
        tables["test"] += test_table(name, model, val_loader, bins, cap)
    meta = {"stage1": str(args.stage1), "runs": list(args.runs), "steps": len(sampled),
            "val_images": min(args.val_images, len(val_set)), "cap": cap, "seed": params.seed}
    return {"meta": meta, "tables": tables}


def combine(files: list[str]) -> dict[str, Any]:
    """Every table of ``files`` (same runs, same order) as mean ± sd per numeric cell."""
    loaded = []
    for f in files:
        try:
            loaded.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise DiagnosticsInputError(f"{f}: cannot read ({err})") from None
    tables = {}
    for name in TABLES:
        per_file = [doc["tables"].get(name, []) for doc in loaded]
        if len({len(t) for t in per_file}) != 1:
            raise DiagnosticsInputError(f"table {name}: {[len(t) for t in per_file]} rows in {files}")
        rows = []
        for cells in zip(*per_file):
            row = {}
            for key in cells[0]:
                values = [c.get(key) for c in cells]
                if all(isinstance(v, int) for v in values) and len(set(values)) == 1:  # counts, as classes per bin
                    row[key] = values[0]
                elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    finite = [float(v) for v in values if v == v]
                    row[key] = (statistics.mean(finite) if finite else None,
                                statistics.stdev(finite) if len(finite) > 1 else None)
                elif len({json.dumps(v) for v in values}) == 1:
                    row[key] = values[0]
                else:
                    raise DiagnosticsInputError(f"table {name}, column {key}: {values} differ between {files}")
            rows.append(row)
        tables[name] = rows
    return {"meta": {"files": files}, "tables": tables}


METRIC_KEYS = ("AP", "APr", "APc", "APf")


def metrics_tables(specs: list[str]) -> str:
    """Markdown tables, one per protocol, of the metrics files each ``NAME=PATTERN`` matches."""
    per_run: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        name, _, pattern = spec.partition("=")
        files = sorted(glob.glob(pattern))
        if not name or not files:
            raise DiagnosticsInputError(f"--metrics {spec!r}: expected NAME=PATTERN matching metrics files")
        docs = []
        for f in files:
            try:
                docs.append(json.loads(Path(f).read_text())["protocols"])
            except (OSError, json.JSONDecodeError, KeyError) as err:
                raise DiagnosticsInputError(f"{f}: not a metrics file with protocols ({err})") from None
        per_run[name] = docs
    protocols = [p for p in next(iter(per_run.values()))[0] if all(p in d for docs in per_run.values() for d in docs)]
    out = []
    for protocol in protocols:
        rows = []
        for name, docs in per_run.items():
            row = {"run": name, "seeds": len(docs)}
            for key in METRIC_KEYS:
                values = [100 * d[protocol][key] for d in docs]
                row[key] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)
            rows.append(row)
        shown = [{k: (f"{v[0]:.1f}" + ("" if v[1] is None else f" ± {v[1]:.1f}")) if isinstance(v, tuple) else v
                  for k, v in r.items()} for r in rows]
        out.append(f"\n### Protocol {protocol} (box AP in percent, mean ± sd over seeds)\n\n"
                   + markdown_table(shown, ["run", "seeds", *METRIC_KEYS]))
    return "\n".join(out)


def decimals(value: float) -> int:
    """Decimals that show about three significant digits (at most 5, none above 100)."""
    if value == 0 or value != value:
        return 2
    return min(5, max(0, 2 - math.floor(math.log10(abs(value)))))


def cell(value: Any, percent: bool) -> Any:
    """A table cell: shares in percent with one decimal, other numbers with about three
    significant digits; ``(mean, sd)`` pairs as ``mean ± sd`` with the mean's decimals."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        mean, spread = value
        if mean is None:
            return None
        mean = 0.0 if abs(mean) < 1e-12 else mean  # float noise, e.g. antisymmetric margins averaging to 0
        scale = 100 if percent else 1
        digits = 1 if percent else decimals(mean)
        text = f"{scale * mean:.{digits}f}"
        return text if spread is None else f"{text} ± {scale * spread:.{digits}f}"
    if isinstance(value, float):
        value = 0.0 if abs(value) < 1e-12 else value
        return f"{100 * value:.1f}" if percent else f"{value:.{decimals(value)}f}"
    return value


def print_tables(result: dict[str, Any]) -> None:
    for name, (title, columns, percent) in TABLES.items():
        rows = result["tables"].get(name) or []
        if not rows:
            continue
        shown = [{c: cell(r.get(c), c in percent) for c in columns} for r in rows]
        headers = [f"{c} %" if c in percent else c for c in columns]
        print(f"\n### {title}\n\n{markdown_table(shown, columns, headers=headers)}")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1", help="stage 1's model_final.pt")
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a classifier-stage run trained from --stage1 (repeatable)")
    parser.add_argument("--steps", type=int, default=150, help="training steps whose RoIs are sampled")
    parser.add_argument("--val-images", type=int, default=300, help="validation images for the test-time ranks")
    parser.add_argument("--cap", type=int, default=None, help="detections per image (default: evaluate's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="laid over stage 1's saved parameters, e.g. --set data.root=data/synthetic")
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                        help="instead: combine per-seed result files (mean ± sd)")
    parser.add_argument("--metrics", nargs="+", default=None, metavar="NAME=PATTERN",
                        help="instead: AP, APr, APc, APf of metrics files over seeds (a glob per run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.metrics:
            print(metrics_tables(args.metrics))
            return
        if args.combine:
            result = combine(args.combine)
        else:
            if not args.stage1:
                parser.error("--stage1 is required (or --combine)")
            result = analyse_seed(args)
    except BaclError as err:
        sys.exit(f"error: {err}")
    if args.json:
        atomic_write_json(args.json, result, indent=1)
    print_tables(result)


if __name__ == "__main__":
    main()

"""The BACL ablation on the synthetic benchmark: baseline vs BACL and its parts, over seeds.

For every seed: stage 1 (representation, BCE) once, then runs that start from it and
train for ``classifier.epochs`` more epochs, so every row has the same total number of
epochs; each is evaluated on the val split at two detection budgets: the parameters'
``model.detections_per_img`` (synthetic default 15: LVIS's 300 per image for 1,203
classes, scaled to 60 classes) and LVIS's 300.

    stage1    stage 1 alone, evaluated (fewer epochs than the others)
    baseline  stage 1 continued: nothing frozen, plain BCE
    bce       classifier stage (frozen), plain BCE
    fcbl      classifier stage, FCBL only
    fhm       classifier stage, FHM only (FCBL with alpha 0 and no reweighting == BCE)
    bacl      classifier stage, FCBL + FHM

    python tools/run_ablation.py --seeds 0 1 2 --out runs/ablation
    python tools/run_ablation.py --seeds 0 --variants baseline bacl --set classifier.epochs=4

Runs already finished are reused, so an interrupted study continues where it stopped.
Writes ``<out>/results.json`` and ``<out>/results.md`` (mean and spread over seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from bacl.atomic_io import atomic_write, atomic_write_json
from bacl.engine.evaluate import evaluate_checkpoint
from bacl.engine.train import FINAL_WEIGHTS, train
from bacl.params import load_params

VARIANTS = {
    "stage1": [],  # evaluated as it is; nothing trained on top
    "baseline": ["classifier.freeze=false", "classifier.loss=bce", "classifier.fhm.enabled=false"],
    "bce": ["classifier.loss=bce", "classifier.fhm.enabled=false"],
    "fcbl": ["classifier.loss=fcbl", "classifier.fhm.enabled=false"],
    "fhm": ["classifier.loss=fcbl", "classifier.fcbl.alpha=0", "classifier.fcbl.reweight=false",
            "classifier.fhm.enabled=true"],
    "bacl": ["classifier.loss=fcbl", "classifier.fhm.enabled=true"],
}
LABELS = {
    "stage1": "stage 1 alone (no further epochs)",
    "baseline": "baseline (stage 1 continued, BCE)",
    "bce": "classifier stage, BCE",
    "fcbl": "classifier stage, FCBL only",
    "fhm": "classifier stage, FHM only",
    "bacl": "BACL (FCBL + FHM)",
}
KEYS = ("AP", "APr", "APc", "APf")


def run_seed(seed: int, out: Path, variants: list[str], overrides: list[str], config: str | None,
             budgets: list[int]) -> dict:
    """Train what is missing for one seed and evaluate every run at every detection budget.

    Returns ``{variant: {budget: {"AP": ..., "APr": ..., ...}}}``; evaluations are kept in
    ``<run>/eval_dets<budget>/`` and reused.
    """
    stage1 = out / f"seed{seed}" / "stage1"
    base = [*overrides, f"train.seed={seed}", f"classifier.seed={seed}", f"train.output_dir={stage1}"]
    params = load_params(config, base)
    if not (stage1 / FINAL_WEIGHTS).exists():
        train(params, stage="representation", resume=True)
    results = {}
    for name in variants:
        run = stage1 if name == "stage1" else out / f"seed{seed}" / name
        variant = base if name == "stage1" else [*base, *VARIANTS[name], f"classifier.output_dir={run}",
                                                 f"classifier.init_from={stage1 / FINAL_WEIGHTS}"]
        final = run / FINAL_WEIGHTS
        if not final.exists():
            final = train(load_params(config, variant), stage="classifier", resume=True)
        results[name] = {}
        for budget in budgets:
            folder = run / f"eval_dets{budget}"
            metrics_path = folder / "metrics.json"
            if not metrics_path.exists():
                at_budget = load_params(config, [*variant, f"model.detections_per_img={budget}",
                                                 f"evaluate.max_dets={budget}"])
                evaluate_checkpoint(at_budget, final, output=metrics_path,
                                    detections_out=folder / "detections.json")
            metrics = json.loads(metrics_path.read_text())
            results[name][budget] = {k: metrics[k] for k in KEYS}
    return results


def summarise(per_seed: dict[int, dict], budget: int) -> str:
    """A markdown table of mean ± standard deviation over seeds at one detection budget."""
    lines = ["| run | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    names = next(iter(per_seed.values())).keys()
    for name in names:
        cells = []
        for key in KEYS:
            values = [100 * per_seed[s][name][budget][key] for s in per_seed]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    seeds = ", ".join(str(s) for s in per_seed)
    lines.append(f"\nMean ± standard deviation over seeds {seeds}, box AP in percent, "
                 f"at most {budget} detections per image.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--config", default=None, help="parameter file (default: built-in defaults = params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-dets", dest="budgets", type=int, nargs="+", default=None,
                        help="detections per image to evaluate at (default: the parameters' "
                             "model.detections_per_img, then LVIS's 300)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    out = Path(args.out)
    budgets = args.budgets
    if budgets is None:
        default = load_params(args.config, args.overrides).model.detections_per_img
        budgets = list(dict.fromkeys([default, 300]))
    per_seed = {seed: run_seed(seed, out, args.variants, args.overrides, args.config, budgets)
                for seed in args.seeds}
    atomic_write_json(out / "results.json", {str(k): v for k, v in per_seed.items()}, indent=1)
    tables = "\n\n".join(summarise(per_seed, budget) for budget in budgets)
    atomic_write(out / "results.md", lambda handle: handle.write((tables + "\n").encode()))
    print(tables)


if __name__ == "__main__":
    main()

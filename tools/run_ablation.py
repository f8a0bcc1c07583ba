"""The BACL ablation on the synthetic benchmark: baseline vs BACL and its parts, over seeds.

For every seed: stage 1 (representation, BCE) once, then runs that start from it and
train for ``classifier.epochs`` more epochs, so every row has the same total number of
epochs; each is evaluated on the val split.

    baseline  stage 1 continued: nothing frozen, plain BCE
    bce       classifier stage (frozen), plain BCE (not run by default: --variants ... bce)
    fcbl      classifier stage, FCBL only
    fhm       classifier stage, FHM only (FCBL with alpha 0 and no reweighting == BCE)
    bacl      classifier stage, FCBL + FHM

    python tools/run_ablation.py --seeds 0 1 2 --out runs/ablation
    python tools/run_ablation.py --seeds 0 --variants baseline bacl --set classifier.epochs=2

Runs already finished are reused, so an interrupted study continues where it stopped.
Writes ``<out>/results.json`` and ``<out>/results.md`` (mean and spread over seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from bacl.engine.evaluate import evaluate_checkpoint
from bacl.engine.train import FINAL_WEIGHTS, train
from bacl.params import load_params

VARIANTS = {
    "baseline": ["classifier.freeze=false", "classifier.loss=bce", "classifier.fhm.enabled=false"],
    "bce": ["classifier.loss=bce", "classifier.fhm.enabled=false"],
    "fcbl": ["classifier.loss=fcbl", "classifier.fhm.enabled=false"],
    "fhm": ["classifier.loss=fcbl", "classifier.fcbl.alpha=0", "classifier.fcbl.reweight=false",
            "classifier.fhm.enabled=true"],
    "bacl": ["classifier.loss=fcbl", "classifier.fhm.enabled=true"],
}
LABELS = {
    "baseline": "baseline (stage 1 continued, BCE)",
    "bce": "classifier stage, BCE",
    "fcbl": "classifier stage, FCBL only",
    "fhm": "classifier stage, FHM only",
    "bacl": "BACL (FCBL + FHM)",
}
KEYS = ("AP", "APr", "APc", "APf")


def run_seed(seed: int, out: Path, variants: list[str], overrides: list[str], config: str | None) -> dict:
    stage1 = out / f"seed{seed}" / "stage1"
    base = [*overrides, f"train.seed={seed}", f"classifier.seed={seed}", f"train.output_dir={stage1}"]
    params = load_params(config, base)
    if not (stage1 / FINAL_WEIGHTS).exists():
        train(params, stage="representation", resume=True)
    results = {}
    for name in variants:
        run = out / f"seed{seed}" / name
        metrics_path = run / "eval" / "metrics.json"
        if not metrics_path.exists():
            vparams = load_params(config, [*base, *VARIANTS[name], f"classifier.output_dir={run}",
                                           f"classifier.init_from={stage1 / FINAL_WEIGHTS}"])
            final = run / FINAL_WEIGHTS
            if not final.exists():
                final = train(vparams, stage="classifier", resume=True)
            evaluate_checkpoint(vparams, final, output=metrics_path, detections_out=run / "eval" / "detections.json")
        metrics = json.loads(metrics_path.read_text())
        results[name] = {k: metrics[k] for k in KEYS}
    return results


def summarise(per_seed: dict[int, dict]) -> str:
    lines = ["| run | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    names = next(iter(per_seed.values())).keys()
    for name in names:
        cells = []
        for key in KEYS:
            values = [100 * per_seed[s][name][key] for s in per_seed]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    seeds = ", ".join(str(s) for s in per_seed)
    lines.append(f"\nMean ± standard deviation over seeds {seeds}, box AP in percent.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["baseline", "fcbl", "fhm", "bacl"], choices=list(VARIANTS))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--config", default=None, help="parameter file (default: built-in defaults = params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    out = Path(args.out)
    per_seed = {seed: run_seed(seed, out, args.variants, args.overrides, args.config) for seed in args.seeds}
    (out / "results.json").write_text(json.dumps({str(k): v for k, v in per_seed.items()}, indent=1))
    table = summarise(per_seed)
    (out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

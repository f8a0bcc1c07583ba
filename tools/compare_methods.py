"""Long-tail methods under one schedule, over seeds: train every variant, evaluate under every protocol.

For every seed, stage 1 (representation, BCE) is trained once; every variant starts from
it and trains ``classifier.epochs`` more epochs, so all rows have the same total length:

    stage1       stage 1 alone (no further epochs)
    baseline     stage 1 continued, everything trains, BCE
    cls-<loss>   the classifier stage (frozen but for cls_score, bbox_pred, RPN) with <loss>, no FHM
    fhm          the classifier stage with FHM and FCBL reduced to BCE (alpha 0, no reweighting)
    bacl         the classifier stage with FCBL + FHM
    e2e-<loss>   stage 1 continued end to end (nothing frozen) with <loss>

Each run is evaluated once per protocol of ``--protocols`` (see ``bacl evaluate --help``).
Finished runs and evaluations are reused, so an interrupted study continues where it
stopped; ``--jobs 2`` runs two trainings at once (one thread each is fastest on 2 cores).

    OMP_NUM_THREADS=1 python tools/compare_methods.py --seeds 0 1 2 --out runs/compare --jobs 2

Writes ``<out>/results.json`` (every number) and ``<out>/results.md`` (mean ± standard
deviation over seeds, one table per protocol); ``notebooks/method_comparison.ipynb`` reads
the former (docs/method_comparison.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PEERS = ("eql", "eqlv2", "seesaw", "federated", "logit_adjusted", "ecm", "bags")
NO_FHM = ["classifier.fhm.enabled=false"]


def variants() -> dict[str, tuple[str, list[str]]]:
    """name -> (stage trained on top of stage 1, overrides)."""
    out: dict[str, tuple[str, list[str]]] = {"stage1": ("representation", []),
                                             "baseline": ("baseline", ["baseline.loss=bce"])}
    for loss in ("bce", "softmax_ce", "fcbl", *PEERS):
        out[f"cls-{loss}"] = ("classifier", [f"classifier.loss={loss}", *NO_FHM])
    out["fhm"] = ("classifier", ["classifier.loss=fcbl", "losses.fcbl.alpha=0", "losses.fcbl.reweight=false"])
    out["bacl"] = ("classifier", ["classifier.loss=fcbl"])
    for loss in ("softmax_ce", "fcbl", *PEERS):
        out[f"e2e-{loss}"] = ("baseline", [f"baseline.loss={loss}"])
    return out


KEYS = ("AP", "APr", "APc", "APf")


def run_dirs(out: Path, seed: int, name: str) -> Path:
    return out / f"seed{seed}" / ("representation" if name == "stage1" else name)


def overrides_for(out: Path, seed: int, name: str, extra: list[str]) -> tuple[str, list[str]]:
    stage, own = variants()[name]
    stage1 = run_dirs(out, seed, "stage1")
    common = [*extra, f"seed={seed}", f"representation.output_dir={stage1}"]
    if stage != "representation":
        common.append(f"{stage}.output_dir={run_dirs(out, seed, name)}")
    return stage, [*common, *own]


def bacl(args: list[str], *, log_file: Path) -> None:
    """Run ``bacl`` as a subprocess (one thread per process), its output in ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log_file, "a") as handle:
        done = subprocess.run([sys.executable, "-m", "bacl.cli", *args], stdout=handle, stderr=subprocess.STDOUT,
                              env=env)
    if done.returncode != 0:
        raise RuntimeError(f"bacl {' '.join(args[:3])} failed; see {log_file}")


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def train(out: Path, seed: int, name: str, config: str | None, extra: list[str]) -> Path:
    stage, overrides = overrides_for(out, seed, name, extra)
    final = run_dirs(out, seed, name) / "model_final.pt"
    if not final.exists():
        config_args = ["--config", config] if config else []
        bacl(["train", "--stage", stage, "--auto-resume", *config_args, *set_args(overrides)],
             log_file=run_dirs(out, seed, name) / "train.log")
    return final


def evaluate(out: Path, seed: int, name: str, config: str | None, extra: list[str], protocols: list[str]) -> dict:
    _, overrides = overrides_for(out, seed, name, extra)
    folder = run_dirs(out, seed, name) / "eval"
    metrics_file = folder / "metrics.json"
    if not metrics_file.exists():
        config_args = ["--config", config] if config else []
        bacl(["evaluate", "--checkpoint", str(run_dirs(out, seed, name) / "model_final.pt"), "--output",
              str(metrics_file), *config_args, *set_args(overrides), *set_args([f"evaluate.protocols={protocols}"])],
             log_file=folder / "evaluate.log")
    return json.loads(metrics_file.read_text())


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, when run from a checkout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(variants()), choices=list(variants()))
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--config", default=None, help="parameter file (default: the built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="applied to every run, e.g. --set representation.epochs=21")
    parser.add_argument("--protocols", nargs="+", default=None,
                        help="evaluation protocols (default: the parameters' evaluate.protocols)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings and evaluations run at once")
    parser.add_argument("--train-only", action="store_true", help="train what is missing, evaluate nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    names = [n for n in args.variants if n != "stage1"]

    config_args = ["--config", args.config] if args.config else []
    bacl(["data", *config_args, *set_args(args.overrides)], log_file=out / "data.log")  # generate or check it
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda s: train(out, s, "stage1", args.config, args.overrides), args.seeds))
        logging.info("stage 1 ready for seeds %s", args.seeds)
        jobs = [(s, n) for s in args.seeds for n in names]
        list(pool.map(lambda job: train(out, job[0], job[1], args.config, args.overrides), jobs))
        logging.info("every run trained")
        if args.train_only:
            return
        protocols = args.protocols
        if protocols is None:
            from bacl.params import load_params

            protocols = list(load_params(args.config, args.overrides).evaluate.protocols)
        evaluated = list(pool.map(
            lambda job: (job, evaluate(out, job[0], job[1], args.config, args.overrides, protocols)),
            [(s, n) for s in args.seeds for n in args.variants]))
    results: dict = {}
    for (seed, name), metrics in evaluated:
        results.setdefault(seed, {})[name] = {p: {k: metrics["protocols"][p][k] for k in KEYS} for p in protocols}
    results = {str(k): v for k, v in results.items()}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    from bacl.analysis.comparison import summary, summary_table, sweep_rows

    stats = summary(sweep_rows(results, source=str(out / "results.json")))
    tables = "\n\n".join(f"Protocol {protocol}, mean ± standard deviation over seeds "
                            f"{', '.join(sorted(results))}, box AP in percent:\n\n{summary_table(stats, protocol)}"
                            for protocol in protocols)
    (out / "results.md").write_text(tables + "\n")
    print(tables)


if __name__ == "__main__":
    main()

"""``bacl data | train | evaluate | predict | demo``: thin entry points over the package.

Every command reads a params file (``--config``, default ``params.yaml`` when present)
and accepts ``--set section.key=value`` overrides, validated with errors naming the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from .params import STAGES, ParamError, Params, load_params

log = logging.getLogger("bacl")

DEFAULT_PARAMS = "params.yaml"


def _add_params_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"parameter file (default: {DEFAULT_PARAMS} if present, else built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter, e.g. --set train.epochs=2 (repeatable)")


def _params(args: argparse.Namespace) -> Params:
    path = args.config
    if path is None and Path(DEFAULT_PARAMS).exists():
        path = DEFAULT_PARAMS
    return load_params(path, args.overrides)


# ---------------------------------------------------------------- commands


def cmd_data(args: argparse.Namespace) -> None:
    params = _params(args)
    data = params.data
    if data.dataset == "synthetic":
        from .data.synthetic import generate_synthetic_lvis

        syn = data.synthetic
        stamp = Path(data.root) / "generated_with.json"
        wanted = json.dumps(dataclasses.asdict(syn), sort_keys=True)
        current = stamp.read_text() if stamp.exists() else None
        if current == wanted and data.train_annotations.exists() and data.val_annotations.exists() and not args.force:
            log.info("%s already holds the benchmark for these parameters (--force regenerates it)", data.root)
        else:
            tic = time.perf_counter()
            generate_synthetic_lvis(out_dir=data.root, seed=syn.seed, num_train_images=syn.num_train_images,
                                    num_val_images=syn.num_val_images, image_size=syn.image_size)
            stamp.write_text(wanted)
            log.info("synthetic benchmark written to %s in %.1f s", data.root, time.perf_counter() - tic)
    from .data.lvis_dataset import LVISDetection
    from .data.summary import write_data_summary

    splits = {}
    for split, ann in (("train", data.train_annotations), ("val", data.val_annotations)):
        ds = splits[split] = LVISDetection(annotation_file=ann, image_root=data.image_root)
        freq = list(ds.class_frequency)
        log.info("%s: %d images, %d classes (r/c/f = %d/%d/%d) from %s", split, len(ds), ds.num_classes,
                 freq.count("r"), freq.count("c"), freq.count("f"), ann)
    log.info("checked; summary in %s", write_data_summary(data, splits))


def cmd_train(args: argparse.Namespace) -> None:
    from .engine.train import train

    final = train(_params(args), stage=args.stage, resume=args.resume, auto_resume=args.auto_resume,
                  device=args.device)
    log.info("final weights: %s", final)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .engine.evaluate import evaluate_checkpoint
    from .evaluation.lvis_eval import evaluate_lvis, write_metrics
    from .evaluation.report import format_metrics_table

    if args.detections is not None:
        if args.checkpoint is not None:
            raise SystemExit("bacl evaluate: give either --checkpoint or --detections, not both")
        if args.annotations is None:
            params = _params(args)
            annotations = params.data.val_annotations
            max_dets = params.evaluate.max_dets
        else:
            annotations, max_dets = Path(args.annotations), args.max_dets
        metrics = evaluate_lvis(annotations=annotations, detections=args.detections, max_dets=max_dets)
        output = Path(args.output or Path(args.detections).with_suffix(".metrics.json"))
    else:
        params = _params(args)
        checkpoint = Path(args.checkpoint or Path(params.train.output_dir) / "model_final.pt")
        out_dir = Path(args.output).parent if args.output else checkpoint.parent / "eval"
        output = Path(args.output or out_dir / "metrics.json")
        metrics = evaluate_checkpoint(params, checkpoint, device=args.device, output=output,
                                      detections_out=out_dir / "detections.json")
        if not metrics:
            return
    if args.detections is not None:
        write_metrics(output, metrics)
    if args.summary is not None:
        from .atomic_io import atomic_write_json
        from .evaluation.report import headline_metrics

        atomic_write_json(args.summary, headline_metrics(metrics), indent=2)
    if args.per_class is not None:
        from .analysis.tail_gains import write_per_class_csv

        write_per_class_csv(args.per_class, metrics)
    print(format_metrics_table(metrics, title=f"LVIS box metrics (%), max {metrics.get('max_dets')} dets/image"))
    log.info("metrics written to %s", output)


def cmd_predict(args: argparse.Namespace) -> None:
    from .engine.inference import load_trained_model, predict_folder, write_json
    from .engine.train import setup_runtime

    runtime = setup_runtime(args.device)
    model, params, _ = load_trained_model(args.checkpoint, device=runtime.device)
    names = _category_names(params)
    records = predict_folder(model, args.images, device=runtime.device, category_names=names,
                             score_threshold=args.score_threshold)
    write_json(args.output, records)
    log.info("%d detections on images of %s written to %s", len(records), args.images, args.output)
    if args.draw is not None:
        from .analysis.drawing import draw_predictions

        written = draw_predictions(records, image_folder=args.images, out_dir=args.draw)
        log.info("%d annotated images written to %s", written, args.draw)


def _category_names(params: Params) -> list[str]:
    import json

    path = params.data.val_annotations
    try:
        cats = json.loads(Path(path).read_text())["categories"]
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"{path}: cannot read category names ({err})") from None
    return [c["name"] for c in sorted(cats, key=lambda c: c["id"])]


def cmd_demo(args: argparse.Namespace) -> None:
    """Generate the benchmark, train stage 1 (representation, BCE), evaluate it and print the table.
    The whole study (BACL against the baseline, notebooks) is the DVC pipeline: ``dvc repro``."""
    from .engine.evaluate import evaluate_checkpoint
    from .evaluation.report import format_metrics_table

    tic = time.perf_counter()
    args.force = False
    cmd_data(args)
    params = _params(args)
    from .engine.train import train

    final = train(params, resume=True, device=args.device)
    out_dir = final.parent / "eval"
    metrics = evaluate_checkpoint(params, final, device=args.device, output=out_dir / "metrics.json",
                                  detections_out=out_dir / "detections.json")
    print(format_metrics_table(metrics, title="LVIS box metrics (%) of stage 1 (representation, BCE) on the "
                                              "synthetic benchmark"))
    log.info("demo finished in %.1f min; metrics in %s", (time.perf_counter() - tic) / 60, out_dir / "metrics.json")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bacl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="generate the synthetic benchmark or check the LVIS files")
    _add_params_args(p)
    p.add_argument("--force", action="store_true", help="regenerate the synthetic benchmark even if present")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a detector (single process, or under torchrun for DDP)")
    _add_params_args(p)
    p.add_argument("--stage", choices=STAGES, default="representation",
                   help="representation (stage 1, settings under train:), classifier (stage 2, settings under "
                        "classifier:, starts from stage 1's model_final.pt) or baseline (stage 1 continued, "
                        "settings under baseline:, starts from the same weights); default: representation")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from <output_dir>/checkpoints/last.pt of the stage")
    resume.add_argument("--auto-resume", action="store_true",
                        help="continue last.pt only if it is an unfinished run of the same parameters (epochs "
                             "may grow), else start afresh; how the DVC pipeline trains")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="LVIS box AP of a checkpoint, or of any LVIS-format results file")
    _add_params_args(p)
    p.add_argument("--checkpoint", default=None, help="weights to evaluate (default: <train.output_dir>/model_final.pt)")
    p.add_argument("--annotations", default=None, help="LVIS-format ground truth (with --detections)")
    p.add_argument("--detections", default=None,
                   help="LVIS results json: a list of {image_id, category_id, bbox [x,y,w,h], score}")
    p.add_argument("--max-dets", type=int, default=300, help="detections per image kept (LVIS: 300)")
    p.add_argument("--output", default=None, help="where to write the metrics json")
    p.add_argument("--summary", default=None, metavar="JSON",
                   help="also write the headline numbers alone (AP, APr, ...) here, e.g. for dvc metrics")
    p.add_argument("--per-class", default=None, metavar="CSV",
                   help="also write per-class AP with each class's training image count and frequency bin here")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="detect objects in a folder of images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", required=True, help="folder of .jpg/.png images")
    p.add_argument("--output", required=True, help="json file for the detections")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--draw", default=None, help="folder for copies of the images with boxes drawn")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="the main job: generate the synthetic benchmark, train, evaluate, print")
    _add_params_args(p)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .engine.checkpoint import CheckpointError  # imports torch: after parsing, so --help stays quick
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except ParamError as err:
        print(f"bacl {args.command}: parameter error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, CheckpointError) as err:
        print(f"bacl {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

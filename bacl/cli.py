"""``bacl download | data | train | evaluate | predict | demo | preset | convert-mmdet``: thin entry points over the package.

Every command reads a params file (``--config``, default ``params.yaml`` when present)
and accepts ``--set section.key=value`` overrides, validated with errors naming the key.
Commands import only what they use: scoring a results file never imports torch.
Errors on bad input (:class:`bacl.errors.BaclError`) print one line; anything else is a
bug and raises with its traceback, and so does every error with ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .errors import BaclError
from .params import STAGE_NAMES, ParamError, Params, load_params, merge, params_from_dict

log = logging.getLogger("bacl")

DEFAULT_PARAMS = "params.yaml"
CONFIGS = Path("configs")


def _add_params_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"parameter or preset file (default: {DEFAULT_PARAMS} if present, else built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter, e.g. --set representation.epochs=2 (repeatable)")


def _params(args: argparse.Namespace) -> Params:
    path = args.config
    if path is None and Path(DEFAULT_PARAMS).exists():
        path = DEFAULT_PARAMS
    return load_params(path, args.overrides)


# ---------------------------------------------------------------- commands


def cmd_download(args: argparse.Namespace) -> None:
    from .data.download_step import download_data

    download_data(_params(args).data)


def cmd_data(args: argparse.Namespace) -> None:
    from .data.prepare import prepare_data

    prepare_data(_params(args).data, force=args.force)


def cmd_train(args: argparse.Namespace) -> None:
    from .engine.train import train

    final = train(_params(args), stage=args.stage, resume=args.resume, auto_resume=args.auto_resume,
                  device=args.device)
    log.info("final weights: %s", final)


def _evaluation_params(args: argparse.Namespace) -> Params:
    """The parameters with the command line's evaluation flags laid over ``evaluate``."""
    params = _params(args)
    flags = {"detections_per_img": args.max_dets, "max_dets_per_class": args.max_dets_per_class,
             "protocols": args.protocols}
    changed = {key: value for key, value in flags.items() if value is not None}
    if not changed:
        return params
    return params_from_dict(merge(params.to_dict(), {"evaluate": changed}), source="command line")


def _score_results_file(args: argparse.Namespace) -> dict:
    from .evaluation.lvis_eval import write_metrics
    from .evaluation.protocols import evaluate_protocols

    params = _evaluation_params(args)
    annotations = Path(args.annotations) if args.annotations else params.data.val_annotations
    metrics = evaluate_protocols(annotations=annotations, budgets=params.evaluate.budgets(),
                                 per_image=args.detections, per_class=args.detections)
    write_metrics(args.output or Path(args.detections).with_suffix(".metrics.json"), metrics)
    return metrics


def _evaluate_checkpoint(args: argparse.Namespace) -> dict:
    from .evaluation.checkpoint_eval import evaluate_checkpoint

    params = _evaluation_params(args)
    checkpoint = Path(args.checkpoint or Path(params.representation.output_dir) / "model_final.pt")
    output = Path(args.output or checkpoint.parent / "eval" / "metrics.json")
    return evaluate_checkpoint(params, checkpoint, device=args.device, output=output,
                               detections_out=output.parent / "detections.json")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluation.report import format_metrics_table

    if args.detections is not None and args.checkpoint is not None:
        raise ParamError("bacl evaluate: give either --checkpoint or --detections, not both")
    metrics = _score_results_file(args) if args.detections is not None else _evaluate_checkpoint(args)
    if not metrics:
        return  # not the main process
    if args.summary is not None:
        from .atomic_io import atomic_write_json
        from .evaluation.report import headline_metrics

        atomic_write_json(args.summary, headline_metrics(metrics), indent=2)
    if args.per_class is not None:
        from .analysis.tail_gains import write_per_class_csv

        write_per_class_csv(args.per_class, metrics)  # the headline protocol's per-class AP
    from .evaluation.report import describe_protocol

    for name, sub in metrics.get("protocols", {"": metrics}).items():
        print(format_metrics_table(sub, title=f"Box metrics (%), {describe_protocol(sub)}"))


def cmd_predict(args: argparse.Namespace) -> None:
    from .atomic_io import atomic_write_json
    from .engine.runtime import setup_runtime
    from .evaluation.inference import load_trained_model, predict_folder

    runtime = setup_runtime(args.device)
    model, params, _ = load_trained_model(args.checkpoint, device=runtime.device)
    names = _category_names(params.data.val_annotations)
    records = predict_folder(model, args.images, device=runtime.device, category_names=names,
                             score_threshold=args.score_threshold)
    atomic_write_json(args.output, records)
    log.info("%d detections on images of %s written to %s", len(records), args.images, args.output)
    if args.draw is not None:
        from .analysis.drawing import draw_predictions

        written = draw_predictions(records, image_folder=args.images, out_dir=args.draw)
        log.info("%d annotated images written to %s", written, args.draw)


def _category_names(annotations: Path) -> list[str]:
    import json

    try:
        cats = json.loads(Path(annotations).read_text())["categories"]
    except (OSError, ValueError, KeyError) as err:
        raise ParamError(f"{annotations}: cannot read category names ({err})") from None
    return [c["name"] for c in sorted(cats, key=lambda c: c["id"])]


def cmd_demo(args: argparse.Namespace) -> None:
    """Generate the benchmark, train stage 1 (representation, BCE), evaluate it and print the table.
    The whole study (BACL against the baseline, notebooks) is the DVC pipeline: ``dvc repro``."""
    from .data.prepare import prepare_data
    from .engine.train import train
    from .evaluation.checkpoint_eval import evaluate_checkpoint
    from .evaluation.report import format_metrics_table

    tic = time.perf_counter()
    params = _params(args)
    prepare_data(params.data, force=False)
    final = train(params, resume=True, device=args.device)
    out_dir = final.parent / "eval"
    metrics = evaluate_checkpoint(params, final, device=args.device, output=out_dir / "metrics.json",
                                  detections_out=out_dir / "detections.json")
    print(format_metrics_table(metrics, title="LVIS box metrics (%) of stage 1 (representation, BCE) on the "
                                              "synthetic benchmark"))
    log.info("demo finished in %.1f min; metrics in %s", (time.perf_counter() - tic) / 60, out_dir / "metrics.json")


def cmd_convert_mmdet(args: argparse.Namespace) -> None:
    from .engine.build import build_classification_loss, build_model
    from .models.mmdet_checkpoint import convert_mmdet_checkpoint

    # The trunk's weights come from the checkpoint: never fetch ImageNet weights first.
    params = load_params(args.config, [*args.overrides, "model.pretrained_backbone=null"])
    settings = params.stage(args.stage)

    def build(num_classes: int):
        loss = build_classification_loss(settings.loss, losses=params.losses, num_classes=num_classes)
        return build_model(params.model, num_classes=num_classes, loss=loss, stage=settings, test=params.evaluate)

    annotations = Path(params.data.val_annotations)
    names = _category_names(annotations) if annotations.is_file() else None
    summary = convert_mmdet_checkpoint(args.source, args.output, build_model=build, params=params.to_dict(),
                                       stage=args.stage, category_names=names)
    print(summary.describe())


def cmd_preset(args: argparse.Namespace) -> None:
    from .atomic_io import atomic_write
    from .params import render_params

    if args.name == "synthetic":
        params, source = load_params(None, args.overrides), "synthetic"
    else:
        path = Path(args.name)
        if not path.is_file():
            path = CONFIGS / f"{args.name}.yaml"
        if not path.is_file():
            known = ["synthetic"] + sorted(p.stem for p in CONFIGS.glob("*.yaml"))
            raise ParamError(f"preset {args.name!r}: no file {path}; presets here: {known}")
        params, source = load_params(path, args.overrides), path.stem
    text = render_params(params, preset=source).encode()
    if args.output == "-":
        sys.stdout.write(text.decode())
        return
    atomic_write(args.output, lambda handle: handle.write(text))
    log.info("%s written from preset %s; `dvc repro` runs the pipeline on it", args.output, source)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bacl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks for every error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch LVIS annotations and COCO 2017 images (resumable, verified); "
                                        "nothing for the synthetic benchmark")
    _add_params_args(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("data", help="generate the synthetic benchmark or check the LVIS files")
    _add_params_args(p)
    p.add_argument("--force", action="store_true", help="regenerate the synthetic benchmark even if present")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a stage (single process, or under torchrun for DDP)")
    _add_params_args(p)
    p.add_argument("--stage", choices=STAGE_NAMES, default="representation",
                   help="representation (stage 1), classifier (stage 2 of BACL, from stage 1's weights) or "
                        "baseline (what stage 2 is compared with); settings in the section of that name")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue <output_dir>/checkpoints/last.pt of the same run (refuses another run's)")
    resume.add_argument("--auto-resume", action="store_true",
                        help="continue last.pt only if it is an unfinished run of the same settings (epochs may "
                             "grow), else start afresh; how the DVC pipeline trains")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="LVIS box AP of a checkpoint, or of any LVIS-format results file")
    _add_params_args(p)
    p.add_argument("--checkpoint", default=None,
                   help="weights to evaluate (default: <representation.output_dir>/model_final.pt)")
    p.add_argument("--annotations", default=None, help="LVIS-format ground truth (with --detections)")
    p.add_argument("--detections", default=None,
                   help="LVIS results json: a list of {image_id, category_id, bbox [x,y,w,h], score}")
    p.add_argument("--max-dets", type=int, default=None,
                   help="detections per image kept by the lvis protocol (default: evaluate.detections_per_img)")
    p.add_argument("--max-dets-per-class", type=int, default=None,
                   help="detections per class kept by fixed and pooled AP (default: evaluate.max_dets_per_class)")
    p.add_argument("--protocol", dest="protocols", action="append", default=None,
                   help="lvis, fixed or pooled, optionally @budget, e.g. lvis@300 (repeatable; default: "
                        "evaluate.protocols, the first is the headline)")
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

    p = sub.add_parser("demo", help="generate the synthetic benchmark, train stage 1, evaluate, print")
    _add_params_args(p)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("convert-mmdet", help="convert an mmdetection 2.x Faster R-CNN checkpoint (the reference's "
                                             "released models) for bacl evaluate")
    _add_params_args(p)
    p.add_argument("source", help="the mmdetection .pth file")
    p.add_argument("output", help="where to write the converted checkpoint")
    p.add_argument("--stage", choices=STAGE_NAMES, default="classifier",
                   help="the stage whose loss scores the model: classifier (BACL: FCBL), baseline (the seed's "
                        "softmax baseline in the LVIS presets)")
    p.set_defaults(func=cmd_convert_mmdet)

    p = sub.add_parser("preset", help="write params.yaml from a preset (synthetic, or a file of configs/)")
    p.add_argument("name", help="synthetic, a name in configs/ (e.g. lvis_v1_r50_fpn) or a preset file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter on top of the preset (repeatable)")
    p.add_argument("--output", default=DEFAULT_PARAMS, help=f"where to write (default {DEFAULT_PARAMS}; - for stdout)")
    p.set_defaults(func=cmd_preset)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except BaclError as err:
        if args.verbose:
            raise
        kind = "parameter error" if isinstance(err, ParamError) else "error"
        print(f"bacl {args.command}: {kind}: {err}", file=sys.stderr)
        return 2 if isinstance(err, ParamError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a trained detector over a dataset or an image folder and write LVIS-format results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import torch.distributed as dist
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.functional import pil_to_tensor
from tqdm import tqdm

from ..engine.build import apply_test_settings, build_classification_loss, build_model
from ..checkpoint import CheckpointError, load_checkpoint
from ..engine.stages import TRAINING_ONLY
from ..data.lvis_dataset import ImageFileError
from ..distributed import get_world_size, is_main_process
from ..errors import MissingFileError
from ..params import STAGE_NAMES, EvaluateParams, params_from_dict

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_trained_model(checkpoint: str | Path, *, device: torch.device, test: EvaluateParams | None = None):
    """Rebuild the detector a checkpoint was trained as and load its weights.

    Returns ``(model, params, num_classes)`` where ``params`` are those saved in the
    checkpoint (as trained). The model tests with ``test``'s settings (detection budget,
    thresholds, test size), by default the saved ``evaluate`` section: evaluating at another
    budget or size needs no retraining. The loss is that of the stage that wrote the
    checkpoint, so its statistics load too; training-only modules (FHM) are dropped.
    """
    state = load_checkpoint(checkpoint)
    saved = params_from_dict(state["params"], source=f"{checkpoint} (saved params)")
    weights = {k: v for k, v in state["model"].items() if not k.startswith(TRAINING_ONLY)}
    num_classes = state.get("num_classes")
    if num_classes is None:
        key = next((k for k in weights if k.endswith("cls_score.weight")), None)
        if key is None:
            raise CheckpointError(f"{checkpoint}: cannot tell the number of classes (no cls_score weights)")
        num_classes = int(weights[key].shape[0]) - 1
    stage = state.get("stage", "representation")
    if stage not in STAGE_NAMES:
        raise CheckpointError(f"{checkpoint}: unknown training stage {stage!r}")
    settings = saved.stage(stage)
    loss = build_classification_loss(settings.loss, losses=saved.losses, num_classes=int(num_classes),
                                     statistics=state.get("loss_statistics"))
    model = build_model(saved.model, num_classes=int(num_classes), loss=loss, stage=settings,
                        test=saved.evaluate)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint}: weights do not fit the model (missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
    model.to(device).eval()
    apply_test_settings(model, test if test is not None else saved.evaluate)
    return model, saved, int(num_classes)


def detections_to_lvis(
    outputs: list[dict[str, torch.Tensor]], image_ids: Iterable[int], label_to_cat_id: dict[int, int] | list[int]
) -> list[dict[str, Any]]:
    """Model outputs (xyxy boxes, labels 1..C) -> LVIS results records (xywh, category ids)."""
    records: list[dict[str, Any]] = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu().double()
        if boxes.numel() == 0:
            continue
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, label, score in zip(xywh, out["labels"].tolist(), out["scores"].tolist()):
            records.append({
                "image_id": int(image_id),
                "category_id": int(label_to_cat_id[int(label)]),
                "bbox": [round(v, 2) for v in box],
                "score": float(score),  # full precision: rounding ties low-scoring detections
            })
    return records


@torch.inference_mode()
def predict_dataset(model: torch.nn.Module, loader, *, device: torch.device, label_to_cat_id,
                    score_thresh: float, max_dets_per_img: Optional[int] = None,
                    max_dets_per_class: Optional[int] = None) -> tuple[Optional[list], Optional[list]]:
    """Detections for every image of ``loader`` (sharded across processes, gathered on all).

    Returns ``(per_image, per_class)``: with ``max_dets_per_img``, the LVIS records of each
    image's best detections scoring above ``score_thresh``; with ``max_dets_per_class``,
    each class's best detections over the whole set, without a per-image cap and down to
    the score floor of Fixed AP's inference (:mod:`bacl.evaluation.topk_per_class`). One pass
    serves both: NMS decisions among the detections above a threshold do not depend on
    those below it.
    """
    from .topk_per_class import MIN_SCORE, TopKPerClass

    model.eval()
    heads = model.roi_heads
    if max_dets_per_class is not None:
        heads.score_thresh, heads.detections_per_img = min(MIN_SCORE, score_thresh), 10**9
        num_classes = len(label_to_cat_id)
        collector = TopKPerClass(num_classes=num_classes, k=max_dets_per_class,
                                 category_ids=[label_to_cat_id[label] for label in range(1, num_classes + 1)])
    else:
        heads.score_thresh, heads.detections_per_img = score_thresh, max_dets_per_img
        collector = None
    records: list[dict[str, Any]] = []
    for images, targets in tqdm(loader, desc="inference", disable=not is_main_process(), dynamic_ncols=True):
        outputs = model([img.to(device) for img in images])
        image_ids = [int(t["image_id"]) for t in targets]
        if collector is not None:
            for image_id, out in zip(image_ids, outputs):
                collector.add(image_id, out["boxes"].cpu().numpy(), out["scores"].cpu().numpy(),
                              out["labels"].cpu().numpy() - 1)
        if max_dets_per_img is not None:
            capped = [_best(out, score_thresh, max_dets_per_img) for out in outputs]
            records.extend(detections_to_lvis(capped, image_ids, label_to_cat_id))
    if get_world_size() > 1:
        gathered: list[Any] = [None] * get_world_size()
        dist.all_gather_object(gathered, (records, collector))
        records = [r for part, _ in gathered for r in part]
        if collector is not None:
            collector = gathered[0][1]
            for _, other in gathered[1:]:
                collector.merge(other)
    per_class = collector.records() if collector is not None else None
    return (records if max_dets_per_img is not None else None), per_class


def _best(output: dict[str, torch.Tensor], score_thresh: float, limit: int) -> dict[str, torch.Tensor]:
    """An image's detections scoring above ``score_thresh``, the ``limit`` best (outputs come sorted by score)."""
    keep = (output["scores"] > score_thresh).nonzero().squeeze(1)[:limit]
    return {key: value[keep] for key, value in output.items()}


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingFileError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return pil_to_tensor(img.convert("RGB")).float().div_(255.0)
    except (UnidentifiedImageError, OSError) as err:
        raise ImageFileError(f"{path}: cannot read image ({err})") from err


@torch.inference_mode()
def predict_folder(
    model: torch.nn.Module, folder: str | Path, *, device: torch.device, category_names: list[str],
    score_threshold: float = 0.3, batch_size: int = 4,
) -> list[dict[str, Any]]:
    """Detections on every image in ``folder``: one record per box, with the file name."""
    files = list_images(folder)
    records: list[dict[str, Any]] = []
    for start in tqdm(range(0, len(files), batch_size), desc="predict", dynamic_ncols=True):
        batch = files[start:start + batch_size]
        outputs = model([read_image(p).to(device) for p in batch])
        for path, out in zip(batch, outputs):
            keep = out["scores"] >= score_threshold
            for box, label, score in zip(out["boxes"][keep].tolist(), out["labels"][keep].tolist(),
                                         out["scores"][keep].tolist()):
                records.append({"file_name": path.name, "label": category_names[int(label) - 1],
                                "bbox_xyxy": [round(v, 2) for v in box], "score": round(score, 4)})
    return records

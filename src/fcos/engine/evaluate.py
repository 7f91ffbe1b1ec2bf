"""COCO evaluation with pycocotools: predictions over a dataset, AP/AR metrics, per-class AP."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from tqdm import tqdm

from fcos.data import DetectionData, DetectionDataset, build_loader, to_coco
from fcos.data.transforms import Resize
from fcos.engine import distributed as D
from fcos.ops.sizing import scale_boxes

__all__ = ["METRIC_NAMES", "coco_metrics", "evaluate", "predict_dataset", "run_pycocotools", "to_coco_results"]

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    data: DetectionData,
    *,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Detections for this process's shard of ``data``: ``[{"image_id", "boxes", "scores", "labels"}]``,
    boxes in the pixels of the image on disk. Images are resized in the loader workers by the model's
    own rule, so the model's resize is a no-op and the outputs equal those for the raw images.

    ``model`` is an :class:`fcos.FCOS` (or its DDP wrapper), or anything called the same way with a
    ``config``: an exported model through :meth:`fcos.predict.Predictor.as_detector`."""
    cfg = getattr(model, "module", model).config.input
    dataset = DetectionDataset(data, Resize(cfg.min_size, cfg.max_size))
    loader = build_loader(dataset, batch_size, workers=workers, rank=D.rank(), world=D.world_size(), even=False,
                          persistent=False)
    results = []
    bar = tqdm(loader, desc="eval", unit="batch", leave=False, disable=not (progress and D.is_main()))
    with D.evaluating(model) if isinstance(model, nn.Module) else contextlib.nullcontext(model) as base:
        for images, targets in bar:
            images = [im.to(device, non_blocking=True) for im in images]
            with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
                detections = base(images)
            for image, target, det in zip(images, targets, detections, strict=True):
                boxes = scale_boxes(det["boxes"].float().cpu(), image.shape[-2:], target["orig_size"].tolist())
                results.append({
                    "image_id": int(target["image_id"]),
                    "boxes": boxes,
                    "scores": det["scores"].float().cpu(),
                    "labels": det["labels"].cpu(),
                })
    return results


def to_coco_results(predictions: Sequence[dict[str, Any]], category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO results format: one ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per box."""
    out = []
    for pred in predictions:
        boxes = pred["boxes"].tolist()
        for (x0, y0, x1, y1), score, label in zip(boxes, pred["scores"].tolist(), pred["labels"].tolist(), strict=True):
            out.append({
                "image_id": pred["image_id"],
                "category_id": int(category_ids[label]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            })
    return out


def coco_metrics(ground_truth: dict[str, Any], results: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """COCO bbox evaluation. Returns the 12 summary metrics by name, ``per_class`` AP (IoU .5:.95)
    and ``backend``: faster-coco-eval (C++, ~9x faster on 500 images, identical numbers) when it is
    installed, else pycocotools."""
    if not results:  # neither backend can load an empty result list
        return {**dict.fromkeys(METRIC_NAMES, 0.0), "per_class": dict.fromkeys(class_names, 0.0), "backend": "none"}
    try:
        evaluator, backend = _faster_coco_eval(ground_truth, results), "faster-coco-eval"
    except ImportError:
        evaluator, backend = run_pycocotools(ground_truth, results), "pycocotools"
    metrics: dict[str, Any] = {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats[:12], strict=True)}
    # precision: [IoU thresholds, recall points, classes in evaluator.params.catIds order, area ranges,
    # max dets]; -1 = no ground truth. COCOeval sorts the category ids, so look each class up by its id.
    precision = evaluator.eval["precision"]
    id_of = {c["name"]: c["id"] for c in ground_truth["categories"]}
    column = {int(cat_id): k for k, cat_id in enumerate(evaluator.params.catIds)}
    per_class = {}
    for name in class_names:
        p = precision[:, :, column[id_of[name]], 0, -1]
        p = p[p > -1]
        per_class[name] = float(np.mean(p)) if p.size else math.nan
    metrics["per_class"] = per_class
    metrics["backend"] = backend
    return metrics


def _faster_coco_eval(ground_truth: dict[str, Any], results: list[dict[str, Any]]):
    from faster_coco_eval import COCO as FastCOCO
    from faster_coco_eval import COCOeval_faster

    gt = FastCOCO(ground_truth)
    evaluator = COCOeval_faster(gt, gt.loadRes(results), "bbox", print_function=lambda *args, **kwargs: None)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def run_pycocotools(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> COCOeval:
    """pycocotools' COCOeval (bbox) on in-memory ground truth and results, evaluated and summarised."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate(model: nn.Module, data: DetectionData, **kwargs: Any) -> dict[str, Any]:
    """Predict on ``data`` (split across processes when distributed) and score with COCO metrics
    (:func:`coco_metrics`: faster-coco-eval, or pycocotools).

    Every rank returns the same metrics.
    """
    predictions = predict_dataset(model, data, **kwargs)
    gathered = [p for part in D.all_gather_objects(predictions) for p in part]
    metrics: dict[str, Any] = {}
    if D.is_main():
        metrics = coco_metrics(to_coco(data), to_coco_results(gathered, data.category_ids), data.class_names)
    return D.all_gather_objects(metrics)[0]

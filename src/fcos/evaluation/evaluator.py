"""Evaluating a detector on a dataset split: predictions over the split (shared across processes when
distributed), scored with COCO metrics (:mod:`fcos.evaluation.coco`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fcos.data import DetectionData, DetectionDataset, build_loader, to_coco
from fcos.data.transforms import Resize
from fcos.evaluation.coco import PRCurves, coco_evaluation, to_coco_results
from fcos.ops.sizing import scale_boxes
from fcos.utils import distributed as D

__all__ = ["EvalResult", "evaluate", "predict_dataset", "run_evaluation"]


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
    ``config``: an exported, sliced or augmented model through :meth:`fcos.predict.Predictor.as_detector`
    (which says ``needs_original_images`` when it resizes its views itself)."""
    cfg = getattr(model, "module", model).config.input
    # A sliced or augmented predictor resizes each of its views itself: it gets the images as they are.
    resize = None if getattr(model, "needs_original_images", False) else Resize(cfg.min_size, cfg.max_size)
    dataset = DetectionDataset(data, resize)
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


@dataclass
class EvalResult:
    """One evaluation: ``metrics`` on every rank; on rank 0 also every image's ``predictions`` (as
    :func:`predict_dataset` returns them, all ranks' shards) and the COCO ``curves``."""

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    curves: PRCurves | None = None


def run_evaluation(model: nn.Module, data: DetectionData, **kwargs: Any) -> EvalResult:
    """Predict on ``data`` (split across processes when distributed) and score with COCO metrics
    (:func:`coco_evaluation`: faster-coco-eval, or pycocotools). A collective: every rank calls it, and
    every rank gets the same metrics; predictions and curves stay on rank 0 (kwargs: :func:`predict_dataset`)."""
    predictions = predict_dataset(model, data, **kwargs)
    gathered = [p for part in D.all_gather_objects(predictions) for p in part]
    metrics: dict[str, Any] = {}
    curves = None
    if D.is_main():
        metrics, curves = coco_evaluation(to_coco(data), to_coco_results(gathered, data.category_ids), data.class_names)
    metrics = D.all_gather_objects(metrics)[0]
    return EvalResult(metrics, gathered if D.is_main() else [], curves)


def evaluate(model: nn.Module, data: DetectionData, **kwargs: Any) -> dict[str, Any]:
    """The metrics of :func:`run_evaluation` (every rank returns the same)."""
    return run_evaluation(model, data, **kwargs).metrics

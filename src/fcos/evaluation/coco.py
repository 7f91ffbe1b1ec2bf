"""COCO metrics from ground truth and detections: the 12 AP/AR numbers, per-class AP and the evaluator's
precision-recall curves (:class:`PRCurves`, drawn by :mod:`fcos.evaluation.diagnostics`), with
faster-coco-eval when installed, else pycocotools."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "METRIC_NAMES",
    "PRCurves",
    "coco_evaluation",
    "coco_metrics",
    "run_pycocotools",
    "to_coco_results",
]

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


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


@dataclass(frozen=True)
class PRCurves:
    """The COCO evaluator's accumulated precision-recall curves (area "all", 100 detections per image),
    with classes in ``class_names`` order: nothing is recomputed, so they agree with the AP numbers.

    Attributes:
        recall: [R] the recall points (COCO: 0, 0.01, ..., 1).
        iou_thresholds: [T] (COCO: 0.50, 0.55, ..., 0.95).
        precision: [T, R, K] interpolated precision (COCO's monotone envelope; 0 past the highest recall
            reached); NaN for a class without ground truth. ``mean over R`` is the class's AP at that IoU.
        scores: [T, R, K] the detection score at which each recall point is reached (0 where it is not).
    """

    recall: np.ndarray
    iou_thresholds: np.ndarray
    precision: np.ndarray
    scores: np.ndarray = field(repr=False)

    def ap(self, iou: float | None = None) -> np.ndarray:
        """[K] AP per class at one IoU threshold (None: the mean over .50:.95); NaN without ground truth."""
        p = self.precision if iou is None else self.precision[[self.iou_index(iou)]]
        valid = ~np.isnan(p)
        count = valid.sum(axis=(0, 1))
        return np.where(count > 0, np.where(valid, p, 0.0).sum(axis=(0, 1)) / np.maximum(count, 1), np.nan)

    def iou_index(self, iou: float) -> int:
        index = int(np.argmin(np.abs(self.iou_thresholds - iou)))
        if not np.isclose(self.iou_thresholds[index], iou):
            raise ValueError(f"no IoU threshold {iou} among {self.iou_thresholds.tolist()}")
        return index


def coco_metrics(ground_truth: dict[str, Any], results: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """COCO bbox evaluation. Returns the 12 summary metrics by name, ``per_class`` AP (IoU .5:.95)
    and ``backend``: faster-coco-eval (C++, ~9x faster on 500 images, identical numbers) when it is
    installed, else pycocotools."""
    return coco_evaluation(ground_truth, results, class_names)[0]


def coco_evaluation(
    ground_truth: dict[str, Any], results: list[dict[str, Any]], class_names: Sequence[str]
) -> tuple[dict[str, Any], PRCurves]:
    """:func:`coco_metrics` and the evaluator's precision-recall curves, from one evaluation."""
    if not results:  # neither backend can load an empty result list
        metrics = {**dict.fromkeys(METRIC_NAMES, 0.0), "per_class": dict.fromkeys(class_names, 0.0), "backend": "none"}
        return metrics, _empty_curves(ground_truth, class_names)
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
    columns = [column[id_of[name]] for name in class_names]
    per_class = {}
    for name, k in zip(class_names, columns, strict=True):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[name] = float(np.mean(p)) if p.size else math.nan
    metrics["per_class"] = per_class
    metrics["backend"] = backend
    curve = precision[:, :, columns, 0, -1].astype(np.float64)
    curves = PRCurves(recall=np.asarray(evaluator.params.recThrs, np.float64),
                      iou_thresholds=np.asarray(evaluator.params.iouThrs, np.float64),
                      precision=np.where(curve > -1, curve, np.nan),
                      scores=np.clip(evaluator.eval["scores"][:, :, columns, 0, -1].astype(np.float64), 0, None))
    return metrics, curves


def _empty_curves(ground_truth: dict[str, Any], class_names: Sequence[str]) -> PRCurves:
    """The curves of no detections: precision 0 for classes with ground truth, NaN for the others."""
    recall, ious = np.linspace(0.0, 1.0, 101), np.linspace(0.5, 0.95, 10)
    name_of = {c["id"]: c["name"] for c in ground_truth["categories"]}
    present = {name_of[a["category_id"]] for a in ground_truth["annotations"] if not a.get("iscrowd")}
    row = np.array([0.0 if name in present else np.nan for name in class_names])
    precision = np.broadcast_to(row, (len(ious), len(recall), len(class_names))).copy()
    return PRCurves(recall, ious, precision, np.zeros_like(precision))


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

"""What a detector gets right and wrong, per class, from one evaluation (:class:`EvalResult`):

- ``pr_curves.png``: each class's precision-recall curve at IoU 0.50 and their mean. The curves are the
  COCO evaluator's own accumulated precision (:class:`~fcos.evaluation.coco.PRCurves`: COCO's 101 recall
  points, interpolated envelope), so the area under each is exactly the AP50 that ``fcos eval`` prints.
- ``confusion_matrix.png``: which class each ground-truth box was detected as, with a background row
  (false positives) and column (missed boxes), by the matching rule below.
- ``per_class.csv`` / ``per_class.json``: per class, images and boxes in the split, AP (.50:.95), AP50, AP75
  (from the COCO evaluator), and precision and recall at the confusion matrix's thresholds.

Confusion matrix rule (the one of mmdetection's ``tools/analysis_tools/confusion_matrix.py`` and
ultralytics' ``ConfusionMatrix``; their thresholds: score 0.3 / 0.25, IoU 0.5 / 0.45):

1. only detections with score >= ``conf`` (default 0.25) count;
2. per image, detections in descending score order each take the not yet matched ground-truth box with
   the highest IoU, if that IoU >= ``iou`` (default 0.5), whatever the two classes are: a box found with
   the wrong class is a confusion between the two classes, not a miss plus a false positive;
3. a matched pair adds 1 at [true class, predicted class]; an unmatched ground-truth box adds 1 at
   [true class, background] (a miss); an unmatched detection adds 1 at [background, predicted class]
   (a false positive), unless it lies on a crowd / difficult region (intersection over its own area
   >= ``iou``, COCO's rule for crowd boxes), which ignores it.

Rows are ground truth and columns predictions (as scikit-learn and mmdetection lay them out), the last
of each is background; [background, background] stays 0. A perfect detector's matrix is diagonal.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fcos.data import DetectionData
from fcos.evaluation.coco import PRCurves
from fcos.evaluation.evaluator import EvalResult
from fcos.utils import distributed as D
from fcos.utils.figures import pyplot, save_figure
from fcos.utils.files import write_text

__all__ = [
    "MATRIX_CONF",
    "MATRIX_IOU",
    "class_table",
    "confusion_matrix",
    "match_detections",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "save_diagnostics",
    "write_diagnostics",
]

MATRIX_CONF = 0.25  # minimum score of a detection counted in the confusion matrix
MATRIX_IOU = 0.5  # minimum IoU of a detection and the ground-truth box it finds
_NAMED_CURVES = 20  # more classes than this: thin grey curves without a legend entry each


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU [N, M] and intersection over the area of ``a``'s box [N, M], for xyxy boxes a [N, 4], b [M, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)[:, None]
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)[None, :]
    iou = inter / np.maximum(area_a + area_b - inter, 1e-12)
    return iou, inter / np.maximum(area_a, 1e-12)


def match_detections(
    boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, *, iou: float = MATRIX_IOU, crowd: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy class-agnostic matching (rule 2 of the module doc) of detections to ground truth.

    Args:
        boxes: [N, 4] xyxy detections (already filtered by score); scores: [N].
        gt_boxes: [M, 4] xyxy ground truth; crowd: [K, 4] regions whose detections are ignored.

    Returns:
        match: [N] index of the ground-truth box each detection found, -1 for none, -2 for ignored (crowd).
        found: [M] bool, whether each ground-truth box was found.
    """
    boxes, gt_boxes = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    match = np.full(len(boxes), -1, np.int64)
    found = np.zeros(len(gt_boxes), bool)
    overlap = _overlaps(boxes, gt_boxes)[0] if len(gt_boxes) else np.zeros((len(boxes), 0))
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        candidates = np.where(found, -1.0, overlap[i])
        if candidates.size and candidates.max() >= iou:
            match[i] = int(candidates.argmax())
            found[match[i]] = True
    if crowd is not None and len(crowd) and (match == -1).any():
        on_crowd = _overlaps(boxes, np.asarray(crowd, np.float64).reshape(-1, 4))[1].max(axis=1) >= iou
        match[(match == -1) & on_crowd] = -2
    return match, found


def confusion_matrix(
    predictions: Sequence[dict[str, Any]], data: DetectionData, *, conf: float = MATRIX_CONF, iou: float = MATRIX_IOU
) -> np.ndarray:
    """[C + 1, C + 1] counts: rows ground truth, columns predictions, index C = background (module doc).

    ``predictions``: ``[{"image_id", "boxes" [N, 4], "scores" [N], "labels" [N]}]`` in the images' pixels
    (:func:`~fcos.evaluation.predict_dataset`); an image of ``data`` without an entry has no detections.
    """
    num_classes = data.num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    by_id: dict[int, list[dict[str, Any]]] = {}
    for pred in predictions:
        by_id.setdefault(int(pred["image_id"]), []).append(pred)
    for record in data.records:
        boxes, scores, labels = _detections(by_id.get(int(record.image_id), []))
        keep = scores >= conf
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        match, found = match_detections(boxes, scores, record.boxes, iou=iou, crowd=record.crowd)
        matched = match >= 0
        np.add.at(matrix, (record.labels[match[matched]], labels[matched]), 1)
        np.add.at(matrix, (num_classes, labels[match == -1]), 1)
        np.add.at(matrix, (record.labels[~found], num_classes), 1)
    return matrix


def _detections(parts: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's boxes [N, 4], scores [N] and labels [N], from all its entries (usually one)."""
    boxes = [np.asarray(p["boxes"], np.float64).reshape(-1, 4) for p in parts]
    scores = [np.asarray(p["scores"], np.float64).reshape(-1) for p in parts]
    labels = [np.asarray(p["labels"], np.int64).reshape(-1) for p in parts]
    return (np.concatenate([np.zeros((0, 4)), *boxes]), np.concatenate([np.zeros(0), *scores]),
            np.concatenate([np.zeros(0, np.int64), *labels]))


def class_table(result: EvalResult, data: DetectionData, matrix: np.ndarray) -> list[dict[str, Any]]:
    """One row per class and a last row "all" (means over classes with ground truth; summed counts):
    ``class, images, instances, AP, AP50, AP75, precision, recall``. AP columns come from the COCO
    evaluator; precision and recall from ``matrix`` (correct / all detections of the class, correct /
    all boxes of the class). NaN where a value has no meaning (no ground truth, no detection)."""
    assert result.curves is not None, "the curves live on rank 0"
    aps = {"AP": result.curves.ap(), "AP50": result.curves.ap(0.5), "AP75": result.curves.ap(0.75)}
    num_classes = data.num_classes
    images = np.zeros(num_classes, np.int64)
    instances = np.zeros(num_classes, np.int64)
    for record in data.records:
        images[np.unique(record.labels)] += 1
        instances += np.bincount(record.labels, minlength=num_classes)
    correct = np.diag(matrix)[:num_classes].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = correct / matrix[:, :num_classes].sum(axis=0)
        recall = correct / matrix[:num_classes].sum(axis=1)
    rows = [{"class": name, "images": int(images[k]), "instances": int(instances[k]),
             **{key: float(ap[k]) for key, ap in aps.items()}, "precision": float(precision[k]), "recall": float(recall[k])}
            for k, name in enumerate(data.class_names)]
    present = instances > 0
    total = {"class": "all", "images": len(data), "instances": int(instances.sum())}
    for key in ("AP", "AP50", "AP75", "precision", "recall"):
        values = np.array([row[key] for row in rows])[present]
        values = values[~np.isnan(values)]
        total[key] = float(values.mean()) if values.size else math.nan
    return [*rows, total]


def write_diagnostics(
    result: EvalResult, data: DetectionData, out: str | Path, *, conf: float = MATRIX_CONF, iou: float = MATRIX_IOU,
    pictures: dict[str, Image.Image] | None = None,
) -> list[Path]:
    """Write ``pr_curves.png``, ``confusion_matrix.png``, ``per_class.csv`` and ``per_class.json`` into
    ``out`` (atomically: :mod:`fcos.utils.files`, a failure is a :class:`~fcos.utils.files.WriteError`
    naming the file). Needs rank 0's ``result`` (its predictions and curves). Returns the paths written;
    ``pictures``, when given, receives the two pictures by name (for experiment trackers)."""
    if result.curves is None:
        raise ValueError("diagnostics need the evaluation's predictions and curves (rank 0's EvalResult)")
    out = Path(out)
    matrix = confusion_matrix(result.predictions, data, conf=conf, iou=iou)
    table = class_table(result, data, matrix)
    thresholds = {"matrix_conf": conf, "matrix_iou": iou}
    written = [
        plot_pr_curves(result.curves, data.class_names, out / "pr_curves.png", pictures=pictures),
        plot_confusion_matrix(matrix, data.class_names, out / "confusion_matrix.png", conf=conf, iou=iou,
                              pictures=pictures),
        write_text(out / "per_class.csv", _csv(table)),
        write_text(out / "per_class.json", json.dumps(
            {**thresholds, "classes": [_json_row(r) for r in table[:-1]], "all": _json_row(table[-1]),
             "confusion_matrix": {"rows": "ground truth", "columns": "predicted",
                                  "labels": [*data.class_names, "background"], "counts": matrix.tolist()}}, indent=1)),
    ]
    return written


def save_diagnostics(result: EvalResult, data: DetectionData, out: str | Path, **kwargs: Any) -> None:
    """:func:`write_diagnostics` on rank 0, called by every rank (a collective): a failure (a
    :class:`~fcos.utils.files.WriteError`, or any other) stops every rank with the same error, none is left waiting."""
    failure = None
    if D.is_main():
        try:
            write_diagnostics(result, data, out, **kwargs)
        except Exception as exc:  # re-raised below on every rank  # noqa: BLE001
            failure = exc
    failure = D.broadcast_object(failure)
    if failure is not None:
        raise failure


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _csv(table: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: (f"{v:.4f}" if not math.isnan(v) else "") if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


def _save(fig: Any, path: Path, pictures: dict[str, Image.Image] | None = None) -> Path:
    """Render ``fig`` once to PNG bytes, write them to ``path``; ``pictures[path.stem]``: the same picture."""
    png = save_figure(fig, path)
    if pictures is not None:
        pictures[path.stem] = Image.open(io.BytesIO(png)).convert("RGB")
    return path


def plot_pr_curves(curves: PRCurves, class_names: Sequence[str], out: str | Path, iou: float = 0.5,
                   pictures: dict[str, Image.Image] | None = None) -> Path:
    """Precision against recall at IoU ``iou`` for every class with ground truth (legend: its AP at that
    IoU), and the mean over those classes (its area is the mAP)."""
    plt = pyplot()
    t = curves.iou_index(iou)
    precision = curves.precision[t]  # [R, K]
    aps = curves.ap(iou)
    present = [k for k in range(len(class_names)) if not np.isnan(aps[k])]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    named = len(present) <= _NAMED_CURVES
    for k in present:
        if named:
            ax.plot(curves.recall, precision[:, k], linewidth=1.2, label=f"{class_names[k]} {aps[k]:.3f}")
        else:
            ax.plot(curves.recall, precision[:, k], linewidth=0.6, color="grey", alpha=0.5)
    if present:
        mean = precision[:, present].mean(axis=1)
        ax.plot(curves.recall, mean, linewidth=3, color="tab:blue" if not named else "black",
                label=f"all classes {float(np.mean(aps[present])):.3f} AP{round(iou * 100)}")
        ax.legend(loc="lower left", fontsize=8, bbox_to_anchor=(0.0, 0.0) if named else None)
    else:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"precision-recall at IoU {iou:.2f} (COCO interpolation, 100 detections per image)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(out), pictures)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], out: str | Path, *, conf: float = MATRIX_CONF, iou: float = MATRIX_IOU,
    pictures: dict[str, Image.Image] | None = None,
) -> Path:
    """The matrix coloured by each row's shares (where each class's boxes went; the background row: what
    the false positives were detected as), with the counts written in the cells when there is room."""
    plt = pyplot()
    labels = [*class_names, "background"]
    n = len(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = matrix / matrix.sum(axis=1, keepdims=True)
    shares = np.nan_to_num(shares)
    side = min(max(6.0, 0.45 * n + 2.5), 30.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.9), dpi=100)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 45, ha="center" if n > 8 else "right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"confusion matrix: score >= {conf:.2f}, IoU >= {iou:.2f}\n"
                 "background row: false positives; background column: missed boxes", fontsize=10)
    if n <= 30:
        for (r, c), count in np.ndenumerate(matrix):
            if count or (r == c and r < n - 1):
                ax.text(c, r, str(count), ha="center", va="center", fontsize=8,
                        color="white" if shares[r, c] > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, Path(out), pictures)

"""Merging the detections of several views of one image (tiles, the whole image, test-time augmentations),
one table of mergers (:data:`MERGERS`):

- ``nms``: class-wise non-maximum suppression at ``iou`` (:func:`fcos.model.decode.class_aware_nms`): of
  boxes of one class overlapping more, the best scored stays.
- ``nmm``: SAHI's greedy non-maximum merging: in descending score order each remaining box takes every
  lower-scored box of its class whose intersection over the *smaller* box reaches ``iou``, and becomes
  their union, with its own score. Two halves of one object cut by a tile border overlap the whole
  object's box (from a neighbouring tile or the whole-image view) by most of their own area: they
  become one box, the whole object's.

Boxes: [N, 4] xyxy in original pixels, scores [N], labels [N] int64; the merged detections come out in
descending score order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fcos.model.decode import class_aware_nms
from fcos.utils.flags import SettingError
from fcos.utils.optional import require

__all__ = ["MERGERS", "merge_detections", "nmm", "nms", "wbf"]


def nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float) -> tuple[Tensor, Tensor, Tensor]:
    keep = class_aware_nms(boxes, scores, labels, iou)
    return boxes[keep], scores[keep], labels[keep]


def nmm(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy non-maximum merging by intersection over the smaller box (the module doc)."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores, labels = boxes[order].double(), scores[order], labels[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    alive = torch.ones(len(boxes), dtype=torch.bool)
    out_boxes, keep = [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        alive[i] = False
        rest = torch.nonzero(alive & (labels == labels[i])).flatten()
        box = boxes[i]
        if len(rest):
            lt = torch.maximum(box[:2], boxes[rest, :2])
            rb = torch.minimum(box[2:], boxes[rest, 2:])
            inter = (rb - lt).clamp(min=0).prod(dim=1)
            smaller = torch.minimum(area[i], area[rest]).clamp(min=1e-9)
            taken = rest[inter / smaller >= iou]
            if len(taken):
                alive[taken] = False
                group = torch.cat((box[None], boxes[taken]))
                box = torch.cat((group[:, :2].min(dim=0).values, group[:, 2:].max(dim=0).values))
        out_boxes.append(box)
        keep.append(i)
    if not keep:
        return boxes.float()[:0], scores[:0], labels[:0]
    index = torch.tensor(keep)
    return torch.stack(out_boxes).float(), scores[index], labels[index]


def wbf(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted box fusion (Solovyev et al. 2021, the ``ensemble-boxes`` package): boxes of one class
    overlapping by ``iou`` become their score-weighted mean, with their mean score."""
    fusion = require("ensemble_boxes", "--merge wbf")
    scale = float(boxes.max().clamp(min=1.0))  # the package wants coordinates in [0, 1]
    fused, fused_scores, fused_labels = fusion.weighted_boxes_fusion(
        [(boxes / scale).clamp(0, 1).tolist()], [scores.tolist()], [labels.tolist()], iou_thr=iou, skip_box_thr=0.0)
    order = torch.argsort(torch.as_tensor(fused_scores, dtype=torch.float32), descending=True, stable=True)
    return (torch.as_tensor(fused, dtype=torch.float32).reshape(-1, 4)[order] * scale,
            torch.as_tensor(fused_scores, dtype=torch.float32)[order], torch.as_tensor(fused_labels).long()[order])


Merger = Callable[[Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor, Tensor]]
MERGERS: dict[str, Merger] = {"nms": nms, "nmm": nmm, "wbf": wbf}


def merge_detections(boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "nms",
                     iou: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """The views' detections merged by ``method`` (a key of :data:`MERGERS`), in descending score order."""
    if method not in MERGERS:
        raise SettingError(f"unknown merge method {method!r}; choose from {', '.join(MERGERS)}")
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores, labels
    return MERGERS[method](boxes, scores, labels, iou)

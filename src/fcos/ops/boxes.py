"""Pure box math on tensors.

Conventions: boxes are ``xyxy`` in pixels (x0 < x1, y0 < y1, no "+1" widths); FCOS distances are
``ltrb`` = (left, top, right, bottom) from a point to the four sides of a box.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss

__all__ = [
    "BoxLoss",
    "box_area",
    "boxes_to_ltrb",
    "centerness_from_ltrb",
    "clip_boxes",
    "ltrb_iou_loss",
    "ltrb_to_boxes",
]

BoxLoss = Literal["iou", "linear_iou", "giou", "diou", "ciou"]
_EPS = 1e-7  # torchvision.ops' epsilon for the IoU family


def box_area(boxes: Tensor) -> Tensor:
    """boxes: [..., 4] xyxy -> [...] area (w * h; negative for inverted boxes)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def boxes_to_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """points: [..., 2] xy, boxes: [..., 4] xyxy (broadcastable) -> [..., 4] distances to the sides."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack((x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y), dim=-1)


def ltrb_to_boxes(points: Tensor, ltrb: Tensor) -> Tensor:
    """Inverse of :func:`boxes_to_ltrb`: points [..., 2], ltrb [..., 4] -> boxes [..., 4] xyxy."""
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1)


def clip_boxes(boxes: Tensor, size_hw: Tensor) -> Tensor:
    """Clip xyxy boxes [..., 4] to [0, w] x [0, h]; size_hw: [..., 2] (height, width), broadcastable."""
    wh = size_hw.flip(-1).to(boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), torch.cat((wh, wh), dim=-1))


def centerness_from_ltrb(ltrb: Tensor) -> Tensor:
    """Paper Eq. 3: sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)). ltrb: [..., 4] (all > 0) -> [...]."""
    lr = ltrb[..., 0::2]
    tb = ltrb[..., 1::2]
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (tb.min(dim=-1).values / tb.max(dim=-1).values)
    return ratio.sqrt()


def _giou_loss_ltrb(pred: Tensor, target: Tensor) -> Tensor:
    """``torchvision.ops.generalized_box_iou_loss`` of the boxes (-l, -t, r, b), the same operations in the
    same order (the same values), without its boolean-mask assignment (a ``nonzero``: a host sync and a
    data-dependent shape). Both boxes contain the origin, so the intersection is min-sum along each axis
    and never negative; the enclosing box is max-sum."""
    inter = (torch.minimum(pred[:, 2], target[:, 2]) + torch.minimum(pred[:, 0], target[:, 0])) * (
        torch.minimum(pred[:, 3], target[:, 3]) + torch.minimum(pred[:, 1], target[:, 1]))
    union = (pred[:, 2] + pred[:, 0]) * (pred[:, 3] + pred[:, 1]) + (target[:, 2] + target[:, 0]) * (
        target[:, 3] + target[:, 1]) - inter
    iou = inter / (union + _EPS)
    enclosing = (torch.maximum(pred[:, 2], target[:, 2]) + torch.maximum(pred[:, 0], target[:, 0])) * (
        torch.maximum(pred[:, 3], target[:, 3]) + torch.maximum(pred[:, 1], target[:, 1]))
    return 1 - (iou - (enclosing - union) / (enclosing + _EPS))


def ltrb_iou_loss(
    pred: Tensor, target: Tensor, kind: BoxLoss = "giou", *, smoothing: float = 0.0, unit: Tensor | None = None
) -> Tensor:
    """Per-element IoU-family loss between two sets of distances from the same points.

    pred, target: [N, 4] ltrb (>= 0) -> [N]. Both boxes are placed around the origin, which is
    exact for every member of the family (each is translation invariant) and keeps coordinates small.
    ``iou`` is UnitBox's -ln(IoU) used by the FCOS paper; ``linear_iou`` is 1 - IoU.

    ``smoothing`` > 0 is the official FCOS ``IOULoss``: IoU = (I + smoothing) / (U + smoothing) with
    I and U computed on distances divided by ``unit`` ([N], the level's stride; None = 1), i.e.
    + smoothing * stride^2 in pixels. It applies to ``iou``, ``linear_iou`` and ``giou`` (the official
    code's three); ``diou`` and ``ciou`` are torchvision's, unsmoothed.
    """
    if smoothing and kind in ("iou", "linear_iou", "giou"):
        return _official_iou_loss(pred, target, kind, smoothing, unit)
    pred_boxes = torch.cat((-pred[:, :2], pred[:, 2:]), dim=1)
    target_boxes = torch.cat((-target[:, :2], target[:, 2:]), dim=1)
    if kind == "giou":
        return _giou_loss_ltrb(pred, target)
    if kind == "diou":
        return distance_box_iou_loss(pred_boxes, target_boxes, reduction="none", eps=_EPS)
    if kind == "ciou":
        # CIoU's aspect term atan(w / h) is 0/0 for a predicted box of zero size (relu regression
        # predicts exactly 0 for whole boxes at the start) and its gradient has -w / h^2: floor each
        # predicted side at eps (mmdetection adds eps to the heights for the same reason).
        floored = pred.clamp(min=_EPS)
        pred_boxes = torch.cat((-floored[:, :2], floored[:, 2:]), dim=1)
        return complete_box_iou_loss(pred_boxes, target_boxes, reduction="none", eps=_EPS)
    # Both boxes contain the point, so the intersection is min-sum along each axis.
    inter = (torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])) * (
        torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])
    )
    area_pred = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    area_target = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    iou = inter / (area_pred + area_target - inter + _EPS)
    if kind == "iou":
        return -iou.clamp(min=_EPS).log()
    if kind == "linear_iou":
        return 1.0 - iou
    raise ValueError(f"unknown box loss {kind!r}; choose from iou, linear_iou, giou, diou, ciou")


def _official_iou_loss(pred: Tensor, target: Tensor, kind: BoxLoss, smoothing: float, unit: Tensor | None) -> Tensor:
    """fcos_core/layers/iou_loss.py (tianzhi0549/FCOS) on ``unit``-normalised distances: the official
    code regresses distances divided by the stride (NORM_REG_TARGETS) and feeds those to IOULoss."""
    if unit is not None:
        pred, target = pred / unit[:, None], target / unit[:, None]
    area_pred = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    area_target = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    low, high = torch.minimum(pred, target), torch.maximum(pred, target)
    inter = (low[:, 0] + low[:, 2]) * (low[:, 1] + low[:, 3])
    enclosing = (high[:, 0] + high[:, 2]) * (high[:, 1] + high[:, 3]) + _EPS  # official: + 1e-7, no smoothing
    union = area_pred + area_target - inter
    iou = (inter + smoothing) / (union + smoothing)
    if kind == "iou":
        return -iou.log()
    if kind == "linear_iou":
        return 1.0 - iou
    return 1.0 - iou + (enclosing - union) / enclosing

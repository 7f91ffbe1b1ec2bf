"""Decoding: head outputs -> per-image detections (boxes in the resized input image's pixels).

score -> threshold -> top-k per level -> decode -> clip -> drop small -> class-aware NMS -> top-N.
Candidates of the whole batch are selected at once: a single comparison on the raw logits finds the
few entries that can pass the threshold (sigmoid is monotone, and sqrt(cls * ctr) > t needs cls > t^2),
so the dense [B, P, C] tensor is never passed through sigmoid. NMS runs per image, class-aware,
with the semantics of ``torchvision.ops.batched_nms`` (see :func:`class_aware_nms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import nms

from fcos.config import DecodeConfig
from fcos.ops.boxes import clip_boxes, ltrb_to_boxes
from fcos.structures import HeadOutputs, Points

__all__ = ["Decoder", "Detections", "class_aware_nms"]

Detections = dict[str, Tensor]  # {"boxes": [N, 4] xyxy, "scores": [N], "labels": [N] int64}


class Decoder:
    def __init__(self, config: DecodeConfig) -> None:
        self.config = config

    @torch.no_grad()
    def __call__(self, outputs: HeadOutputs, points: Points, image_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        cfg = self.config
        logits = outputs.cls_logits
        num_images, num_points, num_classes = logits.shape
        # Cheap superset test on the logits, then the exact test on the survivors.
        need = _logit(cfg.score_thresh if cfg.threshold_on == "cls" else cfg.score_thresh**2)
        rows = logits.reshape(-1, num_classes)  # [B * P, C]
        # Points first (one max over classes), then the classes of the few surviving points.
        live = torch.nonzero(rows.amax(dim=1) > need).squeeze(1)
        hits = torch.nonzero(rows[live] > need)
        row, label = live[hits[:, 0]], hits[:, 1]
        image, point = row // num_points, row % num_points
        cls_prob = torch.sigmoid(rows[row, label].float())
        scores = torch.sqrt(cls_prob * torch.sigmoid(outputs.centerness[image, point].float()))
        keep = (cls_prob if cfg.threshold_on == "cls" else scores) > cfg.score_thresh
        image, point, label, scores = image[keep], point[keep], label[keep], scores[keep]

        image, point, label, scores = self._topk_per_level(points, image, point, label, scores, num_images)

        boxes = ltrb_to_boxes(points.xy[point], outputs.box_ltrb[image, point].float())
        sizes = torch.tensor(image_sizes, dtype=boxes.dtype, device=boxes.device)
        boxes = clip_boxes(boxes, sizes[image])
        if cfg.min_box_size > 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            big = (wh >= cfg.min_box_size).all(dim=1)
            image, label, scores, boxes = image[big], label[big], scores[big], boxes[big]
        return self._nms_per_image(image, boxes, scores, label, num_images)

    def _topk_per_level(
        self, points: Points, image: Tensor, point: Tensor, label: Tensor, scores: Tensor, num_images: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Keep the ``topk_per_level`` best candidates of every (image, level); returns them ordered
        by image, then level, then descending score (the order the reference concatenates them in)."""
        starts = torch.tensor([lv.start for lv in points.levels[1:]], device=point.device)
        segment = image * len(points.levels) + torch.bucketize(point, starts, right=True)
        # One sort on (segment ascending, score descending): scores lie in (0, 1], so in float64
        # 2 * segment - score orders both exactly.
        order = torch.argsort(segment.double() * 2 - scores.double(), stable=True)
        segment = segment[order]
        counts = torch.bincount(segment, minlength=num_images * len(points.levels))
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(order), device=order.device) - first[segment]
        order = order[rank < self.config.topk_per_level]
        return image[order], point[order], label[order], scores[order]

    def _nms_per_image(
        self, image: Tensor, boxes: Tensor, scores: Tensor, labels: Tensor, num_images: int
    ) -> list[Detections]:
        counts = torch.bincount(image, minlength=num_images).tolist()
        results = []
        for boxes_i, scores_i, labels_i in zip(boxes.split(counts), scores.split(counts), labels.split(counts), strict=True):
            keep = class_aware_nms(boxes_i, scores_i, labels_i, self.config.nms_thresh)[: self.config.max_detections]
            results.append({"boxes": boxes_i[keep], "scores": scores_i[keep], "labels": labels_i[keep]})
        return results


def class_aware_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, group_size: int = 1024) -> Tensor:
    """``torchvision.ops.batched_nms`` semantics (boxes of different classes never suppress each other)
    in a few kernel calls.

    Classes are moved apart by coordinate offsets, in float64 so the shift costs no precision. One call
    over all boxes wastes IoU tests between classes (n x kept), one call per class wastes Python round
    trips (torchvision above 1000 boxes): whole classes are packed into groups of ~``group_size`` boxes,
    one call each. boxes: [N, 4] xyxy (>= 0), scores: [N], labels: [N] -> kept indices, decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes64 = boxes.double() + (labels.double() * (boxes.max().double() + 1))[:, None]
    scores64 = scores.double()
    if len(boxes) <= group_size:
        return nms(boxes64, scores64, iou_threshold)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels).tolist()
    keep, start, end = [], 0, 0
    for count in counts:  # close a group when adding the next class would pass group_size
        if end > start and end - start + count > group_size:
            group = order[start:end]
            keep.append(group[nms(boxes64[group], scores64[group], iou_threshold)])
            start = end
        end += count
    group = order[start:end]
    keep.append(group[nms(boxes64[group], scores64[group], iou_threshold)])
    keep = torch.cat(keep)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def _logit(p: float) -> float:
    """Inverse sigmoid, nudged down by a relative 1e-6 so rounding can only add candidates."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    value = math.log(p / (1 - p))
    return value - 1e-6 * max(1.0, abs(value))

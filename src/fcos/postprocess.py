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
from fcos.model.head import HeadOutputs
from fcos.model.points import Points
from fcos.ops.boxes import clip_boxes, ltrb_to_boxes

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
        need = cfg.score_thresh if cfg.threshold_on == "cls" else cfg.score_thresh**2
        flat = torch.nonzero(logits.reshape(-1) > _logit(need)).squeeze(1)
        image, rest = flat // (num_points * num_classes), flat % (num_points * num_classes)
        point, label = rest // num_classes, rest % num_classes
        cls_prob = torch.sigmoid(logits.reshape(-1)[flat].float())
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


def class_aware_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """``torchvision.ops.batched_nms`` in one kernel call: classes are moved apart by offsets, in float64
    so the shift costs no precision (torchvision's own shift is float32; above 1000 boxes it loops over
    classes instead, ~2x slower for a trained detector's candidates, where most boxes get suppressed).

    boxes: [N, 4] xyxy (>= 0), scores: [N], labels: [N] -> indices kept, by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes64 = boxes.double()
    offsets = labels.double() * (boxes64.max() + 1)
    return nms(boxes64 + offsets[:, None], scores.double(), iou_threshold)


def _logit(p: float) -> float:
    """Inverse sigmoid, nudged down by a relative 1e-6 so rounding can only add candidates."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    value = math.log(p / (1 - p))
    return value - 1e-6 * max(1.0, abs(value))

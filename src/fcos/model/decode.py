"""Decoding: head outputs -> per-image detections (boxes in the resized input image's pixels).

score -> threshold -> top-k per level -> decode -> clip -> drop small -> class-aware NMS -> top-N.

Two paths share one core (:func:`score_candidates`, :func:`decode_boxes`):

- :class:`Decoder` (PyTorch inference): candidates of the whole batch are selected at once, a single
  comparison on the raw logits finds the few entries that can pass the threshold (sigmoid is monotone,
  and sqrt(cls * ctr) > t needs cls > t^2), so the dense [B, P, C] tensor is never passed through
  sigmoid. NMS runs per image, class-aware, with the semantics of ``torchvision.ops.batched_nms``
  (see :func:`class_aware_nms`).
- :func:`decode_dense` (exported graphs): tensor-only and static-shape, so it traces into ONNX (and any
  later format); the NMS step is the graph's own (:mod:`fcos.export.graph`).
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

__all__ = ["INVALID_SCORE", "Decoder", "Detections", "class_aware_nms", "decode_boxes", "decode_dense", "score_candidates"]

Detections = dict[str, Tensor]  # {"boxes": [N, 4] xyxy, "scores": [N], "labels": [N] int64}
INVALID_SCORE = -1.0  # score of masked candidates in the dense path; every real score is >= 0


def score_candidates(cls_logits: Tensor, centerness: Tensor, config: DecodeConfig) -> tuple[Tensor, Tensor]:
    """Detection scores sqrt(sigmoid(cls) * sigmoid(ctr)) and the threshold test, for logits of any
    (broadcastable) shape. Returns (scores, passed)."""
    cls_prob = torch.sigmoid(cls_logits)
    scores = torch.sqrt(cls_prob * torch.sigmoid(centerness))
    passed = (cls_prob if config.threshold_on == "cls" else scores) > config.score_thresh
    return scores, passed


def decode_boxes(xy: Tensor, ltrb: Tensor, image_hw: Tensor, min_box_size: float) -> tuple[Tensor, Tensor | None]:
    """Points [..., 2] + distances [..., 4] -> xyxy boxes clipped to ``image_hw`` [..., 2] (h, w), and
    the mask of boxes at least ``min_box_size`` wide and high (None when ``min_box_size`` is 0)."""
    boxes = clip_boxes(ltrb_to_boxes(xy, ltrb), image_hw)
    if min_box_size <= 0:
        return boxes, None
    return boxes, ((boxes[..., 2:] - boxes[..., :2]) >= min_box_size).all(-1)


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
        scores, keep = score_candidates(rows[row, label].float(), outputs.centerness[image, point].float(), cfg)
        image, point, label, scores = image[keep], point[keep], label[keep], scores[keep]

        image, point, label, scores = self._topk_per_level(points, image, point, label, scores, num_images)

        sizes = torch.tensor(image_sizes, dtype=torch.float32, device=logits.device)
        boxes, big = decode_boxes(points.xy[point], outputs.box_ltrb[image, point].float(), sizes[image], cfg.min_box_size)
        if big is not None:
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


def decode_dense(
    outputs: HeadOutputs, points: Points, image_sizes: Tensor, num_classes: int, config: DecodeConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Tensor-only, static-shape :class:`Decoder` up to (excluding) NMS: traceable for export.

    Args:
        outputs: head outputs (cls_logits [B, P, C], box_ltrb [B, P, 4], centerness [B, P]).
        points: the points of ``outputs`` (sizes may be traced).
        image_sizes: [B, 2] (h, w) float the boxes are clipped to.

    Returns:
        boxes [B, L*K, 4], scores [B, L*K] (``INVALID_SCORE`` where masked), labels [B, L*K] int64 (-1
        where masked), with K = ``topk_per_level``: per level, the K best scores that pass the threshold,
        padded.
    """
    k = config.topk_per_level
    all_xy, all_ltrb, all_scores, all_labels = [], [], [], []
    for level in points.levels:
        start, stop = level.start, level.stop
        scores, passed = score_candidates(outputs.cls_logits[:, start:stop], outputs.centerness[:, start:stop, None], config)
        flat = torch.where(passed, scores, INVALID_SCORE).flatten(1)  # [B, P_l * C]
        # K padding entries make top-k valid for levels with fewer than K (point, class) pairs.
        flat = torch.cat((flat, torch.full_like(flat[:, :1], INVALID_SCORE).expand(-1, k)), 1)
        top_scores, top_idx = flat.topk(k, dim=1)  # [B, K], descending
        point = torch.clamp(top_idx // num_classes, max=level.size - 1)  # padding entries: any valid index
        all_ltrb.append(torch.gather(outputs.box_ltrb[:, start:stop], 1, point[..., None].expand(-1, -1, 4)))  # [B, K, 4]
        all_xy.append(points.xy[start:stop][point])  # [B, K, 2]
        all_scores.append(top_scores)
        all_labels.append(top_idx % num_classes)
    scores, labels = torch.cat(all_scores, 1), torch.cat(all_labels, 1)
    boxes, big = decode_boxes(torch.cat(all_xy, 1), torch.cat(all_ltrb, 1), image_sizes[:, None, :], config.min_box_size)
    if big is not None:
        scores = torch.where(big, scores, INVALID_SCORE)
    return boxes, scores, torch.where(scores >= 0, labels, -1)


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

"""Ground-truth assignment: which box (if any) each feature-map point regresses.

Naming: B images, M ground-truth boxes per image (padded, ``valid`` marks real ones), P points,
K candidate points per box. Rules (FCOS paper Sec. 3.1-3.2 and the official code):

1. A point is a candidate for a box if it lies strictly inside the box and, with center sampling,
   within ``radius * stride`` of the box centre on both axes (the centre region clipped to the box).
2. Its level must be responsible for the box's scale: max(l, t, r, b) within the level's size range.
3. A point that is a candidate for several boxes takes the one with the smallest area
   (ties: the lower box index).

Instead of the dense [B, P, M] comparison, each box only tests the points of a fixed-size window
per level that provably contains every point able to pass rules 1-2 (a point passing them is
within radius * stride of the centre, or within 2 * upper size bound of the box sides). The exact
same tests are then applied, so the result equals the dense rule while the work is O(B * M * K)
with K ~ 125 for center sampling; windows are processed in chunks of at most ``max_pairs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fcos.config import AssignConfig
from fcos.ops.boxes import box_area, boxes_to_ltrb, centerness_from_ltrb
from fcos.structures import LevelGrid, Points

__all__ = ["Assignment", "assign_targets", "stack_targets"]

_NO_MATCH = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


@dataclass
class Assignment:
    labels: Tensor  # [B, P] int64 class index, -1 = background
    box_targets: Tensor  # [B, P, 4] ltrb in input pixels, 0 for background
    centerness: Tensor  # [B, P] centerness target (paper Eq. 3), 0 for background
    matched_index: Tensor  # [B, P] int64 index of the matched box in [0, M), -1 = background
    num_degenerate: Tensor | int  # valid boxes ignored for zero or negative width/height (0-dim int64: no host sync)

    @property
    def positive(self) -> Tensor:
        """[B, P] bool foreground mask."""
        return self.matched_index >= 0


def stack_targets(targets: Sequence[dict[str, Tensor]], device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Pad per-image targets to boxes [B, M, 4] float32, labels [B, M] int64, valid [B, M] bool."""
    device = device or (targets[0]["boxes"].device if targets else torch.device("cpu"))
    num = max((len(t["boxes"]) for t in targets), default=0)
    boxes = torch.zeros((len(targets), num, 4), dtype=torch.float32, device=device)
    labels = torch.full((len(targets), num), -1, dtype=torch.int64, device=device)
    valid = torch.zeros((len(targets), num), dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        n = len(target["boxes"])
        boxes[i, :n] = target["boxes"].to(device, torch.float32)
        labels[i, :n] = target["labels"].to(device, torch.int64)
        valid[i, :n] = True
    return boxes, labels, valid


@torch.no_grad()
def assign_targets(
    points: Points, boxes: Tensor, labels: Tensor, valid: Tensor | None, config: AssignConfig
) -> Assignment:
    """Assign padded ground truth to points.

    Args:
        points: the points of all levels (P in total) of the padded input.
        boxes: [B, M, 4] xyxy in input pixels. labels: [B, M] int64. valid: [B, M] bool or None (all).
    Returns:
        :class:`Assignment` with per-point targets.
    """
    if len(config.size_ranges) != len(points.levels):
        raise ValueError(f"{len(config.size_ranges)} size ranges for {len(points.levels)} levels")
    boxes = boxes.float()
    num_images, num_boxes = boxes.shape[:2]
    num_points = points.num_points
    if valid is None:
        valid = torch.ones(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
    finite = torch.isfinite(boxes).all(dim=-1)
    degenerate = valid & finite & ((boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1]))
    rank, rankable = _rank(boxes, config.tie_break)
    usable = valid & finite & ~degenerate & rankable

    # best[b * P + p] = (rank << 32) | m of the preferred box; the extra last slot swallows non-matches.
    best = torch.full((num_images * num_points + 1,), _NO_MATCH, dtype=torch.int64, device=boxes.device)
    windows = [_window(level, config, lo_hi) for level, lo_hi in zip(points.levels, config.size_ranges, strict=True)]
    per_box = sum(ky * kx for ky, kx in windows)
    chunk = max(1, config.max_pairs // max(1, num_images * per_box))
    for m0 in range(0, num_boxes, chunk):
        sl = slice(m0, min(m0 + chunk, num_boxes))
        code = (rank[:, sl] << 32) | torch.arange(sl.start, sl.stop, device=boxes.device)
        for level, lo_hi, window in zip(points.levels, config.size_ranges, windows, strict=True):
            slot = _candidates(level, lo_hi, window, boxes[:, sl], usable[:, sl], config, num_points)
            best.scatter_reduce_(0, slot.flatten(), code[:, :, None].expand_as(slot).flatten(), "amin")

    best = best[:-1].view(num_images, num_points)
    matched = torch.where(best == _NO_MATCH, -1, best & _LOW32)
    return _targets(points, boxes, labels, matched, degenerate.sum())


def _rank(boxes: Tensor, tie_break: str) -> tuple[Tensor, Tensor]:
    """Per-box preference key as a non-negative int64 (smaller wins) and whether the box can match.

    Non-negative float32 values order like their bit patterns, so the key packs exactly.
    """
    area = box_area(boxes).nan_to_num(0.0)
    if tie_break == "min_area":
        return area.clamp(min=0).view(torch.int32).long(), torch.ones_like(area, dtype=torch.bool)
    if tie_break == "torchvision":
        # torchvision maximises float32 (1e8 - area) and drops keys below 1e-5.
        key = 1e8 - area
        rankable = key >= 1e-5
        key_bits = key.clamp(min=0, max=torch.finfo(torch.float32).max).view(torch.int32).long()
        return 0x7F7FFFFF - key_bits, rankable
    raise ValueError(f"unknown tie_break {tie_break!r}")


def _window(level: LevelGrid, config: AssignConfig, lo_hi: tuple[float, float]) -> tuple[int, int]:
    """(rows, cols) of the per-box window: enough points to cover any interval that can match."""
    spans = []
    if config.center_sampling_radius > 0:
        spans.append(2 * config.center_sampling_radius * level.stride)
    if math.isfinite(lo_hi[1]):
        spans.append(2 * lo_hi[1])  # a box wider than 2 * hi puts every inside point beyond hi
    span = min(spans) if spans else math.inf
    rows = level.height if not math.isfinite(span) else min(level.height, int(span // level.step_y) + 2)
    cols = level.width if not math.isfinite(span) else min(level.width, int(span // level.step_x) + 2)
    return rows, cols


def _axis(
    lo: Tensor, hi: Tensor, center: Tensor, count: int, size: int, step: float, offset: float, radius: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One axis of the window: grid indices [B, M, k], inside(+center) mask, max(side distances)."""
    start = torch.floor((lo - offset) / step) if radius <= 0 else torch.floor((torch.maximum(lo, center - radius) - offset) / step)
    start = start.nan_to_num(0).clamp(0, size - count).long()
    index = start[..., None] + torch.arange(count, device=lo.device)
    coord = index.to(lo.dtype) * step + offset
    near, far = coord - lo[..., None], hi[..., None] - coord
    ok = (near > 0) & (far > 0)
    if radius > 0:
        ok &= (coord - center[..., None]).abs() < radius
    return index, ok, torch.maximum(near, far)


def _candidates(
    level: LevelGrid,
    lo_hi: tuple[float, float],
    window: tuple[int, int],
    boxes: Tensor,
    usable: Tensor,
    config: AssignConfig,
    num_points: int,
) -> Tensor:
    """Flat slots b * P + p of the (box, point) pairs passing the rules, [B, M, K]; others -> B * P."""
    rows, cols = window
    x0, y0, x1, y1 = boxes.unbind(-1)
    radius = config.center_sampling_radius * level.stride
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ix, okx, dx = _axis(x0, x1, cx, cols, level.width, level.step_x, level.offset_x, radius)
    iy, oky, dy = _axis(y0, y1, cy, rows, level.height, level.step_y, level.offset_y, radius)
    dist = torch.maximum(dx[..., None, :], dy[..., :, None])  # [B, M, rows, cols] max(l, t, r, b)
    lo, hi = lo_hi
    in_range = (dist >= lo) & (dist <= hi) if config.ranges_inclusive else (dist > lo) & (dist < hi)
    ok = okx[..., None, :] & oky[..., :, None] & in_range & usable[..., None, None]
    point = level.start + iy[..., :, None] * level.width + ix[..., None, :]
    image = torch.arange(boxes.shape[0], device=boxes.device).view(-1, 1, 1, 1) * num_points
    trash = boxes.shape[0] * num_points
    return torch.where(ok, image + point, trash).flatten(2)


def _targets(points: Points, boxes: Tensor, labels: Tensor, matched: Tensor, num_degenerate: Tensor) -> Assignment:
    positive = matched >= 0
    index = matched.clamp(min=0)
    if boxes.shape[1] == 0:  # nothing to gather from: every point is background
        gt = boxes.new_zeros((*matched.shape, 4))
        gt_labels = torch.full_like(matched, -1)
    else:
        gt = boxes.gather(1, index[..., None].expand(-1, -1, 4))
        gt_labels = labels.gather(1, index)
    ltrb = boxes_to_ltrb(points.xy.to(boxes.dtype)[None], gt)
    ltrb = torch.where(positive[..., None], ltrb, 0.0)
    centerness = torch.where(positive, centerness_from_ltrb(ltrb), 0.0)
    return Assignment(
        labels=torch.where(positive, gt_labels, -1),
        box_targets=ltrb,
        centerness=centerness,
        matched_index=matched,
        num_degenerate=num_degenerate,
    )

"""Assignment: hand-computed cases, edge cases, and equality with a dense transcription of the rules."""

from __future__ import annotations

import math

import pytest
import torch

from fcos.config import STRIDES, AssignConfig, PointsConfig
from fcos.model.assign import assign_targets, stack_targets
from fcos.model.points import make_points
from fcos.structures import Points

OFFICIAL = AssignConfig()
INSIDE = AssignConfig(center_sampling_radius=0.0)
TV = AssignConfig(ranges_inclusive=False, tie_break="torchvision")


def grid(height: int, width: int, cfg: PointsConfig = PointsConfig()) -> Points:
    """Points for a padded input of height x width (both multiples of 32) with P3..P7 shapes."""
    shapes, h, w = [], height // 8, width // 8
    for _ in STRIDES:
        shapes.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return make_points(shapes, STRIDES, (height, width), cfg)


def assign(points, boxes, labels=None, cfg=OFFICIAL, valid=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(1, -1, 4)
    labels = torch.zeros(boxes.shape[:2], dtype=torch.int64) if labels is None else torch.as_tensor([labels])
    return assign_targets(points, boxes, labels, valid, cfg)


def positives(points, result, image=0):
    """{(x, y): (matched index, ltrb tuple)} of the positive points of one image."""
    out = {}
    for p in torch.nonzero(result.matched_index[image] >= 0).flatten().tolist():
        x, y = points.xy[p].tolist()
        out[(x, y)] = (int(result.matched_index[image, p]), tuple(result.box_targets[image, p].tolist()))
    return out


# --- hand-computed cases ------------------------------------------------------------------------

def test_center_sampling_single_box_hand_computed():
    # Box [0, 0, 100, 100]: centre (50, 50); radius 1.5 * 8 = 12 at P3 keeps points with |x - 50| < 12.
    # P3 points sit at 4 + 8k: 44, 52, 60 on each axis -> 9 points. Their max(l,t,r,b) is at most
    # max(60, 100 - 60) = 60 <= 64, so P3 is responsible for all 9.
    # P4 points (8 + 16k, radius 24): 40, 56, 72. max(x, 100 - x) is 60, 56, 72: only points with a
    # coordinate 72 reach [64, 128] -> (72, 40), (72, 56), (72, 72), (40, 72), (56, 72).
    # P5 points (16 + 32k, radius 48): 16, 48, 80 give max 84, 52, 80 < 128: none.
    pts = grid(128, 128)
    res = assign(pts, [[0, 0, 100, 100]], [2])
    pos = positives(pts, res)
    p3 = [(x, y) for x in (44.0, 52.0, 60.0) for y in (44.0, 52.0, 60.0)]
    p4 = [(72.0, 40.0), (72.0, 56.0), (72.0, 72.0), (40.0, 72.0), (56.0, 72.0)]
    assert sorted(pos) == sorted(p3 + p4)
    assert pos[(44.0, 52.0)] == (0, (44.0, 52.0, 56.0, 48.0))
    p = (pts.xy == torch.tensor([52.0, 52.0])).all(1).nonzero().item()
    # centerness = sqrt(min(52,48)/max(52,48) * min(52,48)/max(52,48)) = 48/52
    assert res.centerness[0, p].item() == pytest.approx(48 / 52, rel=1e-6)
    assert res.labels[0, p].item() == 2
    assert int((res.labels >= 0).sum()) == 14 and int((res.labels == -1).sum()) == pts.num_points - 14


def test_inside_box_rule_without_center_sampling():
    # Without center sampling every P3 point strictly inside [10, 10, 50, 30] is positive:
    # x in {12, 20, 28, 36, 44}, y in {12, 20, 28} -> 15 points, all with max distance < 64.
    pts = grid(64, 64)
    pos = positives(pts, assign(pts, [[10, 10, 50, 30]], cfg=INSIDE))
    assert sorted(pos) == sorted((float(x), float(y)) for x in (12, 20, 28, 36, 44) for y in (12, 20, 28))
    assert pos[(12.0, 12.0)][1] == (2.0, 2.0, 38.0, 18.0)


def test_point_inside_two_boxes_goes_to_smaller_area_then_lower_index():
    pts = grid(64, 64)
    # (28, 28) is inside both; areas 40*40=1600 (index 0) and 20*20=400 (index 1): the smaller wins.
    res = assign(pts, [[8, 8, 48, 48], [20, 20, 40, 40]], [0, 1], cfg=INSIDE)
    pos = positives(pts, res)
    assert pos[(28.0, 28.0)][0] == 1 and pos[(12.0, 12.0)][0] == 0
    # Equal areas: the lower index wins on the shared points.
    res = assign(pts, [[10, 10, 30, 30], [18, 10, 38, 30]], [0, 1], cfg=INSIDE)
    pos = positives(pts, res)
    assert pos[(20.0, 20.0)][0] == 0 and pos[(28.0, 20.0)][0] == 0 and pos[(36.0, 20.0)][0] == 1


@pytest.mark.parametrize("inclusive", [True, False])
def test_size_range_boundary_exactly_64(inclusive):
    # Box [4, 4, 132, 132], P3 point (68, 68): l = t = r = b = 64 exactly. The official ranges are
    # inclusive ([-1, 64] at P3), torchvision's exclusive (64 < 64 is false).
    pts = grid(160, 160)
    cfg = AssignConfig(center_sampling_radius=0.0, ranges_inclusive=inclusive)
    pos = positives(pts, assign(pts, [[4, 4, 132, 132]], cfg=cfg))
    assert ((68.0, 68.0) in pos) is inclusive
    # The P4 point (72, 72) has max distance 68 in (64, 128): positive either way.
    assert (72.0, 72.0) in pos


@pytest.mark.parametrize("bound", [128, 256, 512])
def test_size_range_boundaries_on_upper_levels(bound):
    # A box whose centre point (on the level below) has max distance exactly `bound`.
    pts = grid(1152, 1152)
    level = STRIDES.index(bound // 8)  # 128 -> P4 (stride 16), 256 -> P5, 512 -> P6
    stride = STRIDES[level]
    cx = stride * 5 + stride // 2  # a point of that level
    box = [cx - bound, cx - bound, cx + bound, cx + bound]
    for inclusive in (True, False):
        cfg = AssignConfig(center_sampling_radius=0.0, ranges_inclusive=inclusive)
        pos = positives(pts, assign(pts, [box], cfg=cfg))
        assert ((float(cx), float(cx)) in pos) is inclusive


def test_tiny_box_smaller_than_stride():
    pts = grid(64, 64)
    # [10, 10, 14, 14] contains the P3 point (12, 12) with l = t = r = b = 2: centerness 1.
    res = assign(pts, [[10, 10, 14, 14]])
    pos = positives(pts, res)
    assert list(pos) == [(12.0, 12.0)] and pos[(12.0, 12.0)][1] == (2.0, 2.0, 2.0, 2.0)
    assert res.centerness.max().item() == pytest.approx(1.0)
    # [13, 13, 15, 15] contains no point at all: no positive (and no error).
    assert not positives(pts, assign(pts, [[13, 13, 15, 15]]))


def test_degenerate_padded_and_empty():
    pts = grid(64, 64)
    res = assign(pts, [[10, 10, 10, 30], [20, 20, 5, 40], [8, 8, 40, 40]], [0, 1, 2])
    assert res.num_degenerate == 2
    assert set(res.matched_index[res.matched_index >= 0].tolist()) == {2}
    valid = torch.tensor([[False, False, False]])
    res = assign(pts, [[10, 10, 10, 30], [20, 20, 5, 40], [8, 8, 40, 40]], [0, 1, 2], valid=valid)
    assert res.num_degenerate == 0 and (res.matched_index == -1).all() and (res.labels == -1).all()
    res = assign_targets(pts, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.int64), None, OFFICIAL)
    assert res.matched_index.shape == (2, pts.num_points) and (res.matched_index == -1).all()
    assert (res.box_targets == 0).all() and (res.centerness == 0).all()


def test_box_partly_outside_image_keeps_true_distances():
    pts = grid(64, 64)
    res = assign(pts, [[-20, -20, 30, 30]], cfg=INSIDE)
    pos = positives(pts, res)
    assert pos[(4.0, 4.0)][1] == (24.0, 24.0, 26.0, 26.0)
    assert min(x for x, _ in pos) == 4.0


def test_stack_targets_pads():
    boxes, labels, valid = stack_targets(
        [{"boxes": torch.ones(2, 4), "labels": torch.tensor([1, 2])}, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}]
    )
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[1, 2], [-1, -1]]
    assert valid.tolist() == [[True, True], [False, False]]


# --- equality with a dense transcription of the rules ------------------------------------------

def dense_reference(points: Points, boxes, labels, cfg: AssignConfig):
    """Per-image, per-(point, box) transcription of the rules; returns matched index [P]."""
    xy = points.xy
    strides = points.strides
    level = torch.cat([torch.full((lv.size,), i) for i, lv in enumerate(points.levels)])
    lo = torch.tensor([cfg.size_ranges[i][0] for i in level.tolist()])
    hi = torch.tensor([cfg.size_ranges[i][1] for i in level.tolist()])
    if len(boxes) == 0:
        return torch.full((len(xy),), -1)
    x, y = xy[:, 0:1], xy[:, 1:2]
    l, t, r, b = x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y
    ltrb = torch.stack([l, t, r, b], -1)  # [P, M, 4]
    ok = ltrb.min(-1).values > 0
    if cfg.center_sampling_radius > 0:
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        rad = (cfg.center_sampling_radius * strides)[:, None]
        ok &= ((xy[:, None, :] - centre[None]).abs().max(-1).values < rad)
    dist = ltrb.max(-1).values
    ok &= (dist >= lo[:, None]) & (dist <= hi[:, None]) if cfg.ranges_inclusive else (dist > lo[:, None]) & (dist < hi[:, None])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ok &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if cfg.tie_break == "torchvision":
        key = ok.float() * (1e8 - area)[None]
        val, idx = key.max(1)
        idx[val < 1e-5] = -1
        return idx
    key = torch.where(ok, area[None], math.inf)
    val, idx = key.min(1)
    idx[torch.isinf(val)] = -1
    return idx


def random_boxes(gen, n, height, width):
    """Mix of tiny, medium, huge, overlapping and partly-outside boxes."""
    kind = torch.randint(0, 4, (n,), generator=gen)
    size = torch.where(kind == 0, torch.rand(n, generator=gen) * 12 + 1,
                       torch.where(kind == 1, torch.rand(n, generator=gen) * 150 + 10, torch.rand(n, generator=gen) * 700 + 50))
    aspect = torch.exp(torch.randn(n, generator=gen) * 0.5)
    w, h = size * aspect.sqrt(), size / aspect.sqrt()
    cx = torch.rand(n, generator=gen) * (width + 40) - 20
    cy = torch.rand(n, generator=gen) * (height + 40) - 20
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    boxes[kind == 3] = boxes[kind == 3].round()  # integer coordinates hit the boundaries exactly
    return boxes


@pytest.mark.parametrize(
    "cfg,pcfg",
    [
        (OFFICIAL, PointsConfig()),
        (INSIDE, PointsConfig()),
        (AssignConfig(center_sampling_radius=2.5, ranges_inclusive=False), PointsConfig()),
        (TV, PointsConfig(offset=0.0, step_from_shape=True)),
        (AssignConfig(center_sampling_radius=0.0, tie_break="torchvision"), PointsConfig(offset=0.0, step_from_shape=True)),
    ],
)
def test_windowed_equals_dense_rules(cfg, pcfg):
    gen = torch.Generator().manual_seed(7)
    for height, width, n in [(800, 1088, 60), (320, 448, 200), (224, 160, 5), (416, 416, 0)]:
        pts = grid(height, width, pcfg)
        boxes = [random_boxes(gen, n, height, width), random_boxes(gen, max(n // 2, 1), height, width)]
        labels = [torch.randint(0, 5, (len(b),), generator=gen) for b in boxes]
        padded, lab, valid = stack_targets([{"boxes": b, "labels": lbl} for b, lbl in zip(boxes, labels)])
        res = assign_targets(pts, padded, lab, valid, cfg)
        for i, b in enumerate(boxes):
            expected = dense_reference(pts, b, labels[i], cfg)
            assert torch.equal(res.matched_index[i], expected), (height, width, n, i)
            pos = expected >= 0
            assert torch.equal(res.labels[i][pos], labels[i][expected[pos]])
        # batched equals per-image
        for i, b in enumerate(boxes):
            single = assign_targets(pts, b[None], labels[i][None], None, cfg)
            assert torch.equal(single.matched_index[0], res.matched_index[i])
            assert torch.equal(single.box_targets[0], res.box_targets[i])


def test_chunking_under_memory_budget_gives_same_result_for_1000_boxes():
    gen = torch.Generator().manual_seed(3)
    pts = grid(800, 1344)
    boxes = random_boxes(gen, 1000, 800, 1333)[None]
    labels = torch.randint(0, 80, (1, 1000), generator=gen)
    whole = assign_targets(pts, boxes, labels, None, AssignConfig(max_pairs=10**9))
    chunked = assign_targets(pts, boxes, labels, None, AssignConfig(max_pairs=5_000))
    assert torch.equal(whole.matched_index, chunked.matched_index)
    assert (whole.matched_index >= 0).sum() > 500
    inside = assign_targets(pts, boxes, labels, None, AssignConfig(center_sampling_radius=0.0, max_pairs=200_000))
    assert torch.equal(inside.matched_index[0], dense_reference(pts, boxes[0], labels[0], INSIDE))

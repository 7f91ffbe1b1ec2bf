import math

import pytest
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from fcos.ops.boxes import boxes_to_ltrb, centerness_from_ltrb, clip_boxes, ltrb_iou_loss, ltrb_to_boxes


def test_ltrb_round_trip():
    points = torch.rand(50, 2) * 100
    boxes = torch.cat([points - torch.rand(50, 2) * 30 - 0.1, points + torch.rand(50, 2) * 30 + 0.1], 1)
    ltrb = boxes_to_ltrb(points, boxes)
    assert (ltrb > 0).all()
    torch.testing.assert_close(ltrb_to_boxes(points, ltrb), boxes)


def test_centerness_hand_computed():
    # l=2, r=6 -> 2/6; t=3, b=3 -> 1; sqrt(1/3)
    assert centerness_from_ltrb(torch.tensor([2.0, 3.0, 6.0, 3.0])).item() == pytest.approx(math.sqrt(1 / 3))
    assert centerness_from_ltrb(torch.tensor([5.0, 5.0, 5.0, 5.0])).item() == 1.0


def test_iou_family_hand_computed():
    # pred 2x2 and target 4x4 around the same point: IoU = 4 / 16 = 0.25; the enclosing box is the
    # target (GIoU = IoU), the centres coincide (DIoU = IoU) and aspect ratios match (CIoU = IoU).
    pred, target = torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[2.0, 2, 2, 2]])
    assert ltrb_iou_loss(pred, target, "iou").item() == pytest.approx(-math.log(0.25), rel=1e-5)
    for kind in ("linear_iou", "giou", "diou", "ciou"):
        assert ltrb_iou_loss(pred, target, kind).item() == pytest.approx(0.75, rel=1e-5), kind
    # Disjoint-ish case for GIoU: pred l=0,t=0,r=2,b=2 (box [0,0,2,2]), target l=2,t=2,r=0,b=0 ([-2,-2,0,0]):
    # intersection 0, union 8, enclosing 16 -> GIoU = 0 - (16 - 8) / 16 = -0.5, loss 1.5.
    assert ltrb_iou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[2.0, 2, 0, 0]]), "giou").item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="unknown box loss"):
        ltrb_iou_loss(pred, target, "l1")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["iou", "linear_iou", "giou", "diou", "ciou"])
def test_iou_family_finite_for_zero_size_predictions(kind):
    # relu regression predicts exactly 0 for whole sides; targets of positives are > 0 but may be tiny
    pred = torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 3, 0], [5, 5, 5, 5]], requires_grad=True)
    target = torch.tensor([[2.0, 2, 2, 2], [1e-6, 1e-6, 1e-6, 1e-6], [3, 1, 2, 4], [0.5, 0.5, 0.5, 0.5], [1e-6, 2, 3, 1e-6]])
    loss = ltrb_iou_loss(pred, target, kind)
    assert torch.isfinite(loss).all(), loss
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all(), pred.grad


def test_iou_family_matches_torchvision_on_absolute_boxes():
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(200, 2, generator=gen) * 800
    pred = torch.rand(200, 4, generator=gen) * 100
    target = torch.rand(200, 4, generator=gen) * 100 + 0.5
    pb, tb = ltrb_to_boxes(points, pred), ltrb_to_boxes(points, target)
    for kind, fn in (("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss), ("ciou", complete_box_iou_loss)):
        torch.testing.assert_close(ltrb_iou_loss(pred, target, kind), fn(pb, tb, reduction="none"), rtol=1e-4, atol=1e-5)


def test_clip_boxes():
    boxes = torch.tensor([[-5.0, 3, 120, 90], [10, -1, 20, 200]])
    sizes = torch.tensor([[80.0, 100.0], [50.0, 15.0]])  # (h, w) per box
    assert clip_boxes(boxes, sizes).tolist() == [[0, 3, 100, 80], [10, 0, 15, 50]]


def test_official_smoothed_iou_hand_computed():
    # Official IOULoss on stride-normalised distances, IoU = (I + 1) / (U + 1).
    # pred 2x2 inside target 4x4 (units): I = 4, U = 16 -> IoU 5/17; enclosing = union -> GIoU = IoU.
    pred, target = torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[2.0, 2, 2, 2]])
    assert ltrb_iou_loss(pred, target, "iou", smoothing=1.0).item() == pytest.approx(-math.log(5 / 17), rel=1e-6)
    for kind in ("linear_iou", "giou"):
        assert ltrb_iou_loss(pred, target, kind, smoothing=1.0).item() == pytest.approx(12 / 17, rel=1e-6), kind
    # A zero-size prediction inside a 2x2 target: IoU = 1 / (4 + 1), no GIoU penalty (enclosing = target).
    assert ltrb_iou_loss(torch.zeros(1, 4), torch.ones(1, 4), "giou", smoothing=1.0).item() == pytest.approx(0.8)
    # Disjoint case (above): I 0, U 8, enclosing 16: GIoU = 1/9 - 8/16, loss 1 - 1/9 + 0.5.
    disjoint = ltrb_iou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[2.0, 2, 0, 0]]), "giou", smoothing=1.0)
    assert disjoint.item() == pytest.approx(1 - 1 / 9 + 0.5, rel=1e-6)


def _official_formula(pred, target, kind):
    """fcos_core/layers/iou_loss.py's arithmetic, written out term by term (inputs in stride units)."""
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    target_area, pred_area = (tl + tr) * (tt + tb), (pl + pr) * (pt + pb)
    w_i, h_i = torch.min(pl, tl) + torch.min(pr, tr), torch.min(pb, tb) + torch.min(pt, tt)
    g_w, g_h = torch.max(pl, tl) + torch.max(pr, tr), torch.max(pb, tb) + torch.max(pt, tt)
    enclosing = g_w * g_h + 1e-7
    union = target_area + pred_area - w_i * h_i
    ious = (w_i * h_i + 1.0) / (union + 1.0)
    return {"iou": -torch.log(ious), "linear_iou": 1 - ious, "giou": 1 - (ious - (enclosing - union) / enclosing)}[kind]


@pytest.mark.parametrize("kind", ["iou", "linear_iou", "giou"])
def test_official_smoothing_in_pixels_is_stride_squared(kind):
    gen = torch.Generator().manual_seed(0)
    stride = torch.tensor([8.0, 16, 32, 64, 128]).repeat(40)
    pred = torch.rand(200, 4, generator=gen) * stride[:, None] * 4
    target = torch.rand(200, 4, generator=gen) * stride[:, None] * 4 + 0.5
    ours = ltrb_iou_loss(pred, target, kind, smoothing=1.0, unit=stride)
    torch.testing.assert_close(ours, _official_formula(pred / stride[:, None], target / stride[:, None], kind))
    # The same in pixels: (I + s^2) / (U + s^2) per level.
    low, high = torch.minimum(pred, target), torch.maximum(pred, target)
    inter = (low[:, 0] + low[:, 2]) * (low[:, 1] + low[:, 3])
    union = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3]) + (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3]) - inter
    iou = (inter + stride**2) / (union + stride**2)
    if kind == "linear_iou":
        torch.testing.assert_close(ours, 1 - iou)
    elif kind == "iou":
        torch.testing.assert_close(ours, -iou.log())
    else:
        enclosing = (high[:, 0] + high[:, 2]) * (high[:, 1] + high[:, 3])
        torch.testing.assert_close(ours, 1 - iou + (enclosing - union) / enclosing)


def test_smoothing_leaves_diou_and_ciou_unsmoothed():
    pred, target = torch.tensor([[1.0, 1, 3, 1]]), torch.tensor([[2.0, 2, 2, 2]])
    for kind in ("diou", "ciou"):
        assert torch.equal(ltrb_iou_loss(pred, target, kind, smoothing=1.0), ltrb_iou_loss(pred, target, kind))

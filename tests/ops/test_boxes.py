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

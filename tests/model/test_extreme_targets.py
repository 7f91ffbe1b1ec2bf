"""Numerical safety of the training loss at the edges of the target distribution: no objects, only
tiny (1-4 px) objects, and thousands of objects on one image give finite losses and finite gradients,
under both presets (official: relu * stride regression, centerness-weighted; torchvision: exp
regression, positives-normalised) and every box loss. At random init the relu regression predicts
zero-size boxes, which CIoU's aspect-ratio term turned into NaN before it floored the sides."""

from __future__ import annotations

import pytest
import torch

from fcos import FCOS
from fcos.model.options import model_config_for

SIZE = 128  # = img_size: the images are not resized, so the boxes reach the assigner as given


CASES = [("official", "giou"), ("torchvision", "giou"), ("official", "iou"), ("official", "linear_iou"),
         ("official", "diou"), ("official", "ciou"), ("torchvision", "ciou")]


def model(preset, box_loss):
    torch.manual_seed(0)
    cfg = model_config_for(3, preset=preset, backbone="resnet18", img_size=SIZE, fpn_channels=32, head_convs=1,
                           **{"loss.box_loss": box_loss})
    return FCOS(cfg).train()


def images(n):
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(3, SIZE, SIZE, generator=gen) for _ in range(n)]


def random_boxes(n, min_side, max_side, seed=0):
    gen = torch.Generator().manual_seed(seed)
    side = min_side + torch.rand(n, 2, generator=gen) * (max_side - min_side)
    corner = torch.rand(n, 2, generator=gen) * (SIZE - side)
    return {"boxes": torch.cat([corner, corner + side], 1), "labels": torch.randint(0, 3, (n,), generator=gen)}


def tiny_boxes():
    """1-4 px boxes: random ones (mostly between point centres, so no positive), ones around a point
    centre (official points sit at stride / 2 + k * stride: 4, 12, 20 ... on P3), and ones whose edge
    passes exactly through a point centre (distance 0: not strictly inside)."""
    boxes = random_boxes(40, 1.0, 4.0)
    around = torch.tensor([[3.5, 3.5, 4.5, 4.5], [11.0, 19.0, 13.0, 21.0], [58.0, 58.0, 62.0, 62.0],
                           [99.9, 99.9, 100.1, 100.1], [4.0, 4.0, 5.0, 5.0], [20.0, 12.0, 24.0, 16.0]])
    return {"boxes": torch.cat([boxes["boxes"], around]), "labels": torch.cat([boxes["labels"], torch.tensor([0, 1, 2, 0, 1, 2])])}


def empty():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def loss_and_gradients(net, targets):
    losses = net(images(len(targets)), targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    for name, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), (name, value)
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    bad = [n for n, g in grads.items() if g is not None and not torch.isfinite(g).all()]
    assert not bad, bad
    assert grads["head.cls_logits.weight"].abs().sum() > 0
    return losses, grads


@pytest.mark.parametrize(("preset", "box_loss"), CASES)
def test_no_objects(preset, box_loss):
    net = model(preset, box_loss)
    losses, grads = loss_and_gradients(net, [empty(), empty()])
    assert net.last_stats["num_positive"] == 0
    assert losses["bbox_regression"] == 0 and losses["bbox_ctrness"] == 0 and losses["classification"] > 0
    assert grads["head.box_pred.weight"] is None or not grads["head.box_pred.weight"].any()


@pytest.mark.parametrize(("preset", "box_loss"), CASES)
def test_only_tiny_objects(preset, box_loss):
    net = model(preset, box_loss)
    losses, grads = loss_and_gradients(net, [tiny_boxes(), empty()])
    assert net.last_stats["num_positive"] > 0  # the boxes around point centres are learnt from
    assert losses["bbox_regression"] > 0 and grads["head.box_pred.weight"].abs().sum() > 0


@pytest.mark.parametrize(("preset", "box_loss"), CASES)
def test_three_thousand_objects_on_one_image(preset, box_loss):
    net = model(preset, box_loss)
    crowd = random_boxes(3000, 2.0, 120.0, seed=1)
    losses, grads = loss_and_gradients(net, [crowd, random_boxes(3, 20.0, 60.0, seed=2)])
    assert net.last_stats["num_positive"] > 100
    assert losses["bbox_regression"] > 0 and grads["head.box_pred.weight"].abs().sum() > 0

"""The FCOS detector end to end: interface, invariances, gradient flow and input validation."""

import math

import pytest
import torch

from fcos import FCOS, official


def tiny_model(**changes):
    cfg = official(num_classes=4, backbone="resnet18", **{"input.min_size": 160, "input.max_size": 256,
                                                           "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1, **changes})
    return FCOS(cfg)


def target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def test_training_losses_and_gradient_flow():
    model = tiny_model().train()
    images = [torch.rand(3, 160, 200), torch.rand(3, 180, 160)]
    targets = [target([[10, 10, 90, 120], [100, 20, 150, 60]], [0, 3]), target([[5, 5, 150, 170]], [2])]
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert model.last_stats["num_positive"] > 0
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing
    assert model.head.cls_logits.weight.grad.abs().sum() > 0 and model.backbone.trunk.conv1.weight.grad.abs().sum() > 0


def test_batch_without_objects_has_finite_losses():
    model = tiny_model().train()
    losses = model([torch.rand(3, 160, 160)] * 2, [target([], [])] * 2)
    assert losses["bbox_regression"] == 0 and losses["bbox_ctrness"] == 0 and torch.isfinite(losses["classification"])
    sum(losses.values()).backward()


def test_duplicated_image_batch_equals_single_image():
    # BatchNorm statistics over [a, a] equal those over [a], and the loss is normalised by positives.
    model = tiny_model().train()
    image = torch.rand(3, 160, 192)
    t = target([[10, 10, 90, 120], [30, 40, 150, 100]], [0, 3])
    one = model([image], [t])
    two = model([image, image], [t, t])
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-5, atol=1e-6)


def test_eval_detections_in_original_coordinates_and_batched_equals_single():
    model = tiny_model(**{"decode.score_thresh": 0.0, "decode.max_detections": 30}).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-3, 0)
    images = [torch.rand(3, 300, 500), torch.rand(3, 300, 500)]
    with torch.no_grad():
        batched = model(images)
        single = [model([im])[0] for im in images]
    for b, s in zip(batched, single):
        assert len(b["boxes"]) == 30
        torch.testing.assert_close(b["boxes"], s["boxes"], rtol=1e-4, atol=1e-3)
        assert torch.equal(b["labels"], s["labels"])
        # the model ran at 160x266 but boxes are in the 300x500 input's pixels
        assert b["boxes"][:, 2].max() <= 500 and b["boxes"][:, 3].max() <= 300 and b["boxes"].min() >= 0
        assert b["boxes"][:, 2].max() > 266
        assert b["labels"].dtype == torch.int64 and (b["scores"] <= 1).all()


def test_uint8_images_equal_float_images():
    model = tiny_model().eval()
    image = torch.randint(0, 256, (3, 160, 160), dtype=torch.uint8)
    with torch.no_grad():
        a = model([image])[0]
        b = model([image.float() / 255])[0]
    assert torch.equal(a["boxes"], b["boxes"])


@pytest.mark.parametrize(
    "images,targets,message",
    [
        ([], None, "non-empty list"),
        ([torch.rand(1, 160, 160)], None, r"shape \[3, H, W\]"),
        ([torch.rand(160, 160, 3)], None, r"shape \[3, H, W\]"),
        ([torch.randint(0, 5, (3, 160, 160), dtype=torch.int32)], None, "dtype torch.int32"),
        (["image.jpg"], None, "expected a torch.Tensor"),
        ([torch.rand(3, 160, 160)], [], "one target dict per image"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.rand(2, 4)}], "'boxes' and 'labels'"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.rand(2, 5), "labels": torch.zeros(2, dtype=torch.int64)}], r"shape \[N, 4\]"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.rand(2, 4), "labels": torch.zeros(3, dtype=torch.int64)}], "2 boxes but labels"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.rand(1, 4), "labels": torch.tensor([4])}], r"\[0, 4\)"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.rand(1, 4), "labels": torch.tensor([-1])}], r"\[0, 4\)"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.tensor([[0, 0, math.nan, 5]]), "labels": torch.tensor([1])}], "NaN"),
        ([torch.rand(3, 160, 160)], [{"boxes": torch.rand(1, 4), "labels": torch.tensor([0.5])}], "must be integers"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(images, targets, message):
    model = tiny_model().train()
    with pytest.raises(ValueError, match=message):
        model(images, targets)


def test_image_smaller_than_largest_stride_is_rejected():
    model = tiny_model(**{"input.min_size": 96, "input.max_size": 160}).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="smaller than the largest stride"):
        model([torch.rand(3, 50, 50)])  # -> 96 x 96
    with torch.no_grad():
        assert len(model([torch.rand(3, 50, 160)])) == 1  # -> 50 x 160: P7 still covers a full stride
        # 5x3000 -> 0.27 x 160 under torchvision's floor (its interpolate raises): 1 x 160, boxes inside
        (thin,) = model([torch.rand(3, 5, 3000)])
        assert thin["boxes"].shape[1] == 4 and bool((thin["boxes"][:, 3] <= 5).all())

    with pytest.raises(ValueError, match="targets are required"):
        tiny_model().train()([torch.rand(3, 160, 160)])

"""Outside pipelines in place of fcos's augmentations: torchvision transforms.v2 and Albumentations move
the boxes with the pixels, labels follow the boxes kept, the output is fcos's format."""

from __future__ import annotations

import pytest
import torch
from painted import assert_boxes_match_pixels, painted
from torchvision.transforms import v2

from fcos.config import InputConfig
from fcos.data.adapters import adapt
from fcos.data.pipeline import Augmentation, training_pipeline


def two_boxes():
    image, target = painted(100, 140, [10, 20, 60, 80], label=0)
    second, _ = painted(100, 140, [90, 30, 130, 70], label=1)
    image = image + second
    target["boxes"] = torch.tensor([[10.0, 20.0, 60.0, 80.0], [90.0, 30.0, 130.0, 70.0]])
    target["labels"] = torch.tensor([0, 1])
    return image, target


@pytest.mark.parametrize("seed", range(3))
def test_torchvision_v2_moves_boxes_with_pixels_and_sanitizes_labels(seed):
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomResizedCrop((96, 96), scale=(0.3, 1.0)),
                           v2.SanitizeBoundingBoxes(min_size=1)])
    image, target = two_boxes()
    torch.manual_seed(seed)
    out, new = adapt(pipeline)(image, target)
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 96, 96)
    assert type(new["boxes"]) is torch.Tensor and int(new["image_id"]) == 0
    assert len(new["boxes"]) + int(new["boxes_dropped"]) == 2
    assert_boxes_match_pixels(out, new, tol=1.5)


def test_torchvision_v2_uint8_output_and_other_box_formats():
    pipeline = v2.Compose([v2.ToDtype(torch.uint8, scale=True), v2.ConvertBoundingBoxFormat("CXCYWH"),
                           v2.RandomHorizontalFlip(p=1.0)])
    image, target = two_boxes()
    out, new = adapt(pipeline)(image, target)
    assert out.dtype == torch.float32 and out.max() <= 1.0
    assert new["boxes"].tolist() == [[80.0, 20.0, 130.0, 80.0], [10.0, 30.0, 50.0, 70.0]]
    assert_boxes_match_pixels(out, new)


def test_unsuitable_pipelines_are_refused_with_the_reason():
    from torchvision import transforms as v1

    with pytest.raises(TypeError, match="v1"):
        adapt(v1.Compose([v1.RandomHorizontalFlip()]))
    with pytest.raises(TypeError, match="callable"):
        adapt(42)
    image, target = two_boxes()
    with pytest.raises(ValueError, match="Normalize"):
        adapt(v2.Normalize([0.5] * 3, [0.1] * 3))(image, target)
    with pytest.raises(ValueError, match="labels"):
        adapt(lambda im, t: (im, {**t, "boxes": t["boxes"][:1]}))(image, target)


def test_plain_callable_is_clipped_and_counted():
    def shift(image, target):
        return image, {**target, "boxes": target["boxes"] + torch.tensor([100.0, 0.0, 100.0, 0.0])}

    image, target = two_boxes()
    out, new = adapt(shift)(image, target)
    assert new["boxes"].tolist() == [[110.0, 20.0, 140.0, 80.0]]  # the second moved fully outside: dropped
    assert new["labels"].tolist() == [0] and int(new["boxes_dropped"]) == 1


def test_custom_pipeline_is_followed_by_the_sizing():
    pipeline = training_pipeline(InputConfig(min_size=50, max_size=500), Augmentation(),
                                 custom=v2.RandomHorizontalFlip(p=1.0))
    image, target = two_boxes()
    out, new = pipeline(image, target)
    assert out.shape == (3, 50, 70)
    torch.testing.assert_close(new["boxes"], torch.tensor([[40.0, 10.0, 65.0, 40.0], [5.0, 15.0, 25.0, 35.0]]))


# ---------------------------------------------------------------------------------------- Albumentations
@pytest.fixture
def A():
    """Albumentations, or the test is skipped (the optional 'augment' extra: pip install 'fcos[augment]')."""
    return pytest.importorskip("albumentations", reason="the optional 'augment' extra is not installed")


@pytest.mark.parametrize("fmt", ["pascal_voc", "coco", "yolo", "albumentations"])
def test_albumentations_every_box_format_round_trips_and_flips(A, fmt):
    image, target = two_boxes()
    identity = A.Compose([A.NoOp()], bbox_params=A.BboxParams(format=fmt, label_fields=["class_labels"]))
    out, new = adapt(identity)(image, target)
    assert torch.equal(out, image)  # uint8 round trip of an image that was uint8 on disk
    torch.testing.assert_close(new["boxes"], target["boxes"], atol=1e-4, rtol=0)
    flip = A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=A.BboxParams(format=fmt))
    out, new = adapt(flip)(image, target)
    torch.testing.assert_close(new["boxes"], torch.tensor([[80.0, 20.0, 130.0, 80.0], [10.0, 30.0, 50.0, 70.0]]),
                               atol=1e-4, rtol=0)
    assert new["labels"].tolist() == [0, 1]
    assert_boxes_match_pixels(out, new)


@pytest.mark.parametrize("seed", range(3))
def test_albumentations_crop_keeps_labels_with_their_boxes(A, seed):
    compose = A.Compose([A.RandomCrop(70, 90), A.HorizontalFlip(p=0.5)],
                        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3),
                        seed=seed)
    image, target = two_boxes()
    out, new = adapt(compose)(image, target)
    assert out.shape == (3, 70, 90)
    assert len(new["boxes"]) + int(new["boxes_dropped"]) == 2
    assert_boxes_match_pixels(out, new, tol=1.5)


def test_albumentations_without_bbox_params_is_refused(A):
    with pytest.raises(ValueError, match="bbox_params"):
        adapt(A.Compose([A.HorizontalFlip()]))

"""Augmentations that move boxes: the boxes stay where the pixels went, inside the image, never
degenerate; cut boxes follow the stated rule; draws are per image and reproducible."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from painted import assert_boxes_match_pixels, painted, painted_extent

from fcos.config import InputConfig
from fcos.data.augment import Mosaic, ScaleJitterCrop, TileCrop, cut_boxes
from fcos.data.dataset import DetectionDataset
from fcos.data.layouts import load_annotations
from fcos.data.loader import build_loader
from fcos.data.pipeline import Augmentation, training_pipeline
from fcos.data.sampling import SeededSamples
from fcos.data.transforms import MultiScaleResize, RandomHorizontalFlip, Resize
from fcos.utils.flags import parse_fraction, parse_scale_range, parse_size_range


def test_cut_boxes_rule_by_hand():
    window = (10.0, 10.0, 50.0, 50.0)
    boxes = torch.tensor([
        [20.0, 20.0, 30.0, 30.0],  # inside: kept as it is
        [0.0, 20.0, 20.0, 30.0],  # half inside (area 200 -> 100)
        [49.5, 20.0, 60.0, 30.0],  # 0.5 px wide inside: degenerate
        [60.0, 60.0, 70.0, 70.0],  # outside
        [0.0, 0.0, 20.0, 20.0],  # a quarter inside (400 -> 100)
    ])
    clipped, keep = cut_boxes(boxes, window, min_visible=0.5)
    assert clipped[:2].tolist() == [[20.0, 20.0, 30.0, 30.0], [10.0, 20.0, 20.0, 30.0]]
    assert keep.tolist() == [True, True, False, False, False]
    assert cut_boxes(boxes, window, min_visible=0.25)[1].tolist() == [True, True, False, False, True]
    assert cut_boxes(boxes, window, min_visible=0.6)[1].tolist() == [True, False, False, False, False]
    assert cut_boxes(boxes, window, min_visible=0.01, min_side=11.0)[1].tolist() == [False] * 5


@pytest.mark.parametrize("seed", range(6))
def test_scale_jitter_crop_boxes_match_painted_pixels(seed):
    image, target = painted(120, 160, [30, 40, 110, 100], label=1)
    torch.manual_seed(seed)
    jitter = ScaleJitterCrop(0.3, 2.5, min_visible=0.2)
    out, new = jitter(image, target)
    assert out.shape == image.shape  # cropped or padded back to the input's size
    assert len(new["boxes"]) + int(new["boxes_dropped"]) == 1
    assert len(new["boxes"]) == 1  # the crop is box-aware: with one box in view it keeps it
    assert_boxes_match_pixels(out, new)


def test_scale_jitter_pads_with_the_fill_bottom_right():
    image, target = painted(100, 80, [10, 10, 30, 40], label=0)
    out, new = ScaleJitterCrop(0.5, 0.5, fill=(0.2, 0.3, 0.4))(image, target)
    assert out.shape == (3, 100, 80)
    assert torch.allclose(out[:, 50:, :], torch.tensor([0.2, 0.3, 0.4]).view(3, 1, 1))
    assert torch.allclose(out[:, :, 40:], torch.tensor([0.2, 0.3, 0.4]).view(3, 1, 1))
    assert new["boxes"].tolist() == [[5.0, 5.0, 15.0, 20.0]] and int(new["boxes_dropped"]) == 0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(h=st.integers(20, 200), w=st.integers(20, 200), n=st.integers(0, 8), seed=st.integers(0, 10_000),
       low=st.floats(0.1, 1.0), span=st.floats(0.0, 2.0), min_visible=st.floats(0.05, 1.0))
def test_scale_jitter_never_emits_boxes_outside_or_degenerate(h, w, n, seed, low, span, min_visible):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, 2, generator=g) * torch.tensor([w, h])
    boxes = torch.cat((xy.min(1).values, xy.max(1).values + 0.5), 1).minimum(torch.tensor([w, h, w, h]))
    target = {"boxes": boxes, "labels": torch.arange(n)}
    torch.manual_seed(seed)
    out, new = ScaleJitterCrop(low, low + span, min_visible=min_visible)(torch.rand(3, h, w), target)
    assert out.shape == (3, h, w)
    b = new["boxes"]
    assert (b >= 0).all() and (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all()
    assert ((b[:, 2:] - b[:, :2]) >= 1).all()
    assert len(b) == len(new["labels"]) and len(b) + int(new["boxes_dropped"]) == n
    assert set(new["labels"].tolist()) <= set(range(n))


def _mosaic_sources():
    """Four painted images of different sizes and colours; the mosaic loads them by record."""
    sizes = [(90, 120, [10, 20, 80, 70]), (60, 100, [5, 5, 60, 50]), (120, 90, [20, 30, 70, 110]), (80, 80, [0, 0, 50, 40])]
    return {i: painted(h, w, box, label=i, image_id=i) for i, (h, w, box) in enumerate(sizes)}


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_boxes_match_painted_pixels(seed):
    sources = _mosaic_sources()
    mosaic = Mosaic([1, 2, 3], p=1.0, min_visible=0.3, load=lambda r: sources[r])  # records: any keys of load
    image, target = sources[0]
    torch.manual_seed(seed)
    out, new = mosaic(image, target)
    assert out.shape == image.shape and int(new["image_id"]) == 0
    b = new["boxes"]
    assert ((b[:, 2:] - b[:, :2]) >= 1).all() and len(b) == len(new["labels"])
    # the three others are drawn with replacement, so a colour may appear twice: check each unique one
    labels = new["labels"].tolist()
    unique = {k: i for i, k in enumerate(labels) if labels.count(k) == 1}
    subset = {"boxes": b[list(unique.values())], "labels": torch.tensor(list(unique.keys()), dtype=torch.int64)}
    assert_boxes_match_pixels(out, subset, tol=1.5)  # halving the canvas blurs edges by half a pixel more


def test_mosaic_off_and_counts():
    sources = _mosaic_sources()
    image, target = sources[0]
    same, kept = Mosaic([1], p=0.0, load=lambda r: sources[r])(image, target)
    assert same is image and kept is target
    torch.manual_seed(0)
    totals = []
    for _ in range(20):
        _, new = Mosaic([1, 2, 3], p=1.0, min_visible=0.9, load=lambda r: sources[r])(image, target)
        totals.append(len(new["boxes"]) + int(new["boxes_dropped"]))
    assert totals == [4] * 20  # every one of the four boxes is kept or counted as dropped


def test_multi_scale_draws_per_image_within_the_range():
    resize = MultiScaleResize(range(100, 141), max_size=1000)
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 40.0]])}
    torch.manual_seed(0)
    shorter = []
    for _ in range(60):
        image, new = resize(torch.rand(3, 60, 80), target)
        h, w = image.shape[-2:]
        shorter.append(h)
        assert w == int(80 * h / 60) or abs(w - 80 * h / 60) < 1.01
        torch.testing.assert_close(new["boxes"], target["boxes"] * torch.tensor([w / 80, h / 60] * 2), atol=1e-3, rtol=0)
    assert min(shorter) >= 100 and max(shorter) <= 140 and len(set(shorter)) > 20
    capped = MultiScaleResize(range(100, 141), max_size=120)(torch.rand(3, 60, 90), target)[0]
    assert max(capped.shape[-2:]) <= 120  # the longer side stays capped


def test_flip_and_resize_pipeline_boxes_match_painted_pixels():
    image, target = painted(90, 130, [7, 11, 61, 83], label=2)
    pipeline = training_pipeline(InputConfig(min_size=150, max_size=400), Augmentation(multi_scale=(120, 180), photometric=False))
    for seed in range(4):
        torch.manual_seed(seed)
        out, new = RandomHorizontalFlip(1.0)(*pipeline(image, target))
        assert 120 <= min(out.shape[-2:]) <= 180
        assert_boxes_match_pixels(out, new)


@pytest.fixture(scope="module")
def fruit(shared_data):
    return load_annotations(shared_data / "fruit", "train")


def _everything(fruit):
    aug = Augmentation(multi_scale=(96, 128), scale_jitter=(0.3, 2.0), mosaic=0.5)
    return DetectionDataset(fruit, training_pipeline(InputConfig(min_size=128, max_size=213), aug, records=fruit.records))


def test_seeded_samples_reproduce_with_every_augmentation(fruit):
    samples = SeededSamples(_everything(fruit), seed=3)
    n = len(samples)
    for code in (0, 5, n + 5, 2 * n + 11):
        (a, ta), (b, tb) = samples[code], samples[code]
        assert torch.equal(a, b) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(samples[5][0], samples[n + 5][0]) or samples[5][0].shape != samples[n + 5][0].shape
    other = SeededSamples(_everything(fruit), seed=4)
    assert any(other[i][0].shape != samples[i][0].shape for i in range(6))


def test_loader_batches_are_sized_per_image_and_consistent(fruit):
    loader = build_loader(_everything(fruit), batch_size=8, shuffle=True, seed=1)
    images, targets = next(iter(loader))
    shorter = [min(im.shape[-2:]) for im in images]
    assert all(min(im.shape[-2:]) <= 128 and max(im.shape[-2:]) <= 213 for im in images)
    assert len(set(shorter)) > 1  # drawn per image, not per batch
    for image, target in zip(images, targets):
        h, w = image.shape[-2:]
        b = target["boxes"]
        assert (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all() and (b >= 0).all()
        assert ((b[:, 2:] - b[:, :2]) >= 1).all() and "boxes_dropped" in target


def test_augmentation_validation_and_flag_parsers():
    assert parse_size_range("640-800") == (640, 800) and parse_size_range("800") == (800, 800)
    assert parse_size_range("None") is None and parse_scale_range("0.1-2") == (0.1, 2.0)
    assert parse_fraction("0.5") == 0.5
    for bad in ("800-640", "a-b", "0-10", "1-2-3"):
        with pytest.raises(ValueError):
            parse_size_range(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        parse_fraction("1.5")
    with pytest.raises(ValueError, match="mosaic"):
        Augmentation(mosaic=2.0)
    with pytest.raises(ValueError, match="min_visible"):
        Augmentation(min_visible=0.0)
    with pytest.raises(ValueError, match="multi_scale"):
        Augmentation(multi_scale=(800, 640))
    with pytest.raises(ValueError, match="records"):
        training_pipeline(InputConfig(), Augmentation(mosaic=0.5))
    text = Augmentation(multi_scale=(640, 800), scale_jitter=(0.1, 2.0), mosaic=0.5).describe(InputConfig())
    assert "640-800" in text and "mosaic" in text and "0.1-2" in text and "25%" in text


@pytest.mark.parametrize("seed", range(8))
def test_tile_crops_keep_boxes_on_their_pixels_and_favour_objects(seed):
    # A 600 x 900 image, one painted box: a 256 px tile at native resolution around it (object_bias 1).
    image, target = painted(600, 900, [610, 300, 650, 352], label=2)
    torch.manual_seed(seed)
    out, new = TileCrop(256, object_bias=1.0)(image, target)
    assert out.shape == (3, 256, 256) and len(new["boxes"]) == 1 and int(new["boxes_dropped"]) == 0
    assert_boxes_match_pixels(out, new)  # native resolution: the box is still 40 x 52 px
    assert (new["boxes"][0, 2:] - new["boxes"][0, :2]).tolist() == [40.0, 52.0]


def test_tile_crops_scale_cut_and_count_only_boxes_they_cut():
    image, target = painted(400, 400, [100, 100, 200, 200], label=0)
    torch.manual_seed(0)
    out, new = TileCrop(128, scale=0.5, object_bias=1.0)(image, target)  # the image at 200 px: the box 50 px
    assert out.shape == (3, 128, 128) and (new["boxes"][0, 2:] - new["boxes"][0, :2]).tolist() == [50.0, 50.0]
    assert_boxes_match_pixels(out, new)
    # without the object bias, a window that shows none of the box drops nothing: it is not in the sample
    torch.manual_seed(3)
    crop = TileCrop(64, object_bias=0.0)
    samples = [crop(image, target) for _ in range(30)]
    outside = [t for out, t in samples if painted_extent(out, 0) is None]
    assert outside and all(int(t["boxes_dropped"]) == 0 and len(t["boxes"]) == 0 for t in outside)
    # a box cut to under min_visible of its area is dropped and counted
    edge = {**target, "boxes": torch.tensor([[0.0, 0.0, 300.0, 300.0]])}
    torch.manual_seed(0)
    _, cut = TileCrop(64, object_bias=1.0, min_visible=0.5)(image, edge)
    assert len(cut["boxes"]) == 0 and int(cut["boxes_dropped"]) == 1


def test_tile_full_ratio_takes_the_whole_image_and_small_images_stay_whole():
    image, target = painted(300, 400, [10, 10, 60, 60], label=1)
    whole = Resize(128, 128)
    torch.manual_seed(0)
    out, _ = TileCrop(128, full_ratio=1.0, whole=whole)(image, target)
    assert out.shape == (3, 96, 128)  # the whole image by the model's rule at 128
    small, _ = painted(100, 80, [10, 10, 30, 30], label=1)
    out, new = TileCrop(128)(small, {**target, "boxes": torch.tensor([[10.0, 10, 30, 30]])})
    assert out.shape == (3, 100, 80) and len(new["boxes"]) == 1
    with pytest.raises(ValueError, match="whole-image transform"):
        TileCrop(128, full_ratio=0.5)

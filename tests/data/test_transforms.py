import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fcos.data.transforms import (
    Compose,
    PhotometricJitter,
    RandomHorizontalFlip,
    Resize,
    hflip,
    photometric,
    resize,
)
from fcos.ops.sizing import resize_scale, resized_shape, scale_boxes


def _boxes(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, 2, generator=g) * torch.tensor([width, height])
    lo, hi = xy.min(1).values, xy.max(1).values + 1
    return torch.cat((lo, torch.minimum(hi, torch.tensor([width, height]))), 1)


def _inside(boxes: torch.Tensor, height: int, width: int, tol: float = 0.0) -> bool:
    return bool(
        (boxes >= -tol).all()
        and (boxes[:, 0::2] <= width + tol).all()
        and (boxes[:, 1::2] <= height + tol).all()
    )


sizes = st.tuples(st.integers(8, 300), st.integers(8, 300))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(hw=sizes, n=st.integers(0, 5))
def test_flip_twice_is_identity_and_boxes_stay_inside(hw, n):
    image = torch.rand(3, *hw)
    boxes = _boxes(n, *hw)
    flipped_image, flipped = hflip(image, boxes)
    assert _inside(flipped, *hw)
    assert (flipped[:, 2:] > flipped[:, :2]).all()
    back_image, back = hflip(flipped_image, flipped)
    assert torch.equal(back_image, image)
    torch.testing.assert_close(back, boxes)


def test_flip_moves_pixels_with_boxes():
    image = torch.zeros(3, 10, 20)
    image[:, 2:5, 1:4] = 1.0  # object at x 1..4
    out, boxes = hflip(image, torch.tensor([[1.0, 2.0, 4.0, 5.0]]))
    assert boxes.tolist() == [[16.0, 2.0, 19.0, 5.0]]
    assert out[:, 2:5, 16:19].eq(1).all() and out.sum() == image.sum()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(hw=sizes, min_size=st.integers(16, 400), max_size=st.integers(16, 700))
def test_resize_matches_model_rule_and_scales_back(hw, min_size, max_size):
    assume(min(resized_shape(*hw, min_size, max_size)) > 0)
    image = torch.rand(3, *hw)
    boxes = _boxes(4, *hw)
    out, scaled = resize(image, boxes, min_size, max_size)
    assert tuple(out.shape[-2:]) == resized_shape(*hw, min_size, max_size)
    h, w = out.shape[-2:]
    assert _inside(scaled, h, w, tol=1e-3)
    torch.testing.assert_close(scale_boxes(scaled, out.shape[-2:], hw), boxes, rtol=1e-5, atol=1e-3)


def test_resize_pixels_equal_the_models_interpolation():
    image = torch.rand(3, 417, 650)
    out, _ = resize(image, torch.zeros(0, 4), 320, 512)
    scale = resize_scale(417, 650, 320, 512)
    model = F.interpolate(
        image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
    )[0]
    assert torch.equal(out, model)
    same, boxes = resize(image, torch.ones(1, 4), 417, 1000)  # already the target size: untouched
    assert same is image and boxes.tolist() == [[1, 1, 1, 1]]
    # 8 * 16/129 floors to 0 px, where torchvision's interpolate fails: the side is kept at 1 px
    thin, boxes = resize(torch.rand(3, 8, 129), torch.tensor([[0.0, 0.0, 129.0, 8.0]]), 16, 16)
    assert thin.shape == (3, 1, 16)
    assert boxes.tolist() == [[0.0, 0.0, 16.0, 1.0]]


def test_photometric_range_determinism_and_identity():
    image = torch.rand(3, 32, 48)
    a = photometric(
        image, torch.Generator().manual_seed(3), brightness=0.8, contrast=0.8, saturation=0.8, hue=0.3
    )
    b = photometric(
        image, torch.Generator().manual_seed(3), brightness=0.8, contrast=0.8, saturation=0.8, hue=0.3
    )
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.allclose(a, image)
    identity = photometric(image, torch.Generator(), 0.0, 0.0, 0.0, 0.0)
    torch.testing.assert_close(identity, image, atol=1e-5, rtol=0)
    gray = torch.full((3, 4, 4), 0.5)  # no chroma: saturation and hue leave it gray
    out = photometric(gray, torch.Generator().manual_seed(0), 0.0, 0.0, 0.9, 0.5)
    torch.testing.assert_close(out, gray, atol=1e-5, rtol=0)


def test_compose_on_target_dicts_keeps_other_keys():
    image = torch.rand(3, 40, 60)
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 30.0, 20.0]]),
        "labels": torch.tensor([2]),
        "orig_size": torch.tensor([40, 60]),
    }
    pipeline = Compose([RandomHorizontalFlip(p=1.0), PhotometricJitter(), Resize(80, 1000)])
    out, new = pipeline(image, target)
    assert out.shape == (3, 80, 120) and out.min() >= 0 and out.max() <= 1
    assert new["boxes"].tolist() == [[60.0, 0.0, 120.0, 40.0]]
    assert new["labels"] is target["labels"] and new["orig_size"] is target["orig_size"]
    assert target["boxes"].tolist() == [[0.0, 0.0, 30.0, 20.0]]  # the input target is not modified
    unflipped, same = RandomHorizontalFlip(p=0.0)(image, target)
    assert unflipped is image and same is target


def test_random_transforms_follow_the_global_rng_or_a_generator():
    image, target = torch.rand(3, 8, 8), {"boxes": torch.zeros(0, 4)}
    flip = Compose([RandomHorizontalFlip(), PhotometricJitter()])
    torch.manual_seed(5)
    first = [flip(image, target)[0] for _ in range(6)]
    torch.manual_seed(5)
    second = [flip(image, target)[0] for _ in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    flips = [
        RandomHorizontalFlip(generator=torch.Generator().manual_seed(1))(image, target)[0] for _ in range(2)
    ]
    assert torch.equal(flips[0], flips[1])

import pytest
import torch

from fcos.ops.sizing import fit_shape, pad_batch, resized_shape


def test_pad_batch_places_images_top_left_on_zeros_rounded_to_the_divisor():
    a, b = torch.rand(3, 5, 7) + 1, torch.rand(3, 9, 4) + 1
    batch = pad_batch([a, b], 8)
    assert batch.shape == (2, 3, 16, 8)
    assert torch.equal(batch[0, :, :5, :7], a) and torch.equal(batch[1, :, :9, :4], b)
    assert batch[0, :, 5:].abs().sum() == 0 and batch[0, :, :, 7:].abs().sum() == 0
    assert batch[1, :, 9:].abs().sum() == 0 and batch[1, :, :, 4:].abs().sum() == 0


def test_pad_batch_to_a_fixed_size():
    image = torch.rand(3, 5, 7) + 1
    batch = pad_batch([image], 8, (16, 24))
    assert batch.shape == (1, 3, 16, 24)
    assert torch.equal(batch[0, :, :5, :7], image)
    assert batch[0, :, 5:].abs().sum() == 0 and batch[0, :, :, 7:].abs().sum() == 0


@pytest.mark.parametrize("size", [None, (16, 24)])
def test_one_image_already_at_the_padded_size_is_not_copied(size):
    image = torch.rand(3, 16, 24)
    batch = pad_batch([image], 8, size)
    assert batch.shape == (1, 3, 16, 24) and torch.equal(batch[0], image)
    assert batch.data_ptr() == image.data_ptr()


def test_a_non_contiguous_image_at_the_padded_size_comes_back_contiguous():
    image = torch.rand(16, 24, 3).permute(2, 0, 1)  # an HWC array seen as CHW
    batch = pad_batch([image], 8)
    assert batch.is_contiguous() and torch.equal(batch[0], image)


def test_resized_sides_are_floored_but_never_below_one_pixel():
    assert resized_shape(417, 650, 320, 512) == (320, 498)  # 650 * 320/417 = 498.8: floored, as torchvision
    # 5 * 267/3000 = 0.445 floors to 0 (torchvision's interpolate then fails): kept at 1 px
    assert resized_shape(5, 3000, 160, 267) == (1, 267)
    assert resized_shape(3000, 5, 160, 267) == (267, 1)
    assert fit_shape(20, 5000, 800, 1333, limit=(224, 224)) == (1, 224)

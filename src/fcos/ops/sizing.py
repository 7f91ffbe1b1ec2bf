"""The input size rule: resize scale, resized shape, padding to a multiple, box rescaling, size check.

One rule for everything that sizes an image for the network: the model's own transform, the data
loader's pre-resize, evaluation, ONNX host preprocessing and prediction. It is torchvision's
GeneralizedRCNNTransform rule (same resize scale, same floor of the output size, same float32 box
ratios), so the ``torchvision`` preset reproduces its outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "check_resized_size",
    "fit_shape",
    "pad_batch",
    "pad_to_multiple",
    "resize_image",
    "resize_scale",
    "resized_shape",
    "scale_boxes",
]


def resize_scale(height: int, width: int, min_size: float, max_size: float) -> float:
    """torchvision's rule: shorter side to min_size unless the longer side would exceed max_size."""
    return min(float(min_size) / min(height, width), float(max_size) / max(height, width))


def resized_shape(height: int, width: int, min_size: float, max_size: float) -> tuple[int, int]:
    """Output (h, w) of the resize: floor(side * scale), as F.interpolate(recompute_scale_factor=True),
    and at least 1 px (a 5x3000 image under a small max_size would floor to 0, where torchvision fails)."""
    scale = resize_scale(height, width, min_size, max_size)
    return _floor_sides(height, width, scale)


def _floor_sides(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, int(height * scale)), max(1, int(width * scale))


def resize_image(image: Tensor, size: Sequence[int]) -> Tensor:
    """[C, H, W] -> [C, h, w] at ``size`` (a shape of the rule above), bilinear without antialiasing: the
    model's own sampling, equal to torchvision's ``scale_factor`` + ``recompute_scale_factor=True`` (both
    sample at in/out), and defined where that scale would floor a side to 0."""
    return F.interpolate(image[None], size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)[0]


def fit_shape(
    height: int, width: int, min_size: float, max_size: float, limit: Sequence[int] | None = None
) -> tuple[int, int]:
    """:func:`resized_shape`, scaled down further when it must fit inside ``limit`` (H, W), e.g. a
    fixed-size exported graph; ``limit=None`` is the plain rule."""
    if limit is None:
        return resized_shape(height, width, min_size, max_size)
    scale = min(resize_scale(height, width, min_size, max_size), limit[0] / height, limit[1] / width)
    return _floor_sides(height, width, scale)


def pad_to_multiple(size: int, divisor: int) -> int:
    """``size`` rounded up to a multiple of ``divisor`` (the padded side the network sees)."""
    return -(-size // divisor) * divisor


def pad_batch(images: Sequence[Tensor], divisor: int, size: Sequence[int] | None = None) -> Tensor:
    """[C, h_i, w_i] images -> [B, C, H, W], each at the top-left corner, zeros elsewhere.

    (H, W): the largest sides rounded up to a multiple of ``divisor``, or ``size`` when given
    (images must fit in it). One image already of that size comes back as a view of itself (contiguous).
    """
    if size is None:
        height = pad_to_multiple(max(im.shape[-2] for im in images), divisor)
        width = pad_to_multiple(max(im.shape[-1] for im in images), divisor)
    else:
        height, width = int(size[0]), int(size[1])
    if len(images) == 1 and tuple(images[0].shape[-2:]) == (height, width):
        # Nothing to pad (e.g. frames already at a fixed-size model's input): a view, not a ~10 ms copy.
        return images[0].unsqueeze(0).contiguous()
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for slot, image in zip(batch, images, strict=True):
        slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
    return batch


def check_resized_size(
    resized_hw: Sequence[int], original_hw: Sequence[int], largest_stride: int, size_divisible: int, index: int = 0
) -> None:
    """Each image, padded as the network sees it, must span the largest stride (one P7 cell) in at
    least one direction; only degenerate settings (min_size under ~100 px, extreme shapes) fail."""
    h, w = resized_hw
    if pad_to_multiple(max(h, w), size_divisible) < largest_stride:
        raise ValueError(
            f"images[{index}] ({original_hw[0]}x{original_hw[1]}) resizes to {h}x{w}, smaller than the largest "
            f"stride ({largest_stride} px) in both directions; raise input.min_size/max_size"
        )


def scale_boxes(boxes: Tensor, from_hw: Sequence[int], to_hw: Sequence[int]) -> Tensor:
    """Rescale xyxy boxes [N, 4] from an image of size from_hw to one of size to_hw (float32 ratios)."""
    ratio_h = torch.tensor(to_hw[0], dtype=torch.float32) / torch.tensor(from_hw[0], dtype=torch.float32)
    ratio_w = torch.tensor(to_hw[1], dtype=torch.float32) / torch.tensor(from_hw[1], dtype=torch.float32)
    ratio = torch.stack((ratio_w, ratio_h, ratio_w, ratio_h)).to(boxes.device, boxes.dtype)
    return boxes * ratio

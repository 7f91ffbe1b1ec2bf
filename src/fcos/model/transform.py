"""Input handling inside the model: normalize, resize, batch with padding; map detections back.

Follows torchvision's GeneralizedRCNNTransform exactly (same resize rule, same order of operations,
same float32 box ratios) so that the ``torchvision`` preset reproduces its outputs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcos.config import InputConfig

__all__ = ["ImageBatch", "InputTransform", "check_resized_size", "pad_to_multiple", "resized_shape", "scale_boxes"]


@dataclass
class ImageBatch:
    tensor: Tensor  # [B, 3, H_pad, W_pad] normalized, zero padded at the bottom/right
    image_sizes: list[tuple[int, int]]  # (h, w) of each image after resizing, before padding
    original_sizes: list[tuple[int, int]]  # (h, w) as given to the model


def resize_scale(height: int, width: int, min_size: float, max_size: float) -> float:
    """torchvision's rule: shorter side to min_size unless the longer side would exceed max_size."""
    return min(float(min_size) / min(height, width), float(max_size) / max(height, width))


def resized_shape(height: int, width: int, min_size: float, max_size: float) -> tuple[int, int]:
    """Output (h, w) of the resize: floor(side * scale), as F.interpolate(recompute_scale_factor=True)."""
    scale = resize_scale(height, width, min_size, max_size)
    return int(height * scale), int(width * scale)


def pad_to_multiple(size: int, divisor: int) -> int:
    """``size`` rounded up to a multiple of ``divisor`` (the padded side the network sees)."""
    return -(-size // divisor) * divisor


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


class InputTransform(nn.Module):
    """list of images [3, H_i, W_i] in [0, 1] (+ targets) -> :class:`ImageBatch` (+ resized targets)."""

    def __init__(self, config: InputConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(3, 1, 1), persistent=False)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        cfg = self.config
        min_size = float(cfg.min_size)
        if self.training and cfg.train_min_sizes:
            min_size = float(random.choice(cfg.train_min_sizes))
        resized, new_targets, original_sizes = [], [], []
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            original_sizes.append((int(h), int(w)))
            image = (image.to(self.mean.dtype) - self.mean) / self.std
            out_hw = resized_shape(h, w, min_size, cfg.max_size)
            if out_hw != (h, w):  # bilinear at scale 1 is the identity: skip it
                scale = resize_scale(h, w, min_size, cfg.max_size)
                image = F.interpolate(
                    image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
                )[0]
            resized.append(image)
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = scale_boxes(target["boxes"], (h, w), image.shape[-2:])
                new_targets.append(target)
        batch = ImageBatch(self.pad(resized), [tuple(im.shape[-2:]) for im in resized], original_sizes)
        return batch, (new_targets if targets is not None else None)

    def pad(self, images: Sequence[Tensor]) -> Tensor:
        """Zero-pad to a common size, rounded up to a multiple of size_divisible: [B, 3, H_pad, W_pad]."""
        div = self.config.size_divisible
        height = pad_to_multiple(max(im.shape[-2] for im in images), div)
        width = pad_to_multiple(max(im.shape[-1] for im in images), div)
        batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for slot, image in zip(batch, images, strict=True):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch

    @staticmethod
    def postprocess(
        detections: list[dict[str, Tensor]], image_sizes: Sequence[tuple[int, int]], original_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Map detection boxes from the resized image back to each original image."""
        for det, size, original in zip(detections, image_sizes, original_sizes, strict=True):
            det["boxes"] = scale_boxes(det["boxes"], size, original)
        return detections

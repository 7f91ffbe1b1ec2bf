"""Input handling inside the model: normalize, resize, batch with padding; map detections back.

Follows torchvision's GeneralizedRCNNTransform exactly (same resize rule, same order of operations,
same float32 box ratios) so that the ``torchvision`` preset reproduces its outputs. The size rule
itself lives in :mod:`fcos.ops.sizing`, shared with the data loader, evaluation and export.

Training sizes: with ``InputConfig.train_min_sizes`` the shorter side is drawn per image from them with
torch's RNG, exactly as torchvision's ``torch_choice``. ``fcos train`` sizes its training images in the
data pipeline instead (multi-scale drawn per sample, scale jitter, mosaic: :mod:`fcos.data.augment`) and
sets ``skip_train_resize``, so the model then only normalises and pads them, as torchvision's
``_skip_resize`` does for its reference scripts' multi-scale and large-scale-jitter training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fcos.config import InputConfig
from fcos.ops.sizing import pad_batch, resize_image, resized_shape, scale_boxes
from fcos.structures import ImageBatch

__all__ = ["InputTransform"]


class InputTransform(nn.Module):
    """list of images [3, H_i, W_i] in [0, 1] (+ targets) -> :class:`ImageBatch` (+ resized targets)."""

    def __init__(self, config: InputConfig, *, skip_train_resize: bool = False) -> None:
        super().__init__()
        self.config = config
        # True when the data pipeline sizes training images (fcos train's loader); a runtime switch, not
        # part of the config, so a checkpoint loaded elsewhere resizes its training inputs as usual.
        self.skip_train_resize = skip_train_resize
        self.register_buffer("mean", torch.tensor(config.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(3, 1, 1), persistent=False)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None, *,
        sizes: tuple[float, float] | None = None,
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        """``sizes``: (min_size, max_size) in place of the config's (inference at another size)."""
        cfg = self.config
        max_size = cfg.max_size if sizes is None else sizes[1]
        resize = not (self.training and self.skip_train_resize)
        resized, new_targets, original_sizes = [], [], []
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            original_sizes.append((int(h), int(w)))
            image = (image.to(self.mean.dtype) - self.mean) / self.std
            min_size = (self._min_size() if sizes is None else sizes[0]) if resize else 0.0
            out_hw = resized_shape(h, w, min_size, max_size) if resize else (h, w)
            if out_hw != (h, w):  # bilinear at scale 1 is the identity: skip it
                image = resize_image(image, out_hw)
            resized.append(image)
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = scale_boxes(target["boxes"], (h, w), image.shape[-2:])
                new_targets.append(target)
        batch = ImageBatch(self.pad(resized), [tuple(im.shape[-2:]) for im in resized], original_sizes)
        return batch, (new_targets if targets is not None else None)

    def _min_size(self) -> float:
        """The shorter side for the next image: ``min_size``, or in training one of ``train_min_sizes``
        drawn uniformly with torch's RNG (torchvision's ``torch_choice``, one draw per image)."""
        sizes = self.config.train_min_sizes
        if not (self.training and sizes):
            return float(self.config.min_size)
        return float(sizes[int(torch.empty(1).uniform_(0.0, float(len(sizes))).item())])

    def pad(self, images: Sequence[Tensor]) -> Tensor:
        """Zero-pad to a common size, rounded up to a multiple of size_divisible: [B, 3, H_pad, W_pad]."""
        return pad_batch(images, self.config.size_divisible)

    @staticmethod
    def postprocess(
        detections: list[dict[str, Tensor]], image_sizes: Sequence[tuple[int, int]], original_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Map detection boxes from the resized image back to each original image."""
        for det, size, original in zip(detections, image_sizes, original_sizes, strict=True):
            det["boxes"] = scale_boxes(det["boxes"], size, original)
        return detections

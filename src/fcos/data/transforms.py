"""Training-time image + box transforms.

Pure functions work on ``(image [3, H, W] float in [0, 1], boxes [N, 4] xyxy pixels)``; the callable
classes wrap them for a ``(image, target)`` pipeline, where ``target["boxes"]`` is transformed and every
other key passes through untouched (``orig_size`` keeps the size on disk, for mapping results back).

Randomness comes from a passed ``torch.Generator`` or, by default, torch's global RNG: DataLoader seeds
that per worker (base seed + worker id), so runs are reproducible for a fixed loader seed and worker count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fcos.ops.sizing import resize_image, resized_shape, scale_boxes

__all__ = [
    "Compose",
    "MultiScaleResize",
    "PhotometricJitter",
    "RandomHorizontalFlip",
    "Resize",
    "Target",
    "hflip",
    "photometric",
    "resize",
]

Target = dict[str, Tensor]
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]

# RGB -> YIQ (NTSC): hue is a rotation of the (I, Q) chroma plane, saturation its length.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]


def resize(image: Tensor, boxes: Tensor, min_size: float, max_size: float) -> tuple[Tensor, Tensor]:
    """Resize like the model does (:func:`fcos.ops.sizing.resized_shape` / ``scale_boxes``).

    image: [3, H, W] -> [3, H', W'] with (H', W') = resized_shape(H, W, min_size, max_size); boxes: [N, 4].
    Bilinear without antialiasing, as the model's own resize, so a pre-resized image passes through the
    model's transform unchanged in size.
    """
    h, w = image.shape[-2:]
    out_hw = resized_shape(h, w, min_size, max_size)
    if out_hw == (h, w):
        return image, boxes
    image = resize_image(image, out_hw)
    return image, scale_boxes(boxes, (h, w), out_hw)


def hflip(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror left-right. image: [3, H, W]; boxes: [N, 4] xyxy -> x1' = W - x2, x2' = W - x1."""
    width = image.shape[-1]
    flipped = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), dim=1)
    return image.flip(-1), flipped


def photometric(
    image: Tensor,
    generator: torch.Generator | None = None,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.3,
    hue: float = 0.05,
) -> Tensor:
    """Random brightness, contrast, saturation and hue; [3, H, W] in [0, 1] -> same, clamped to [0, 1].

    Factors are drawn uniformly from ``1 ± brightness`` etc.; ``hue`` is a fraction of a full turn of the
    chroma plane. Boxes are unaffected.
    """
    u = torch.rand(4, generator=generator) * 2 - 1  # one draw per call, in [-1, 1)
    b, c, s = 1 + brightness * u[0], 1 + contrast * u[1], 1 + saturation * u[2]
    angle = 2 * math.pi * hue * u[3]
    image = image * b
    mean_luma = torch.einsum("c,chw->", _LUMA.to(image), image) / image[0].numel()
    image = (image - mean_luma) * c + mean_luma
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    # Saturation scales and hue rotates the chroma (I, Q) plane; luma Y is left as it is.
    chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, float(cos), -float(sin)], [0.0, float(sin), float(cos)]])
    mix = (_YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ).to(image)
    image = torch.einsum("dc,chw->dhw", mix, image)
    return image.clamp(0.0, 1.0)


class Compose:
    """Apply transforms in order to ``(image, target)``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class RandomHorizontalFlip:
    """Flip image and ``target["boxes"]`` with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p = p
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if torch.rand(1, generator=self.generator).item() < self.p:
            image, boxes = hflip(image, target["boxes"])
            target = {**target, "boxes": boxes}
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class PhotometricJitter:
    """:func:`photometric` on the image; the target passes through."""

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.3,
        hue: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> None:
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        return photometric(
            image, self.generator, self.brightness, self.contrast, self.saturation, self.hue
        ), target

    def __repr__(self) -> str:
        return f"PhotometricJitter({self.brightness}, {self.contrast}, {self.saturation}, {self.hue})"


class Resize:
    """:func:`resize` on image and ``target["boxes"]`` (the model's rule; use the model's min/max sizes)."""

    def __init__(self, min_size: float, max_size: float) -> None:
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        image, boxes = resize(image, target["boxes"], self.min_size, self.max_size)
        return image, {**target, "boxes": boxes}

    def __repr__(self) -> str:
        return f"Resize({self.min_size}, {self.max_size})"


class MultiScaleResize:
    """:func:`resize` with the shorter side drawn per image, uniformly from ``sizes``, the longer side
    capped at ``max_size`` (official FCOS multi-scale training: ``MIN_SIZE_RANGE_TRAIN`` (640, 800) is
    every integer from 640 to 800, one ``random.choice`` per image). The draw uses torch's global RNG,
    which :class:`~fcos.data.sampling.SeededSamples` seeds per sample."""

    def __init__(self, sizes: Sequence[int], max_size: float) -> None:
        if not sizes:
            raise ValueError("MultiScaleResize needs at least one size")
        self.sizes, self.max_size = tuple(int(s) for s in sizes), max_size

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        size = self.sizes[int(torch.randint(len(self.sizes), ()).item())]
        image, boxes = resize(image, target["boxes"], size, self.max_size)
        return image, {**target, "boxes": boxes}

    def __repr__(self) -> str:
        return f"MultiScaleResize({self.sizes[0]}..{self.sizes[-1]} ({len(self.sizes)} sizes), {self.max_size})"

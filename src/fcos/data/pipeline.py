"""The training pipeline: what each training image goes through, in order: sizing (the model's rule, a
shorter side drawn per image, or a tile of a large image), then mosaic, scale jitter + crop, flip and
colour jitter, as an
:class:`Augmentation` (``fcos train``'s augmentation flags) says; or an outside pipeline
(:mod:`fcos.data.adapters`) followed by the sizing.

Sizing happens here, in the loader workers, never twice: ``fcos train`` sets the model's
``transform.skip_train_resize``, so the model only normalises and pads what it gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fcos.config import InputConfig
from fcos.data.adapters import adapt, describe
from fcos.data.augment import Mosaic, ScaleJitterCrop, TileCrop, check_range
from fcos.data.records import ImageRecord
from fcos.data.transforms import (
    Compose,
    MultiScaleResize,
    PhotometricJitter,
    RandomHorizontalFlip,
    Resize,
    Transform,
)
from fcos.utils.flags import IMAGE_SIDE

__all__ = ["Augmentation", "sizing", "training_pipeline", "training_transforms"]


@dataclass(frozen=True)
class Augmentation:
    """What the training pipeline applies (``fcos train``'s augmentation flags, one field each)."""

    # Shorter side drawn per image from every integer in [min, max] (official FCOS multi-scale:
    # (640, 800)); the longer side stays capped by the model's max_size. None: the model's min_size.
    multi_scale: tuple[int, int] | None = None
    # Large-scale jitter (Ghiasi et al. 2021): resize by a factor drawn from [low, high], then crop
    # (factor > 1) or pad (factor < 1) back to the input's size. None: off. LSJ itself: (0.1, 2.0).
    scale_jitter: tuple[float, float] | None = None
    mosaic: float = 0.0  # probability of a 2x2 mosaic of this image and three random others
    hflip: float = 0.5  # probability of a horizontal flip
    photometric: bool = True  # brightness, contrast, saturation and hue jitter
    # A box cut by a crop or the mosaic's edge is kept when at least this fraction of its area remains.
    min_visible: float = 0.25
    # Tiles of large images (TileCrop): crops of tile x tile px of the image scaled by tile_scale, the
    # whole image with probability tile_full_ratio. None: whole images.
    tile: int | None = None
    tile_scale: float = 1.0
    tile_full_ratio: float = 0.2

    def __post_init__(self) -> None:
        if self.tile is not None and (self.tile not in IMAGE_SIDE or self.tile_scale <= 0):
            raise ValueError(f"tile is a side of {IMAGE_SIDE} px at a scale > 0, got {self.tile} at {self.tile_scale}")
        if self.tile is not None and self.multi_scale is not None:
            raise ValueError("tile and multi_scale both size the training images: choose one")
        if not 0.0 <= self.tile_full_ratio <= 1.0:
            raise ValueError(f"tile_full_ratio is a probability in [0, 1], got {self.tile_full_ratio}")
        if self.multi_scale is not None:
            check_range(self.multi_scale, "multi_scale", int)
        if self.scale_jitter is not None:
            check_range(self.scale_jitter, "scale_jitter", float)
        for name in ("mosaic", "hflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"min_visible is a fraction in (0, 1], got {self.min_visible}")

    @property
    def cuts_boxes(self) -> bool:
        return self.scale_jitter is not None or self.mosaic > 0 or self.tile is not None

    def describe(self, input_config: InputConfig, custom: Any = None) -> str:
        """One line for the start of training: what each image goes through, in order (``custom``: the
        pipeline given in place of the built-in augmentations)."""
        if custom is not None:
            return f"augmentation: {describe(custom)}, then {self._describe_sizing(input_config)}"
        steps = [self._describe_sizing(input_config)]
        if self.mosaic:
            steps.append(f"mosaic of 4 images p={self.mosaic:g}")
        if self.scale_jitter:
            steps.append(f"scale jitter {self.scale_jitter[0]:g}-{self.scale_jitter[1]:g} cropped/padded to size")
        if self.hflip:
            steps.append(f"horizontal flip p={self.hflip:g}")
        if self.photometric:
            steps.append("colour jitter")
        text = "augmentation: " + ", ".join(steps)
        if self.cuts_boxes:
            text += f"; cut boxes kept with >= {self.min_visible:.0%} of their area, else dropped"
        return text


    def _describe_sizing(self, input_config: InputConfig) -> str:
        if self.tile is None:
            return _describe_sizing(input_config, self.multi_scale)
        scale = "native resolution" if self.tile_scale == 1 else f"the image scaled by {self.tile_scale:g}"
        whole = f", the whole image (longer side {input_config.max_size}) p={self.tile_full_ratio:g}" if self.tile_full_ratio else ""
        return f"{self.tile}x{self.tile} px tiles at {scale}, placed around objects{whole}"


def _describe_sizing(input_config: InputConfig, multi_scale: tuple[int, int] | None) -> str:
    cap = f"longer side <= {input_config.max_size}"
    if multi_scale:
        return f"shorter side {multi_scale[0]}-{multi_scale[1]} drawn per image ({cap})"
    if input_config.train_min_sizes:
        sizes = ", ".join(map(str, input_config.train_min_sizes))
        return f"shorter side one of {sizes} drawn per image ({cap})"
    return f"resize to shorter side {input_config.min_size} ({cap})"


def sizing(input_config: InputConfig, multi_scale: tuple[int, int] | None = None) -> Transform:
    """The training size: a shorter side drawn per image from ``multi_scale`` (every integer in it) or
    from the model's ``train_min_sizes``, else the model's rule at ``min_size``."""
    if multi_scale is not None:
        return MultiScaleResize(range(multi_scale[0], multi_scale[1] + 1), input_config.max_size)
    if input_config.train_min_sizes:
        return MultiScaleResize(input_config.train_min_sizes, input_config.max_size)
    return Resize(input_config.min_size, input_config.max_size)


def training_pipeline(
    input_config: InputConfig,
    augmentation: Augmentation | None = None,
    *,
    records: Sequence[ImageRecord] | None = None,
    custom: Any = None,
) -> Compose:
    """The training transforms: sizing, then mosaic, scale jitter + crop, flip, colour jitter, as
    ``augmentation`` says (``records``: the split's, which mosaic draws from).

    ``custom``: a ``torchvision.transforms.v2`` pipeline, an Albumentations ``Compose`` with
    ``bbox_params`` or an fcos-style callable (:func:`fcos.data.adapters.adapt`) in place of the
    built-in augmentations; it gets each image at its size on disk, and the sizing (the model's rule or
    ``multi_scale``) follows it.
    """
    augmentation = augmentation or Augmentation()
    size = sizing(input_config, augmentation.multi_scale)
    if augmentation.tile is not None:
        size = TileCrop(augmentation.tile, scale=augmentation.tile_scale, full_ratio=augmentation.tile_full_ratio,
                        min_visible=augmentation.min_visible, whole=size)
    if custom is not None:
        return Compose([adapt(custom), size])
    steps: list[Transform] = [size]
    if augmentation.mosaic > 0:
        if records is None:
            raise ValueError("mosaic needs the training records to draw from (training_pipeline(records=...))")
        steps.append(Mosaic(records, augmentation.mosaic, min_visible=augmentation.min_visible, fill=input_config.mean))
    if augmentation.scale_jitter is not None:
        low, high = augmentation.scale_jitter
        steps.append(ScaleJitterCrop(low, high, min_visible=augmentation.min_visible, fill=input_config.mean))
    if augmentation.hflip > 0:
        steps.append(RandomHorizontalFlip(augmentation.hflip))
    if augmentation.photometric:
        steps.append(PhotometricJitter())
    return Compose(steps)



def training_transforms(input_config: InputConfig, *, hflip: float = 0.5, photometric: bool = True) -> Compose:
    """Sizing by the model's rule (``train_min_sizes``: drawn per image), flip and photometric jitter:
    :func:`training_pipeline` with only those. The images arrive sized, so train the model with
    ``model.transform.skip_train_resize = True`` when ``train_min_sizes`` is set."""
    return training_pipeline(input_config, Augmentation(hflip=hflip, photometric=photometric))

"""Calibration inputs for int8 post-training quantization: N training images of a dataset, chosen by a
seeded generator (the same seed and data give the same images, hence the same int8 model), each
prepared exactly as the exported graph's host side prepares an image (:func:`fcos.export.host.prepare_inputs`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcos.config import InputConfig
from fcos.export.host import prepare_inputs
from fcos.utils.flags import SettingError

__all__ = ["DEFAULT_CALIB_IMAGES", "Calibration", "calibration_inputs"]

DEFAULT_CALIB_IMAGES = 32  # a few dozen images cover a dataset's activation ranges; each is one forward pass


@dataclass(frozen=True)
class Calibration:
    """Where int8 ranges come from: ``images`` images of ``data``'s ``split``, picked with ``seed``."""

    data: str | Path
    images: int = DEFAULT_CALIB_IMAGES
    split: str = "train"
    seed: int = 0

    def describe(self) -> dict[str, object]:
        return {"data": str(self.data), "split": self.split, "images": self.images, "seed": self.seed}


def calibration_inputs(
    calibration: Calibration, config: InputConfig, img_size: Sequence[int] | None = None
) -> list[dict[str, np.ndarray]]:
    """The graph inputs ``{"images": [1, 3, H, W], "image_sizes": [1, 2]}`` of the calibration images,
    in a fixed order (sorted by the dataset's order after the seeded pick).

    Raises:
        SettingError (a ValueError): fewer than one image asked for. ValueError: the split is empty.
    """
    from fcos.data import load_annotations, load_image

    if calibration.images < 1:
        raise SettingError(f"calibration needs at least one image, got {calibration.images}")
    data = load_annotations(calibration.data, calibration.split)
    if not data.records:
        raise ValueError(f"no images in the {calibration.split!r} split of {calibration.data} to calibrate int8 on")
    count = min(calibration.images, len(data.records))
    picks = sorted(random.Random(calibration.seed).sample(range(len(data.records)), count))
    inputs = []
    for index in picks:
        images, sizes = prepare_inputs([load_image(data.records[index])], config, img_size)
        inputs.append({"images": images.numpy(), "image_sizes": sizes.numpy()})
    return inputs

"""``torch.utils.data.Dataset`` over a :class:`DetectionData`: decode, check, convert, transform."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from fcos.data.errors import DatasetError
from fcos.data.images import ImageError, decode, exif_orientation, open_image, oriented_size
from fcos.data.records import DetectionData, ImageRecord

__all__ = ["DetectionDataset", "Sample", "decode_image", "load_image", "load_sample"]

Sample = tuple[Tensor, dict[str, Tensor]]


def decode_image(path: str | Path, width: int, height: int) -> Image.Image:
    """Fully decode an image as RGB (:mod:`fcos.data.images`) and check it is ``width`` x ``height``.

    EXIF orientation: the annotations declare a size, and the size says which pixels they describe.
    A declared size equal to the image's size after its EXIF rotation gets the rotated pixels (what an
    annotation tool, a browser, detectron2 and ultralytics show; also when the rotation keeps the size);
    a declared size equal only to the stored size gets the stored pixels (the tool ignored the EXIF tag).
    YOLO labels are normalised, so the YOLO reader declares the rotated size, as ultralytics does.

    Raises:
        DatasetError: missing, unreadable, truncated or corrupt file, too many pixels, or a size other
            than the declared one (naming both).
    """
    try:
        with open_image(path) as image:
            orientation = exif_orientation(image)
            rotated = oriented_size(image, orientation)
            if (width, height) != rotated:
                if (width, height) != image.size:
                    raise DatasetError(path, _size_mismatch(image.size, rotated, width, height))
                orientation = 1  # the annotations describe the stored pixels
            return decode(image, orientation=orientation, name=str(path))
    except ImageError as e:
        raise DatasetError(path, e.problem) from None


def _size_mismatch(stored: tuple[int, int], rotated: tuple[int, int], width: int, height: int) -> str:
    size = f"{stored[0]}x{stored[1]}"
    if rotated != stored:
        size += f" ({rotated[0]}x{rotated[1]} after its EXIF rotation)"
    return f"image is {size} but the annotations declare {width}x{height} (w x h)"


def load_image(record: ImageRecord) -> Tensor:
    """The record's image as [3, H, W] float32 RGB in [0, 1]."""
    rgb = decode_image(record.path, record.width, record.height)
    array = np.array(rgb, dtype=np.uint8)  # [H, W, 3], a writable copy torch can own
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def load_sample(record: ImageRecord) -> Sample:
    """The record's ``(image, target)`` before any transform (the target :class:`DetectionDataset` describes)."""
    target = {
        "boxes": torch.from_numpy(record.boxes.copy()),
        "labels": torch.from_numpy(record.labels.copy()),
        "image_id": torch.tensor(record.image_id, dtype=torch.int64),
        "orig_size": torch.tensor([record.height, record.width], dtype=torch.int64),
    }
    return load_image(record), target


class DetectionDataset(Dataset[Sample]):
    """``dataset[i]`` -> ``(image, target)``.

    image: [3, H, W] float32 RGB in [0, 1] (after ``transforms``).
    target: ``boxes`` [N, 4] float32 xyxy pixels of the returned image, ``labels`` [N] int64 in 0..C-1,
    ``image_id`` int64 scalar, ``orig_size`` int64 [2] = (h, w) of the image on disk; training pipelines
    that cut boxes (crops, mosaic) add ``boxes_dropped``, an int64 scalar count (:mod:`fcos.data.augment`).
    Crowd / difficult boxes are not in the target (they are not training targets); evaluation gets them
    from :func:`fcos.data.to_coco`.
    """

    def __init__(
        self, data: DetectionData, transforms: Callable[[Tensor, dict[str, Tensor]], Sample] | None = None
    ) -> None:
        self.data = data
        self.transforms = transforms

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def __len__(self) -> int:
        return len(self.data.records)

    def __getitem__(self, index: int) -> Sample:
        image, target = load_sample(self.data.records[index])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

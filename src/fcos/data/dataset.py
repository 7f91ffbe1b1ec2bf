"""``torch.utils.data.Dataset`` over a :class:`DetectionData`: decode, check, convert, transform."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData, ImageRecord

__all__ = ["DetectionDataset", "Sample", "decode_image", "load_image"]

Sample = tuple[Tensor, dict[str, Tensor]]


def decode_image(path: str | Path, width: int, height: int) -> Image.Image:
    """Fully decode an image as RGB and check it is ``width`` x ``height``.

    Grayscale, RGBA (alpha dropped), palette and CMYK images are converted to RGB. EXIF orientation is
    NOT applied: annotations (and COCO's width/height) describe the pixels as stored.

    Raises:
        DatasetError: unreadable, truncated or corrupt file, or a size other than the declared one.
    """
    try:
        with Image.open(path) as im:
            if im.size != (width, height):
                raise DatasetError(
                    path,
                    f"image is {im.size[0]}x{im.size[1]} but the annotations declare {width}x{height} (w x h)",
                )
            im.load()  # decode now, so truncation surfaces here and not later in a worker
            return im.convert("RGB")
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(path, f"cannot decode the image (corrupt or truncated?): {e}") from None


def load_image(record: ImageRecord) -> Tensor:
    """The record's image as [3, H, W] float32 RGB in [0, 1]."""
    rgb = decode_image(record.path, record.width, record.height)
    array = np.array(rgb, dtype=np.uint8)  # [H, W, 3], a writable copy torch can own
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


class DetectionDataset(Dataset[Sample]):
    """``dataset[i]`` -> ``(image, target)``.

    image: [3, H, W] float32 RGB in [0, 1] (after ``transforms``).
    target: ``boxes`` [N, 4] float32 xyxy pixels of the returned image, ``labels`` [N] int64 in 0..C-1,
    ``image_id`` int64 scalar, ``orig_size`` int64 [2] = (h, w) of the image on disk.
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
        record = self.data.records[index]
        image = load_image(record)
        target = {
            "boxes": torch.from_numpy(record.boxes.copy()),
            "labels": torch.from_numpy(record.labels.copy()),
            "image_id": torch.tensor(record.image_id, dtype=torch.int64),
            "orig_size": torch.tensor([record.height, record.width], dtype=torch.int64),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

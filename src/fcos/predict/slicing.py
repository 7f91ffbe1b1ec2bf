"""Where an image is looked at: the tiles of a sliced prediction and the test-time augmentations, as
views (:class:`View`: a window of the original image, a flip, an input-size factor), and each view's
detections mapped back to the original pixels.

The tile grid (:func:`tile_grid`) covers the image exactly: along each axis tiles start every
``tile - round(overlap * tile)`` pixels and the last one is flush with the border (SAHI's rule, without
its partial last tile: a tile is never smaller than ``tile`` unless the image is). An image no larger
than the tile is one tile, the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["View", "axis_starts", "map_back", "tile_grid"]


@dataclass(frozen=True)
class View:
    """One look at an image: ``window`` (x0, y0, x1, y1) in original pixels, mirrored left-right when
    ``flip``, run at ``scale`` times the model's input size (test-time augmentation; 1: its own size)."""

    window: tuple[int, int, int, int]
    flip: bool = False
    scale: float = 1.0
    full: bool = False  # the whole image (not a tile of it)

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.window
        return y1 - y0, x1 - x0


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` px along an axis of ``length`` px overlapping by ``overlap``
    (a fraction in [0, 1)): 0, step, 2 * step, ... and a last one at ``length - tile``, flush with the
    border. One start (0) when the tile covers the axis."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    if tile < 1:
        raise ValueError(f"tile must be at least 1 px, got {tile}")
    if length <= tile:
        return [0]
    step = max(1, tile - round(overlap * tile))
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def tile_grid(height: int, width: int, tile: tuple[int, int], overlap: float) -> list[tuple[int, int, int, int]]:
    """The windows (x0, y0, x1, y1) of the tiles of (tile_h, tile_w) px covering a ``height`` x ``width``
    image, row by row; each is ``min(tile, side)`` px along each axis."""
    tile_h, tile_w = tile
    rows = axis_starts(height, tile_h, overlap)
    cols = axis_starts(width, tile_w, overlap)
    return [(x, y, min(x + tile_w, width), min(y + tile_h, height)) for y in rows for x in cols]


def map_back(boxes: Tensor, view: View) -> Tensor:
    """Boxes [N, 4] xyxy in the pixels of ``view``'s window (after its flip) -> the original image's."""
    x0, y0, x1, _ = view.window
    if view.flip:
        width = x1 - x0
        boxes = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), dim=1)
    return boxes + torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)

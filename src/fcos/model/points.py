"""Feature-map points: where each output location of each FPN level sits in the input image.

No parameters. Point ``p`` of the flattened list belongs to level ``l`` and grid cell ``(i, j)``
(row-major within a level, levels in order P3..P7), the layout the head's outputs use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fcos.config import PointsConfig

__all__ = ["LevelGrid", "Points", "grid_points", "make_points"]


@dataclass(frozen=True)
class LevelGrid:
    """One FPN level's lattice of points: x_j = offset_x + j * step_x, y_i = offset_y + i * step_y."""

    height: int  # feature map rows
    width: int  # feature map columns
    step_y: float  # spacing of points in input pixels (the stride, or torchvision's padded // size)
    step_x: float
    offset_y: float  # position of point (0, 0)
    offset_x: float
    stride: int  # nominal stride: regression normalisation and center-sampling radius unit
    start: int  # index of this level's first point in the flattened list

    @property
    def size(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Points:
    levels: tuple[LevelGrid, ...]
    xy: Tensor  # [P, 2] point coordinates in the padded input image
    strides: Tensor  # [P] nominal stride of each point's level

    @property
    def num_points(self) -> int:
        return self.xy.shape[0]

    @property
    def level_sizes(self) -> list[int]:
        return [level.size for level in self.levels]


def make_points(
    feature_shapes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    image_size: tuple[int, int],
    config: PointsConfig,
    device: torch.device | str = "cpu",
) -> Points:
    """Points of every level for a padded input of ``image_size`` (H, W) -> :class:`Points`."""
    levels = []
    start = 0
    for (height, width), stride in zip(feature_shapes, strides, strict=True):
        if config.step_from_shape:
            # torchvision's AnchorGenerator: integer division of the padded size by the grid size.
            step_y, step_x = float(image_size[0] // height), float(image_size[1] // width)
        else:
            step_y = step_x = float(stride)
        offset = config.offset * stride  # official: stride // 2 (all strides are even)
        levels.append(LevelGrid(height, width, step_y, step_x, offset, offset, stride, start))
        start += height * width
    xy = torch.cat([
        grid_points(lv.height, lv.width, lv.step_y, lv.step_x, lv.offset_y, lv.offset_x, device) for lv in levels
    ])
    level_strides = torch.cat(
        [torch.full((level.size,), float(level.stride), device=device) for level in levels]
    )
    return Points(tuple(levels), xy, level_strides)


def grid_points(
    height: int, width: int, step_y: float, step_x: float, offset_y: float, offset_x: float, device: torch.device | str
) -> Tensor:
    """[height * width, 2] xy of a lattice of points, row-major (also traced into the ONNX graph)."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * step_y + offset_y
    xs = torch.arange(width, device=device, dtype=torch.float32) * step_x + offset_x
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1)

"""Feature-map points: where each output location of each FPN level sits in the input image.

No parameters. The one place points are placed: the PyTorch model, the assigner's tests and every
exported graph (traced with dynamic H, W) call :func:`make_points`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fcos.config import PointsConfig
from fcos.structures import LevelGrid, Points

__all__ = ["LevelGrid", "Points", "grid_points", "make_points"]


def make_points(
    feature_shapes: Sequence[tuple[Any, Any]],
    strides: Sequence[int],
    image_size: Sequence[Any],
    config: PointsConfig,
    device: torch.device | str = "cpu",
) -> Points:
    """Points of every level for a padded input of ``image_size`` (H, W) -> :class:`Points`.

    Sizes are ints, or traced sizes (0-dim tensors) while exporting: they then stay in the graph, so
    an exported model places points for whatever H, W it is given.
    """
    levels = []
    start = 0
    for (height, width), stride in zip(feature_shapes, strides, strict=True):
        if config.step_from_shape:
            # torchvision's AnchorGenerator: integer division of the padded size by the grid size.
            step_y, step_x = _number(image_size[0] // height), _number(image_size[1] // width)
        else:
            step_y = step_x = float(stride)
        offset = config.offset * stride  # official: stride // 2 (all strides are even)
        levels.append(LevelGrid(height, width, step_y, step_x, offset, offset, stride, start))
        start = start + height * width
    xy = [grid_points(lv.height, lv.width, lv.step_y, lv.step_x, lv.offset_y, lv.offset_x, device) for lv in levels]
    level_strides = [torch.full_like(level_xy[:, 0], float(level.stride)) for level_xy, level in zip(xy, levels, strict=True)]
    return Points(tuple(levels), torch.cat(xy), torch.cat(level_strides))


def grid_points(
    height: int, width: int, step_y: float, step_x: float, offset_y: float, offset_x: float, device: torch.device | str
) -> Tensor:
    """[height * width, 2] xy of a lattice of points, row-major."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * step_y + offset_y
    xs = torch.arange(width, device=device, dtype=torch.float32) * step_x + offset_x
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1)


def _number(value: Any) -> Any:
    """A Python int as float (the eager step), a traced size left as it is (it must stay in the graph)."""
    return float(value) if isinstance(value, int) else value

"""Types that cross layers: a padded image batch, the head's raw outputs, the feature-map points.

Plain dataclasses of tensors, no ``nn.Module``: the network produces them, the assigner, the losses
and the decoder consume them, and none of those has to import the network to do so.

Point ``p`` of the flattened point list belongs to level ``l`` and grid cell ``(i, j)`` (row-major
within a level, levels in order P3..P7): the layout of the head's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["HeadOutputs", "ImageBatch", "LevelGrid", "Points"]


@dataclass
class ImageBatch:
    tensor: Tensor  # [B, 3, H_pad, W_pad] normalized, zero padded at the bottom/right
    image_sizes: list[tuple[int, int]]  # (h, w) of each image after resizing, before padding
    original_sizes: list[tuple[int, int]]  # (h, w) as given to the model


@dataclass
class HeadOutputs:
    """Head outputs of all levels concatenated along the point axis (P = sum of H_l * W_l)."""

    cls_logits: Tensor  # [B, P, C]
    box_ltrb: Tensor  # [B, P, 4] predicted distances to the box sides, in input pixels
    centerness: Tensor  # [B, P] logits
    level_shapes: list[tuple[int, int]]  # (H_l, W_l) per level


@dataclass(frozen=True)
class LevelGrid:
    """One FPN level's lattice of points: x_j = offset_x + j * step_x, y_i = offset_y + i * step_y.

    Sizes are Python numbers, or 0-dim tensors while tracing for export (dynamic H, W).
    """

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

    @property
    def stop(self) -> int:
        return self.start + self.size


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

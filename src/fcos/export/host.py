"""Host side of an exported detector, for every runtime (onnxruntime today): images in, the graph's
inputs out (:func:`prepare_inputs`); the graph's outputs in, detections in original pixels out
(:func:`finish`).

Resizing follows the model's own rule (:mod:`fcos.ops.sizing`), padding is :func:`fcos.ops.sizing.pad_batch`
(the model's padding), and boxes go back with :func:`fcos.ops.sizing.scale_boxes`: the same code the
PyTorch model runs, so both give the same detections.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcos.config import DecodeConfig, InputConfig
from fcos.model.decode import class_aware_nms
from fcos.ops.sizing import fit_shape, pad_batch, resize_image, scale_boxes

__all__ = ["finish", "input_shape", "prepare_inputs"]


def input_shape(height: int, width: int, config: InputConfig, img_size: Sequence[int] | None = None) -> tuple[int, int]:
    """(h, w) an image of ``height`` x ``width`` is resized to before padding: the model's rule, then
    scaled down further when it must fit a fixed ``img_size`` (H, W)."""
    return fit_shape(height, width, config.min_size, config.max_size, img_size)


def prepare_inputs(
    images: Sequence[Tensor], config: InputConfig, img_size: Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """[3, h_i, w_i] float images in [0, 1] -> (``images`` [B, 3, H, W], ``image_sizes`` [B, 2] float32
    (h, w)), each resized by the model's rule and padded at the bottom/right: to the next multiple of
    ``size_divisible`` (a dynamic graph, as the PyTorch model pads), or to ``img_size`` (a fixed one)."""
    resized = []
    for image in images:
        out_hw = input_shape(image.shape[-2], image.shape[-1], config, img_size)
        if out_hw != tuple(image.shape[-2:]):
            image = resize_image(image.float(), out_hw)  # the model's own resize
        resized.append(image.float())
    batch = pad_batch(resized, config.size_divisible, img_size)
    sizes = torch.tensor([im.shape[-2:] for im in resized], dtype=torch.float32)
    return batch, sizes


def finish(
    outputs: Sequence[Tensor], nms_in_graph: bool, config: DecodeConfig, resized_hw: Sequence[int], original_hw: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's graph outputs (batch row 0) -> (boxes [N, 4] in original pixels, scores [N], labels [N]).

    Without NMS in the graph, the candidates get the PyTorch decoder's class-aware NMS and top-N here.
    """
    boxes, scores, labels = (torch.as_tensor(o[0]) for o in outputs[:3])
    if nms_in_graph:
        n = int(outputs[3][0])
        boxes, scores, labels = boxes[:n], scores[:n], labels[:n]
    else:
        valid = labels >= 0
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = class_aware_nms(boxes, scores, labels, config.nms_thresh)[: config.max_detections]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return scale_boxes(boxes, resized_hw, original_hw), scores, labels

"""Outside augmentation pipelines in place of fcos's own: torchvision ``transforms.v2`` and Albumentations.

:func:`adapt` turns a pipeline into an fcos transform ``(image [3, H, W] float in [0, 1], target) ->
(image, target)``:

- a ``torchvision.transforms.v2`` transform (``v2.Compose`` included) is called on a
  ``tv_tensors.Image`` and the target dict with its boxes as ``tv_tensors.BoundingBoxes`` (XYXY), so v2
  moves them with the pixels; ``labels`` pass through, and a ``v2.SanitizeBoundingBoxes`` in the pipeline
  filters them with their boxes;
- an Albumentations ``Compose`` with ``bbox_params`` (any box format) gets the image as HWC uint8 and
  the boxes in its declared format, each with its index as an extra column (Albumentations carries extra
  columns along), so labels follow the boxes it keeps; declared ``label_fields`` get the labels too;
- any other callable is taken to work on fcos's own ``(image, target)`` format.

Whichever it was, the result is brought back to fcos's format: float image in [0, 1], boxes xyxy in the
output's pixels, clipped to it; boxes under 1 px wide or tall are dropped, and every box that did not come
through is counted in ``target["boxes_dropped"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fcos.data.transforms import Target, Transform

__all__ = ["AlbumentationsTransform", "TorchvisionTransform", "adapt", "describe", "finish"]


def adapt(pipeline: Any) -> Transform:
    """An fcos transform running ``pipeline`` (see the module's docstring for what it may be).

    Raises:
        TypeError: a torchvision.transforms (v1) pipeline, which does not move boxes, or not a callable.
        ValueError: an Albumentations Compose without ``bbox_params``.
    """
    module = type(pipeline).__module__
    if module.startswith("albumentations"):
        return AlbumentationsTransform(pipeline)
    if module.startswith("torchvision.transforms"):
        from torchvision.transforms import v2

        if not isinstance(pipeline, v2.Transform):
            raise TypeError(f"{type(pipeline).__name__} is from torchvision.transforms (v1), which does not move "
                            "boxes; use torchvision.transforms.v2")
        return TorchvisionTransform(pipeline)
    if not callable(pipeline):
        raise TypeError(f"transforms must be a torchvision.transforms.v2 pipeline, an Albumentations Compose or a "
                        f"callable (image, target) -> (image, target); got {type(pipeline).__name__}")
    return _Callable(pipeline)


def describe(pipeline: Any) -> str:
    """One line naming the pipeline's kind and its steps ("torchvision v2: RandomIoUCrop, ...")."""
    module = type(pipeline).__module__
    kind = ("Albumentations" if module.startswith("albumentations") else
            "torchvision v2" if module.startswith("torchvision.transforms") else "custom")
    steps = getattr(pipeline, "transforms", None)
    names = [type(t).__name__ for t in steps] if isinstance(steps, list | tuple) else [
        getattr(pipeline, "__name__", type(pipeline).__name__)]
    return f"{kind}: {', '.join(names)}"


class _Callable:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        count = len(target["boxes"])
        out_image, out_target = self.fn(image, target)
        return finish(out_image, out_target, count)

    def __repr__(self) -> str:
        return f"adapted({self.fn!r})"


class TorchvisionTransform:
    """A ``torchvision.transforms.v2`` pipeline on fcos samples."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        h, w = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
        out_image, out = self.pipeline(tv_tensors.Image(image), {**target, "boxes": boxes})
        boxes = out["boxes"]
        if isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
            boxes = TF.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        out = {**out, "boxes": boxes.as_subclass(Tensor)}
        return finish(out_image, out, len(target["boxes"]))

    def __repr__(self) -> str:
        return f"TorchvisionTransform({self.pipeline!r})"


class AlbumentationsTransform:
    """An Albumentations ``Compose`` (with ``bbox_params``) on fcos samples."""

    def __init__(self, compose: Any) -> None:
        processor = getattr(compose, "processors", {}).get("bboxes")
        if processor is None:
            raise ValueError("the Albumentations Compose has no bbox_params, so it would not move the boxes; build "
                             "it with bbox_params=A.BboxParams(format='pascal_voc', label_fields=['labels'])")
        self.compose = compose
        self.format = processor.params.format
        self.label_fields = list(processor.params.label_fields or [])

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        array = image.permute(1, 2, 0).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
        boxes = _to_format(target["boxes"].numpy().astype(np.float64), self.format, h, w)
        indexed = np.concatenate([boxes, np.arange(len(boxes), dtype=np.float64)[:, None]], axis=1)
        labels = target["labels"].tolist()
        out = self.compose(image=array, bboxes=indexed, **{name: labels for name in self.label_fields})
        out_image = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1)
        kept = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, indexed.shape[1])
        index = torch.from_numpy(kept[:, 4].round().astype(np.int64))
        new_boxes = torch.from_numpy(_from_format(kept[:, :4], self.format, *out_image.shape[-2:])).float()
        out_target = {**target, "boxes": new_boxes, "labels": target["labels"][index]}
        return finish(out_image, out_target, len(target["boxes"]))

    def __repr__(self) -> str:
        return f"AlbumentationsTransform({self.format}, {self.compose!r})"


def _to_format(boxes: np.ndarray, fmt: str, h: int, w: int) -> np.ndarray:
    """xyxy pixels [N, 4] -> Albumentations' ``fmt``."""
    x0, y0, x1, y1 = boxes.T
    if fmt == "pascal_voc":
        return boxes
    if fmt == "albumentations":
        return np.stack([x0 / w, y0 / h, x1 / w, y1 / h], axis=1)
    if fmt == "coco":
        return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    if fmt == "yolo":
        return np.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h], axis=1)
    raise ValueError(f"unsupported Albumentations bbox format {fmt!r}")


def _from_format(boxes: np.ndarray, fmt: str, h: int, w: int) -> np.ndarray:
    """Albumentations' ``fmt`` [N, 4] -> xyxy pixels."""
    a, b, c, d = boxes.T
    if fmt == "pascal_voc":
        return boxes
    if fmt == "albumentations":
        return np.stack([a * w, b * h, c * w, d * h], axis=1)
    if fmt == "coco":
        return np.stack([a, b, a + c, b + d], axis=1)
    if fmt == "yolo":
        return np.stack([(a - c / 2) * w, (b - d / 2) * h, (a + c / 2) * w, (b + d / 2) * h], axis=1)
    raise ValueError(f"unsupported Albumentations bbox format {fmt!r}")


def finish(image: Any, target: Target, boxes_in: int) -> tuple[Tensor, Target]:
    """An outside pipeline's output in fcos's format (see the module's docstring).

    Raises:
        ValueError: not a 3-channel tensor, float values outside [0, 1] (a Normalize: the model
            normalises), or boxes and labels of different lengths.
    """
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise ValueError(f"custom transforms must return a [3, H, W] image tensor, got {shape}")
    image = image.as_subclass(Tensor)
    if image.dtype == torch.uint8:
        image = image.float().div_(255.0)
    elif image.is_floating_point():
        low, high = float(image.min()) if image.numel() else 0.0, float(image.max()) if image.numel() else 0.0
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"custom transforms must leave the image in [0, 1] (got {low:.3g}..{high:.3g}); "
                             "leave normalisation to the model (no Normalize)")
        image = image.float()
    else:
        raise ValueError(f"custom transforms must return a uint8 or float image, got {image.dtype}")
    boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = target.get("labels")
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"custom transforms returned {len(boxes)} boxes but {len(labels)} labels; filter boxes "
                         "with v2.SanitizeBoundingBoxes or Albumentations' bbox_params, which keep labels in step")
    h, w = image.shape[-2:]
    limit = torch.tensor([w, h, w, h], dtype=torch.float32)
    boxes = torch.minimum(boxes.clamp(min=0), limit)
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    out = {**target, "boxes": boxes[keep]}
    if labels is not None:
        out["labels"] = torch.as_tensor(labels)[keep]
    out["boxes_dropped"] = target.get("boxes_dropped", torch.tensor(0)) + max(0, boxes_in - int(keep.sum()))
    return image, out

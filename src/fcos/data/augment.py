"""Training augmentations that move boxes (tiles of large images, scale jitter + crop, mosaic) and the rule
for boxes a crop cuts.

Every transform is a callable ``(image [3, H, W] float in [0, 1], target) -> (image, target)`` whose
boxes (``target["boxes"]`` [N, 4] xyxy pixels) always describe the returned pixels; ``labels`` follow
the boxes, other keys pass through.

Cut boxes: a crop window (scale jitter) or the edge of the mosaic canvas may cut a box. It is clipped to
what remains and kept when at least ``min_visible`` of its area remains and it is at least 1 px wide and
tall in the output; otherwise it is dropped and counted in ``target["boxes_dropped"]`` (an int64 scalar
the trainer sums into its summary). So no augmentation emits a degenerate box.

Randomness comes from torch's global RNG, which :class:`~fcos.data.sampling.SeededSamples` seeds per
sample from (seed, epoch, index): a sample is the same for any number of workers or processes, and a
resumed run continues bit-exactly.

Why by hand rather than ``torchvision.transforms.v2`` (which moves boxes too, and which
:mod:`fcos.data.adapters` accepts in place of these): the sizes must follow fcos's one size rule
(:mod:`fcos.ops.sizing`; v2's ``Resize`` rounds differently and antialiases), the cut-box rule needs each
box's area before the crop (v2's ``SanitizeBoundingBoxes`` sees only what is left) and a count of what
it drops, v2 has no mosaic, and each of these is a few lines of tensor indexing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fcos.data.dataset import load_sample
from fcos.data.records import ImageRecord
from fcos.data.transforms import Target, Transform
from fcos.ops.sizing import scale_boxes

__all__ = ["Mosaic", "ScaleJitterCrop", "TileCrop", "check_range", "cut_boxes", "resize_to"]


def check_range(values: Sequence[float], name: str, kind: type) -> None:
    if len(values) != 2 or not 0 < values[0] <= values[1] or any(not isinstance(v, int | float) for v in values):
        raise ValueError(f"{name} is a range low-high with 0 < low <= high, got {tuple(values)}")
    if kind is int and any(int(v) != v for v in values):
        raise ValueError(f"{name} is a range of whole pixel sizes, got {tuple(values)}")


# ---------------------------------------------------------------------------------------- boxes
def cut_boxes(boxes: Tensor, window: Sequence[float], min_visible: float, min_side: float = 1.0) -> tuple[Tensor, Tensor]:
    """Boxes [N, 4] xyxy clipped to ``window`` (x0, y0, x1, y1), in the same coordinates, and which to keep.

    Returns ``(clipped [N, 4], keep [N] bool)``: a box is kept when at least ``min_visible`` of its area
    lies inside the window and what lies inside is at least ``min_side`` wide and tall.
    """
    x0, y0, x1, y1 = (float(v) for v in window)
    clipped = torch.stack((boxes[:, 0].clamp(x0, x1), boxes[:, 1].clamp(y0, y1),
                           boxes[:, 2].clamp(x0, x1), boxes[:, 3].clamp(y0, y1)), dim=1)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = (w >= min_side) & (h >= min_side) & (w * h >= min_visible * area)
    return clipped, keep


def _kept(target: Target, boxes: Tensor, keep: Tensor, counted: Tensor | None = None) -> Target:
    """``target`` with ``boxes`` [N, 4] and its labels filtered by ``keep``; the dropped ones counted
    (only those in ``counted`` [N] bool when given)."""
    out = {**target, "boxes": boxes[keep]}
    if "labels" in target:
        out["labels"] = target["labels"][keep]
    dropped = ~keep if counted is None else ~keep & counted
    out["boxes_dropped"] = target.get("boxes_dropped", torch.tensor(0)) + int(dropped.sum())
    return out


def resize_to(image: Tensor, boxes: Tensor, out_hw: Sequence[int]) -> tuple[Tensor, Tensor]:
    """image [3, H, W] -> [3, *out_hw] (bilinear, antialiased when shrinking); boxes [N, 4] scaled with it."""
    h, w = image.shape[-2:]
    out_hw = (int(out_hw[0]), int(out_hw[1]))
    if out_hw == (h, w):
        return image, boxes
    shrink = out_hw[0] < h or out_hw[1] < w
    image = F.interpolate(image[None], size=out_hw, mode="bilinear", align_corners=False, antialias=shrink)[0]
    return image, scale_boxes(boxes, (h, w), out_hw)


def _canvas(fill: Tensor, height: int, width: int) -> Tensor:
    return fill.view(3, 1, 1).expand(3, height, width).clone()


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(high: int) -> int:
    """Uniform in [0, high] (inclusive)."""
    return int(torch.randint(high + 1, ()).item())


# ---------------------------------------------------------------------------------------- tiles
class TileCrop:
    """Training on images larger than the network's input (``--tile SIZE``): each sample is a ``size`` x
    ``size`` crop of the image scaled by ``scale`` (1: native resolution, so a 14 px car stays 14 px instead
    of shrinking with the whole image), or with probability ``full_ratio`` the whole image through
    ``whole`` (the model's input rule at ``size``), so large objects keep being learned.

    Crops favour objects: with probability ``object_bias`` (and when the image has boxes) the window is
    drawn uniformly among those that contain a box picked at random (centred on it when it is larger
    than the window), else uniformly over the image. An image smaller than ``size`` along a side is kept
    whole along it. Cut boxes follow the module's rule (``min_visible``). Inference slices the image into
    tiles of ``size / scale`` original pixels (``--slice auto``): the scale training saw.
    """

    def __init__(self, size: int, *, scale: float = 1.0, full_ratio: float = 0.0, min_visible: float = 0.25,
                 object_bias: float = 0.8, whole: Transform | None = None) -> None:
        if size < 32 or scale <= 0 or not 0.0 <= full_ratio <= 1.0 or not 0.0 <= object_bias <= 1.0:
            raise ValueError(f"TileCrop needs size >= 32, scale > 0 and probabilities in [0, 1], got size {size}, "
                             f"scale {scale}, full_ratio {full_ratio}, object_bias {object_bias}")
        if full_ratio > 0 and whole is None:
            raise ValueError("TileCrop with full_ratio > 0 needs the whole-image transform (whole=)")
        self.size, self.scale, self.full_ratio, self.min_visible = size, scale, full_ratio, min_visible
        self.object_bias, self.whole = object_bias, whole

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if self.full_ratio and float(torch.rand(())) < self.full_ratio:
            return self.whole(image, target)  # type: ignore[misc]
        boxes = target["boxes"]
        if self.scale != 1.0:
            h, w = image.shape[-2:]
            image, boxes = resize_to(image, boxes, (max(1, round(h * self.scale)), max(1, round(w * self.scale))))
        x0, y0, x1, y1 = window = self._window(boxes, image.shape[-2:])
        clipped, keep = cut_boxes(boxes, window, self.min_visible)
        shifted = clipped - torch.tensor([x0, y0, x0, y0], dtype=clipped.dtype)
        # Boxes wholly outside the tile are not in this sample; those it cuts below min_visible are dropped.
        cut = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        return image[:, y0:y1, x0:x1], _kept(target, shifted, keep, counted=cut)

    def _window(self, boxes: Tensor, hw: Sequence[int]) -> tuple[int, int, int, int]:
        h, w = int(hw[0]), int(hw[1])
        ch, cw = min(self.size, h), min(self.size, w)
        if len(boxes) and float(torch.rand(())) < self.object_bias:
            box = boxes[_randint(len(boxes) - 1)]
            x0 = _start_around(float(box[0]), float(box[2]), cw, w)
            y0 = _start_around(float(box[1]), float(box[3]), ch, h)
        else:
            x0, y0 = _randint(w - cw), _randint(h - ch)
        return x0, y0, x0 + cw, y0 + ch

    def __repr__(self) -> str:
        return f"TileCrop({self.size}, scale={self.scale}, full_ratio={self.full_ratio}, min_visible={self.min_visible})"


def _start_around(lo: float, hi: float, crop: int, length: int) -> int:
    """A window start along an axis, uniform among those whose window of ``crop`` px holds [lo, hi]
    (centred on it when it is longer than the window), within [0, length - crop]."""
    if hi - lo >= crop:
        first = last = round((lo + hi - crop) / 2)
    else:
        first, last = math.ceil(hi - crop), math.floor(lo)
    first, last = max(0, min(first, length - crop)), max(0, min(last, length - crop))
    return first + _randint(max(0, last - first))


# ---------------------------------------------------------------------------------------- scale jitter
class ScaleJitterCrop:
    """Large-scale jitter (Ghiasi et al. 2021, "Simple Copy-Paste"; detectron2's ResizeScale +
    FixedSizeCrop): resize by a factor drawn from [low, high], then crop a window of the input's size
    (factor > 1) or pad to it with ``fill`` at the bottom and right, as the model pads (factor < 1).

    The crop is box-aware: of up to ``tries`` random windows, the first that keeps a box (by
    :func:`cut_boxes`) is taken; failing that, a window centred on a random box. Cut boxes follow the
    module's rule; the output has the input's size, so the model's size rule leaves it as it is.
    """

    def __init__(self, low: float, high: float, *, min_visible: float = 0.25,
                 fill: Sequence[float] = (0.0, 0.0, 0.0), tries: int = 10) -> None:
        check_range((low, high), "scale jitter", float)
        self.low, self.high, self.min_visible, self.tries = low, high, min_visible, tries
        self.fill = torch.tensor(fill, dtype=torch.float32)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        factor = _uniform(self.low, self.high)
        scaled_hw = (max(1, int(h * factor)), max(1, int(w * factor)))
        image, boxes = resize_to(image, target["boxes"], scaled_hw)
        x0, y0, x1, y1 = window = self._window(boxes, scaled_hw, (h, w))
        clipped, keep = cut_boxes(boxes, window, self.min_visible)
        out = _canvas(self.fill.to(image.dtype), h, w)
        out[:, : y1 - y0, : x1 - x0] = image[:, y0:y1, x0:x1]
        shifted = clipped - torch.tensor([x0, y0, x0, y0], dtype=clipped.dtype)
        return out, _kept(target, shifted, keep)

    def _window(self, boxes: Tensor, scaled_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        (sh, sw), (oh, ow) = scaled_hw, out_hw
        ch, cw = min(sh, oh), min(sw, ow)
        if (ch, cw) == (sh, sw):  # nothing to crop: the whole image, padded
            return 0, 0, sw, sh
        for _ in range(self.tries):
            x0, y0 = _randint(sw - cw), _randint(sh - ch)
            window = (x0, y0, x0 + cw, y0 + ch)
            if len(boxes) == 0 or cut_boxes(boxes, window, self.min_visible)[1].any():
                return window
        box = boxes[_randint(len(boxes) - 1)]
        cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
        x0 = min(max(round(cx - cw / 2), 0), sw - cw)
        y0 = min(max(round(cy - ch / 2), 0), sh - ch)
        return x0, y0, x0 + cw, y0 + ch

    def __repr__(self) -> str:
        return f"ScaleJitterCrop({self.low}, {self.high}, min_visible={self.min_visible})"


# ---------------------------------------------------------------------------------------- mosaic
class Mosaic:
    """With probability ``p``: this image and three drawn at random from ``records``, each fitted into
    the image's size (H, W), meet at a random centre of a (2H, 2W) canvas (YOLOv4's mosaic, laid out as
    YOLOX and ultralytics do: this image top-left, the centre uniform in the middle half); the canvas is
    then halved to (H, W), so the output has the input's size and objects half theirs.

    Boxes cut by the canvas edge follow the module's rule (at least 2 px on the canvas: 1 px after
    halving). ``image_id`` and ``orig_size`` stay this image's.
    """

    def __init__(self, records: Sequence[ImageRecord], p: float = 0.5, *, min_visible: float = 0.25,
                 fill: Sequence[float] = (0.0, 0.0, 0.0), load: Callable[[ImageRecord], tuple[Tensor, Target]] = load_sample) -> None:
        if not records:
            raise ValueError("Mosaic needs the dataset's records to draw the other three images from")
        self.records, self.p, self.min_visible, self.load = list(records), p, min_visible, load
        self.fill = torch.tensor(fill, dtype=torch.float32)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if float(torch.rand(())) >= self.p:
            return image, target
        h, w = image.shape[-2:]
        others = torch.randint(len(self.records), (3,)).tolist()
        xc, yc = int(_uniform(w / 2, 3 * w / 2)), int(_uniform(h / 2, 3 * h / 2))
        canvas = _canvas(self.fill.to(image.dtype), 2 * h, 2 * w)
        parts = [(image, target)] + [self._fitted(self.records[j], h, w) for j in others]
        boxes, labels, dropped = [], [], 0
        for slot, (part, part_target) in enumerate(parts):
            (ax0, ay0, ax1, ay1), (bx0, by0) = _placement(slot, xc, yc, part.shape[-2:], (h, w))
            canvas[:, ay0:ay1, ax0:ax1] = part[:, by0 : by0 + ay1 - ay0, bx0 : bx0 + ax1 - ax0]
            shift = torch.tensor([ax0 - bx0, ay0 - by0] * 2, dtype=torch.float32)
            clipped, keep = cut_boxes(part_target["boxes"] + shift, (ax0, ay0, ax1, ay1), self.min_visible, 2.0)
            boxes.append(clipped[keep])
            labels.append(part_target["labels"][keep])
            dropped += int((~keep).sum())
        out = F.interpolate(canvas[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
        result = {**target, "boxes": scale_boxes(torch.cat(boxes), (2 * h, 2 * w), (h, w)), "labels": torch.cat(labels)}
        result["boxes_dropped"] = target.get("boxes_dropped", torch.tensor(0)) + dropped
        return out, result

    def _fitted(self, record: ImageRecord, h: int, w: int) -> tuple[Tensor, Target]:
        image, target = self.load(record)
        ih, iw = image.shape[-2:]
        scale = min(h / ih, w / iw)
        image, boxes = resize_to(image, target["boxes"], (max(1, int(ih * scale)), max(1, int(iw * scale))))
        return image, {**target, "boxes": boxes}

    def __repr__(self) -> str:
        return f"Mosaic(p={self.p}, {len(self.records)} images, min_visible={self.min_visible})"


def _placement(slot: int, xc: int, yc: int, part_hw: Sequence[int], hw: tuple[int, int]):
    """Where image ``slot`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right of the centre) lands
    on the (2H, 2W) canvas: its window (x0, y0, x1, y1) there and the top-left of the part shown."""
    ph, pw = int(part_hw[0]), int(part_hw[1])
    width, height = 2 * hw[1], 2 * hw[0]
    left, top = slot in (0, 2), slot in (0, 1)
    ax0, ax1 = (max(xc - pw, 0), xc) if left else (xc, min(xc + pw, width))
    ay0, ay1 = (max(yc - ph, 0), yc) if top else (yc, min(yc + ph, height))
    bx0 = pw - (ax1 - ax0) if left else 0
    by0 = ph - (ay1 - ay0) if top else 0
    return (ax0, ay0, ax1, ay1), (bx0, by0)

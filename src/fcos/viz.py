"""Drawing detections with Pillow only (no matplotlib): boxes, labels, scores, ground truth, grids.

Predictions are solid boxes with a filled label tag ("apple 0.87"); ground truth is dashed in the same
class colour with a "GT" tag, so the two can be told apart even for the same class.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["class_color", "draw_detections", "image_grid"]


@cache
def class_color(label: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour per class index (golden-ratio hue steps)."""
    hue = (0.08 + label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _as_array(values: Any, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if values is None:
        return np.zeros((0, *shape_tail))
    if hasattr(values, "detach"):  # torch.Tensor without importing torch
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(-1, *shape_tail) if array.size else np.zeros((0, *shape_tail))


@cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], color: tuple[int, int, int], width: int) -> None:
    x0, y0, x1, y1 = box
    dash, gap = 4 * width + 4, 3 * width + 2
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = np.arange(0.0, length, dash + gap)
        for start in steps:
            end = min(start + dash, length)
            t0, t1 = start / max(length, 1e-9), end / max(length, 1e-9)
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=color,
                width=width,
            )


def _tag(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple[int, int, int], font, bounds) -> None:
    """Label text on a filled rectangle, above the box corner when it fits, else inside it."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    x = min(max(xy[0], 0), max(bounds[0] - w, 0))
    y = xy[1] - h if xy[1] - h >= 0 else xy[1]
    y = min(y, max(bounds[1] - h, 0))
    draw.rectangle([x, y, x + w, y + h], fill=fill)
    draw.text((x + 2 - left, y + 2 - top), text, fill=_text_color(fill), font=font)


def draw_detections(
    image: Image.Image,
    boxes: Any,
    labels: Any,
    scores: Any = None,
    class_names: Sequence[str] | None = None,
    *,
    gt_boxes: Any = None,
    gt_labels: Any = None,
    score_thresh: float = 0.0,
) -> Image.Image:
    """A copy of ``image`` (RGB) with detections drawn.

    Args:
        image: any PIL image; it is converted to RGB, the original is not modified.
        boxes: [N, 4] xyxy in the image's pixels (list, numpy array or tensor).
        labels: [N] class indices; the colour is per class.
        scores: [N] or None; shown next to the class name; detections below ``score_thresh`` are skipped.
        class_names: names indexed by label (fall back to the index).
        gt_boxes, gt_labels: optional ground truth [M, 4] / [M], drawn dashed with a "GT" tag.
    """
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    size = min(canvas.size)
    width = max(2, round(size / 300))
    font = _font(max(11, round(size / 40)))

    def name(label: int) -> str:
        if class_names is not None and 0 <= label < len(class_names):
            return str(class_names[label])
        return str(label)

    gt_b, gt_l = _as_array(gt_boxes, (4,)), _as_array(gt_labels).astype(int)
    for box, label in zip(gt_b, gt_l):
        color = class_color(int(label))
        _dashed_rectangle(draw, box.tolist(), color, width)
        _tag(draw, (box[0], box[3]), f"GT: {name(int(label))}", color, font, canvas.size)

    det_b, det_l = _as_array(boxes, (4,)), _as_array(labels).astype(int)
    det_s = _as_array(scores) if scores is not None else None
    if len(det_b) != len(det_l) or (det_s is not None and len(det_s) != len(det_b)):
        raise ValueError(f"boxes ({len(det_b)}), labels ({len(det_l)}) and scores must have the same length")
    # Lowest score first so the most confident boxes end up on top.
    order = np.argsort(det_s, kind="stable") if det_s is not None else np.arange(len(det_b))
    for i in order:
        if det_s is not None and det_s[i] < score_thresh:
            continue
        color = class_color(int(det_l[i]))
        x0, y0, x1, y1 = det_b[i].tolist()
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=color, width=width)
        text = name(int(det_l[i])) if det_s is None else f"{name(int(det_l[i]))} {det_s[i]:.2f}"
        _tag(draw, (x0, y0), text, color, font, canvas.size)
    return canvas


def image_grid(images: Sequence[Image.Image], cols: int, *, pad: int = 4, background=(32, 32, 32)) -> Image.Image:
    """Tile images row by row into ``cols`` columns; each cell is as large as the largest image,
    images are centred in their cells on ``background``."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    grid = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, rows * cell_h + (rows + 1) * pad), background)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x = pad + c * (cell_w + pad) + (cell_w - im.width) // 2
        y = pad + r * (cell_h + pad) + (cell_h - im.height) // 2
        grid.paste(im.convert("RGB"), (x, y))
    return grid

"""Drawing detections with Pillow only (no matplotlib): boxes, labels, scores, ground truth, grids.

Predictions are solid boxes with a filled label tag ("apple 0.87"); ground truth is dashed in the same
class colour, so the two can be told apart even for the same class. A ground-truth box gets a "GT" tag
only when no drawn prediction of its class covers it (IoU >= 0.5): the tags then point at the misses.

Tags stay readable on dense scenes (many small objects):

- a tag's font scales with the image (1/40 of its shorter side) and shrinks with its box (at most about
  half the box's height, and the tag about 1.5 box widths wide), never below :data:`MIN_FONT` px;
- a tag sits above its box (ground truth: below), else inside it, else on the other side, always whole
  inside the image, and never on a tag already placed: tags are placed by priority (predictions by
  descending score, then ground truth), each where it overlaps no earlier tag; a tag that cannot avoid
  covering more than :data:`MAX_TAG_OVERLAP` of an earlier one (or of itself) is left out: its box is
  still drawn, in its class colour;
- ``show_labels=False`` draws boxes only, ``show_conf=False`` drops the scores, ``line_width`` sets the
  box lines (default: 1/300 of the shorter side, at least 2 px), as ultralytics' ``--hide-labels``,
  ``--hide-conf`` and ``--line-width`` do.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MAX_TAG_OVERLAP", "MIN_FONT", "class_color", "draw_detections", "image_grid", "image_rows", "place_tags"]

MIN_FONT = 10  # px: the smallest tag text (Pillow's default font stays legible down to about this)
MAX_TAG_OVERLAP = 0.15  # a tag sharing more than this share of the smaller tag with an earlier one is left out
Rect = tuple[float, float, float, float]


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


def _font_size(text: str, box: Sequence[float], image_font: int) -> int:
    """The tag's font: the image's size, shrunk to about half the box's height and so that the tag is at
    most ~1.5 box widths wide, never below MIN_FONT."""
    x0, y0, x1, y1 = box
    width_at_image_font = max(_font(image_font).getlength(text), 1.0)
    by_height = 0.35 * (y1 - y0)
    by_width = image_font * 1.0 * (x1 - x0) / width_at_image_font
    return int(max(MIN_FONT, min(image_font, by_height, by_width)))


def _overlap(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_tags(boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[float, float]], canvas: tuple[int, int],
               below: Sequence[bool] | None = None) -> list[Rect | None]:
    """Where each tag goes (module doc), in priority order: boxes [N] xyxy, tag sizes [N] (w, h), canvas
    (W, H); ``below[i]`` prefers the spot under the box (ground truth). Returns a rect or None (left out)."""
    placed: list[Rect] = []
    out: list[Rect | None] = []
    for i, ((x0, y0, _x1, y1), (w, h)) in enumerate(zip(boxes, sizes, strict=True)):
        spots = [(x0, y0 - h), (x0, y0), (x0, y1), (x0, y1 - h)]  # above, inside top, below, inside bottom
        if below is not None and below[i]:
            spots = [spots[2], spots[3], spots[0], spots[1]]
        best, best_cover = None, float("inf")
        for x, y in spots:
            x = min(max(x, 0), max(canvas[0] - w, 0))
            y = min(max(y, 0), max(canvas[1] - h, 0))
            rect = (x, y, x + w, y + h)
            # The share of the smaller of two tags that they have in common: text under text is unreadable.
            cover = max((_overlap(rect, other) / max(min(w * h, (other[2] - other[0]) * (other[3] - other[1])), 1e-9)
                         for other in placed), default=0.0)
            if cover < best_cover:
                best, best_cover = rect, cover
            if cover == 0:
                break
        keep = best is not None and best_cover <= MAX_TAG_OVERLAP
        out.append(best if keep else None)
        if keep:
            placed.append(best)
    return out


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
    line_width: int | None = None,
    show_labels: bool = True,
    show_conf: bool = True,
    font_size: int | None = None,
) -> Image.Image:
    """A copy of ``image`` (RGB) with detections drawn.

    Args:
        image: any PIL image; it is converted to RGB, the original is not modified.
        boxes: [N, 4] xyxy in the image's pixels (list, numpy array or tensor).
        labels: [N] class indices; the colour is per class.
        scores: [N] or None; shown next to the class name; detections below ``score_thresh`` are skipped.
        class_names: names indexed by label (fall back to the index).
        gt_boxes, gt_labels: optional ground truth [M, 4] / [M], drawn dashed with a "GT" tag.
        line_width: box line width in px (default: from the image size).
        show_labels, show_conf: draw the tags at all; the scores in them.
        font_size: the largest tag font (default: 1/40 of the image's shorter side); tags shrink with their boxes.
    """
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    size = min(canvas.size)
    width = max(1, int(line_width)) if line_width else max(2, round(size / 300))
    image_font = max(MIN_FONT, font_size or round(size / 40))

    def name(label: int) -> str:
        if class_names is not None and 0 <= label < len(class_names):
            return str(class_names[label])
        return str(label)

    det_b, det_l = _as_array(boxes, (4,)), _as_array(labels).astype(int)
    det_s = _as_array(scores) if scores is not None else None
    if len(det_b) != len(det_l) or (det_s is not None and len(det_s) != len(det_b)):
        raise ValueError(f"boxes ({len(det_b)}), labels ({len(det_l)}) and scores must have the same length")
    gt_b, gt_l = _as_array(gt_boxes, (4,)), _as_array(gt_labels).astype(int)
    # Tags in priority order: predictions by descending score, then ground truth.
    tags: list[tuple[str, tuple[int, int, int], list[float], bool]] = []
    for box, label in zip(gt_b, gt_l):
        _dashed_rectangle(draw, box.tolist(), class_color(int(label)), width)
    # Lowest score first so the most confident boxes end up on top.
    order = np.argsort(det_s, kind="stable") if det_s is not None else np.arange(len(det_b))
    shown = [i for i in order if det_s is None or det_s[i] >= score_thresh]
    for i in shown:
        color = class_color(int(det_l[i]))
        x0, y0, x1, y1 = det_b[i].tolist()
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=color, width=width)
        text = name(int(det_l[i])) if det_s is None or not show_conf else f"{name(int(det_l[i]))} {det_s[i]:.2f}"
        tags.append((text, color, [x0, y0, max(x0, x1), max(y0, y1)], False))
    tags.reverse()
    for box, label in zip(gt_b, gt_l):
        if not _found(box, int(label), det_b[shown], det_l[shown]):
            tags.append((f"GT: {name(int(label))}", class_color(int(label)), box.tolist(), True))
    if show_labels and tags:
        _draw_tags(draw, tags, image_font, canvas.size)
    return canvas


def _found(box: np.ndarray, label: int, boxes: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a drawn prediction of the same class covers a ground-truth box (IoU >= 0.5): its tag
    already names the class, so the ground truth's own tag would only add clutter."""
    same = boxes[labels == label]
    if not len(same):
        return False
    lt, rb = np.maximum(same[:, :2], box[:2]), np.minimum(same[:, 2:], box[2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    union = np.prod(box[2:] - box[:2]) + np.clip(same[:, 2:] - same[:, :2], 0, None).prod(1) - inter
    return bool((inter >= 0.5 * np.maximum(union, 1e-9)).any())


def _draw_tags(draw: ImageDraw.ImageDraw, tags: list, image_font: int, canvas: tuple[int, int]) -> None:
    fonts, sizes, offsets = [], [], []
    for text, _, box, _ in tags:
        font = _font(_font_size(text, box, image_font))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        fonts.append(font)
        sizes.append((right - left + 4, bottom - top + 4))
        offsets.append((left, top))
    rects = place_tags([t[2] for t in tags], sizes, canvas, [t[3] for t in tags])
    for (text, color, _, _), font, (left, top), rect in reversed(list(zip(tags, fonts, offsets, rects))):
        if rect is None:
            continue
        x, y, x1, y1 = rect
        draw.rectangle([x, y, x1 - 1, y1 - 1], fill=color)
        draw.text((x + 2 - left, y + 2 - top), text, fill=_text_color(color), font=font)


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


def image_rows(images: Sequence[Image.Image], max_width: int, *, pad: int = 4, background=(32, 32, 32)) -> Image.Image:
    """Images of different sizes, left to right in rows no wider than ``max_width`` (or the widest image),
    each row as tall as its tallest image: no cell is as large as the largest image, as a fixed grid's are."""
    if not images:
        raise ValueError("image_rows needs at least one image")
    width = max(max_width, max(im.width for im in images) + 2 * pad)
    rows: list[list[Image.Image]] = [[]]
    used = pad
    for im in images:
        if rows[-1] and used + im.width + pad > width:
            rows.append([])
            used = pad
        rows[-1].append(im)
        used += im.width + pad
    heights = [max(im.height for im in row) for row in rows]
    row_width = max(sum(im.width + pad for im in row) + pad for row in rows)
    grid = Image.new("RGB", (row_width, sum(heights) + pad * (len(rows) + 1)), background)
    y = pad
    for row, height in zip(rows, heights):
        x = pad
        for im in row:
            grid.paste(im.convert("RGB"), (x, y + (height - im.height) // 2))
            x += im.width + pad
        y += height + pad
    return grid

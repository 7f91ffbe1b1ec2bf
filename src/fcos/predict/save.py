"""What ``fcos predict`` writes beside the drawn images, per image or video frame:

- ``--save-txt``: a YOLO label file, one line per detection, ``class cx cy w h score``: the class index
  (0-based, the model's class order), the box centre and size divided by the image's width and height,
  and the score (ultralytics' ``save_txt`` with ``save_conf``). An image without detections gets an
  empty file, so "predicted, nothing found" differs from "not predicted".
- ``--save-crops``: each detection's pixels (the box rounded outwards, clipped to the image) as a JPEG in
  a folder per class, ``crops/<class>/<image stem>_<k>.jpg`` with ``k`` the detection's rank by score.

Every file is written through :mod:`fcos.utils.files` (atomically; a failure is a WriteError naming the file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fcos.utils.files import save_image, write_text

__all__ = ["folder_name", "save_crops", "write_labels", "yolo_lines"]


def yolo_lines(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> str:
    """YOLO label text for [N, 4] xyxy pixel boxes, [N] labels and scores, in an image of ``size`` (W, H)."""
    width, height = size
    lines = []
    for (x0, y0, x1, y1), label, score in zip(np.asarray(boxes, np.float64).reshape(-1, 4), labels, scores):
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        w, h = (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{int(label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {float(score):.5f}\n")
    return "".join(lines)


def write_labels(path: Path, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> Path:
    return write_text(path, yolo_lines(boxes, labels, scores, size))


def folder_name(name: str) -> str:
    """A class name usable as one folder name (path separators and control characters replaced)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip(" .")
    return cleaned or "_"


def save_crops(
    image: Image.Image, boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], folder: Path, stem: str
) -> list[Path]:
    """Each box's crop of ``image`` as ``folder/<class>/<stem>_<k>.jpg`` (k: 0, 1, ... in the given order)."""
    written = []
    for k, ((x0, y0, x1, y1), label) in enumerate(zip(np.asarray(boxes, np.float64).reshape(-1, 4), labels)):
        left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
        right, bottom = min(image.width, math.ceil(x1)), min(image.height, math.ceil(y1))
        if right <= left or bottom <= top:
            continue  # a degenerate box: no pixel to save
        name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))
        path = folder / folder_name(name) / f"{stem}_{k}.jpg"
        written.append(save_image(image.crop((left, top, right, bottom)), path, quality=95))
    return written

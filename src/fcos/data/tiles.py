"""A small-object, dense dataset built from real ones: downscaled images packed side by side into tiles.

Real photos with a few large objects (fruit, raccoon) become ``size`` x ``size`` tiles holding dozens
of small objects, the regime of aerial and microscope images where a detector's small-stride levels
do all the work. Each tile is filled row by row ("shelf packing"): a row draws a height from ``cell``,
and source images, scaled so their longer side equals that height, are placed left to right until the
row is full. Sources are drawn from a seeded permutation of the split (a fresh one each pass), so a
source appears in several tiles at different scales and positions. Train tiles use only the sources'
train splits and val tiles only their val splits. The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fcos.data.dataset import decode_image
from fcos.data.layouts import load_annotations
from fcos.data.records import ImageRecord
from fcos.utils.flags import SettingError

__all__ = ["generate_tiles"]

_GAP = 2  # px of background between neighbouring sources
_BACKGROUND = (114, 114, 114)


def generate_tiles(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    num_train: int = 100,
    num_val: int = 20,
    size: int = 640,
    cell: tuple[int, int] = (48, 128),
    min_box: float = 2.0,
    fill: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/images/{train,val}_NNNNN.jpg`` and ``out_dir/annotations/{train,val}.json`` (COCO).

    Args:
        sources: datasets with ``train`` and ``val`` splits, any layout :func:`fcos.data.load_annotations`
            reads. Classes are the union of theirs by name, in the order first seen.
        size: side of the square tiles, pixels.
        cell: (smallest, largest) row height, pixels: the longer side of a placed source image.
        min_box: boxes narrower or shorter than this after scaling are dropped (counted in the summary).
        fill: probability that a slot gets its source image; the others stay background (sparser tiles).

    Returns:
        ``out_dir``, ready for :func:`fcos.data.load_annotations`.
    """
    if not 8 <= cell[0] <= cell[1] <= size:
        raise SettingError(f"cell must satisfy 8 <= min <= max <= size ({size}), got {cell}")
    if not 0 < fill <= 1:
        raise SettingError(f"fill must lie in (0, 1], got {fill}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    class_names: list[str] = []
    splits = {}
    for split in ("train", "val"):
        records = []
        for source in sources:
            data = load_annotations(source, split)
            for name in data.class_names:
                if name not in class_names:
                    class_names.append(name)
            remap = np.array([class_names.index(n) for n in data.class_names], np.int64)
            records += [(r, remap[r.labels]) for r in data.records]
        splits[split] = records
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    image_id = annotation_id = 0
    for code, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        thumbs = _thumbnails([r for r, _ in splits[split]], cell[1], progress, split)
        order = _cycle(len(splits[split]), np.random.default_rng([seed, code, 0]))
        rng = np.random.default_rng([seed, code, 1])
        images, annotations, dropped = [], [], 0
        for index in range(count):
            canvas, boxes, labels, small = _pack(splits[split], thumbs, order, rng, size, cell, min_box, fill)
            dropped += small
            name = f"{split}_{index:05d}.jpg"
            canvas.save(out / "images" / name, quality=92)
            image_id += 1
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
            for box, label in zip(boxes, labels, strict=True):
                annotation_id += 1
                x1, y1, x2, y2 = (round(float(v), 2) for v in box)
                annotations.append({"id": annotation_id, "image_id": image_id, "category_id": int(label) + 1,
                                    "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                                    "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0})
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (out / "annotations" / f"{split}.json").write_text(json.dumps(doc))
        if progress:
            print(f"{split}: {count} tiles, {len(annotations)} boxes ({dropped} under {min_box} px dropped)")
    return out


def _thumbnails(records: list[ImageRecord], longest: int, progress: bool, split: str) -> list[Image.Image]:
    """Each source decoded once and shrunk so its longer side is ``longest`` (placements shrink further)."""
    thumbs = []
    for i, record in enumerate(records):
        if progress and i % 100 == 0:
            print(f"{split}: reading sources {i}/{len(records)}", flush=True)
        image = decode_image(record.path, record.width, record.height)
        scale = longest / max(image.size)
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.BILINEAR)
        thumbs.append(image)
    return thumbs


def _cycle(n: int, rng: np.random.Generator) -> Iterator[int]:
    while True:
        yield from rng.permutation(n).tolist()


def _pack(
    records: list[tuple[ImageRecord, np.ndarray]],
    thumbs: list[Image.Image],
    order: Iterator[int],
    rng: np.random.Generator,
    size: int,
    cell: tuple[int, int],
    min_box: float,
    fill: float,
) -> tuple[Image.Image, np.ndarray, np.ndarray, int]:
    """One tile: -> (image, boxes [N, 4] xyxy, labels [N], boxes dropped as too small)."""
    canvas = Image.new("RGB", (size, size), _BACKGROUND)
    all_boxes, all_labels, dropped = [], [], 0
    pending: int | None = None  # a source that did not fit at the end of a row goes first in the next
    y = 0
    while size - y >= cell[0]:
        height = min(int(rng.integers(cell[0], cell[1] + 1)), size - y)
        x = 0
        while True:
            k = next(order) if pending is None else pending
            record, labels = records[k]
            scale = height / max(record.width, record.height)
            w, h = max(1, round(record.width * scale)), max(1, round(record.height * scale))
            if x + w > size:
                pending = k
                break
            pending = None
            if fill < 1 and rng.random() >= fill:  # an empty slot of the same width
                x += w + _GAP
                continue
            canvas.paste(thumbs[k].resize((w, h), Image.BILINEAR), (x, y))
            boxes = record.boxes * np.array([w / record.width, h / record.height] * 2, np.float32)
            boxes += np.array([x, y, x, y], np.float32)
            keep = ((boxes[:, 2] - boxes[:, 0]) >= min_box) & ((boxes[:, 3] - boxes[:, 1]) >= min_box)
            dropped += int((~keep).sum())
            all_boxes.append(boxes[keep])
            all_labels.append(labels[keep])
            x += w + _GAP
        y += height + _GAP
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4), np.float32)
    labels = np.concatenate(all_labels) if all_labels else np.zeros((0,), np.int64)
    return canvas, boxes, labels, dropped

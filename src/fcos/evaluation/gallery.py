"""val_predictions.png: validation images with ground truth dashed and predictions drawn, each on a tile
sized so that small and crowded objects stay visible."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcos.data import DetectionData, DetectionDataset
from fcos.utils.draw import draw_detections, image_rows
from fcos.utils.files import save_image

__all__ = ["plan_tiles", "save_val_predictions", "tile_side", "val_gallery"]


def tile_side(width: int, height: int, boxes: np.ndarray, *, base: int = 320, largest: int = 1024,
              min_box: float = 32.0, box_room: float = 64.0) -> int:
    """The longer side, in px, of an image's tile in ``val_predictions.png``: ``base``, larger when the
    image's objects would be too small or too crowded to see at that size: the median box's shorter
    side reaches ``min_box`` px, and each box has ``box_room`` x ``box_room`` px of the tile on average.
    At most ``largest`` and never above the image's own size (no upscaling). ``boxes``: [N, 4] xyxy."""
    longest = max(width, height)
    side = float(base)
    if len(boxes):
        shorter = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        side = max(side, min_box * longest / max(float(np.median(shorter)), 1.0))
        side = max(side, box_room * np.sqrt(len(boxes) * longest / max(min(width, height), 1)))
    return int(min(side, largest, longest))


def plan_tiles(data: DetectionData, count: int = 16, tile_size: int = 320, pixel_budget: int = 4_000_000) -> list[tuple[int, float]]:
    """Which of the first ``count`` images go into ``val_predictions.png`` and at what scale: each on a
    tile of :func:`tile_side` px, added while the tiles' pixels fit in ``pixel_budget`` (at least one).
    Returns ``[(index, scale)]``; sizes from the records (the declared sizes of the images)."""
    plan: list[tuple[int, float]] = []
    used = 0
    for index, record in enumerate(data.records[:max(count, 0)]):
        side = tile_side(record.width, record.height, record.boxes, base=tile_size)
        scale = min(1.0, side / max(record.width, record.height))
        pixels = round(record.width * scale) * round(record.height * scale)
        if plan and used + pixels > pixel_budget:
            break
        plan.append((index, scale))
        used += pixels
    return plan


def val_gallery(
    predictions: Sequence[dict[str, Any]],
    data: DetectionData,
    count: int = 16,
    conf: float = 0.3,
    tile_size: int = 320,
    pixel_budget: int = 4_000_000,
) -> Image.Image | None:
    """Validation images with ground truth dashed and the evaluation's ``predictions`` above ``conf``
    (:func:`fcos.evaluation.predict_dataset`'s, boxes in the pixels of the image on disk), as
    :func:`plan_tiles` chooses them: fewer, larger tiles for large or dense images, packed in rows about
    four base tiles wide. None when there is nothing to draw."""
    if count <= 0 or len(data) == 0:
        return None
    by_id = {int(p["image_id"]): p for p in predictions}
    dataset = DetectionDataset(data)
    tiles: list[Image.Image] = []
    for index, scale in plan_tiles(data, count, tile_size, pixel_budget):
        image, target = dataset[index]
        det = by_id.get(int(target["image_id"]), _NOTHING)
        pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
        keep = det["scores"] >= conf
        tiles.append(draw_detections(
            pil, det["boxes"][keep] * scale, det["labels"][keep], det["scores"][keep],
            data.class_names, gt_boxes=target["boxes"] * scale, gt_labels=target["labels"],
        ))
    return image_rows(tiles, max_width=4 * tile_size + 5 * 4)


def save_val_predictions(predictions: Sequence[dict[str, Any]], data: DetectionData, out: Path,
                         **kwargs: Any) -> Path | None:
    """:func:`val_gallery` written to ``out`` (PNG)."""
    gallery = val_gallery(predictions, data, **kwargs)
    return None if gallery is None else save_image(gallery, out)


_NOTHING = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}

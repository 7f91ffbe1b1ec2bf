"""val_predictions.png gives each image enough pixels: larger tiles for small or crowded objects, fewer
of them within a pixel budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcos.data import DetectionData, ImageRecord, LoadReport
from fcos.evaluation.gallery import plan_tiles, tile_side


def grid_boxes(width: int, height: int, side: float, count: int) -> np.ndarray:
    """``count`` square boxes of ``side`` px laid out row by row."""
    per_row = int(width // (side * 1.2))
    return np.array([[(k % per_row) * side * 1.2, (k // per_row) * side * 1.2] for k in range(count)]) @ np.array(
        [[1, 0, 1, 0], [0, 1, 0, 1]]) + np.array([0, 0, side, side])


def test_tile_side():
    assert tile_side(640, 480, np.array([[100, 100, 400, 400]])) == 320  # one large object: the base size
    assert tile_side(640, 480, np.zeros((0, 4))) == 320
    assert tile_side(300, 200, np.array([[0, 0, 10, 10]])) == 300  # never above the image's own size
    # 30 cars of 40 px in a 1000 x 750 aerial view: the median box reaches 32 px on the tile (800 px)
    assert tile_side(1000, 750, grid_boxes(1000, 750, 40, 30)) == 800
    assert tile_side(3000, 2000, grid_boxes(3000, 2000, 20, 30)) == 1024  # at most 1024
    # 40 boxes of 150 px, large enough at 341 px: crowded, each gets 64 x 64 px, 64 * sqrt(40 * 4 / 3) = 467
    assert tile_side(1600, 1200, grid_boxes(1600, 1200, 150, 40)) == int(64 * np.sqrt(40 * 4 / 3))


def data_of(sizes_and_boxes) -> DetectionData:
    records = [ImageRecord(path=f"{k}.jpg", image_id=k + 1, width=w, height=h, boxes=b, labels=np.zeros(len(b), np.int64))
               for k, (w, h, b) in enumerate(sizes_and_boxes)]
    return DetectionData(records, ["car"], [1], LoadReport(), Path("x.json"), "coco")


def test_plan_tiles_fewer_larger_tiles_for_dense_images():
    normal = data_of([(640, 480, np.array([[100, 100, 400, 400]]))] * 20)
    plan = plan_tiles(normal, count=16)
    assert [i for i, _ in plan] == list(range(16)) and all(s == 0.5 for _, s in plan)  # 16 tiles of 320 x 240
    aerial = data_of([(1000, 750, grid_boxes(1000, 750, 40, 30))] * 20)
    plan = plan_tiles(aerial, count=16)
    # tiles of 800 x 600 (the median car would be 13 px on a 320 tile): 8 fit in 4 megapixels
    assert plan == [(k, 0.8) for k in range(8)]
    assert plan_tiles(aerial, count=16, pixel_budget=10) == [(0, 0.8)]  # always at least one
    mixed = data_of([(640, 480, np.array([[100, 100, 400, 400]]))] * 10 + [(1000, 750, grid_boxes(1000, 750, 40, 30))] * 9)
    assert [i for i, _ in plan_tiles(mixed, count=16)] == list(range(16))  # 10 x 77k + 6 x 480k pixels
    assert plan_tiles(mixed, count=0) == []

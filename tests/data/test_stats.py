"""``dataset_stats``: hand-computed histograms and suggestions on hand-made data, and the written files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fcos.data.records import DetectionData, ImageRecord, LoadReport
from fcos.data.sampling import repeat_factors
from fcos.data.stats import compute_stats, dataset_stats, object_sizes, suggest


def _data(records: list[ImageRecord], names: list[str]) -> DetectionData:
    return DetectionData(records, names, list(range(1, len(names) + 1)), LoadReport(), Path("x.json"), "coco")


def _images(width: int, height: int, box_side: float, count: int = 4) -> DetectionData:
    """``count`` images, each with one square box of ``box_side`` px."""
    return _data([ImageRecord(f"{k}.png", k + 1, width, height, [[0, 0, box_side, box_side]], [0])
                  for k in range(count)], ["x"])


def test_histograms_and_counts_by_hand():
    a = ImageRecord("a.png", 1, 400, 200, [[0, 0, 40, 40], [0, 0, 10, 40], [0, 0, 100, 25]], [0, 1, 0])
    b = ImageRecord("b.png", 2, 400, 200, [[10, 10, 50, 50]], [0], crowd=[[0, 0, 9, 9]], crowd_labels=[1])
    c = ImageRecord("c.png", 3, 300, 300)
    stats = compute_stats({"train": _data([a, b, c], ["car", "bus"])})
    s = stats.splits["train"]
    assert (s.images, s.empty_images, s.crowd) == (3, 1, 1)
    assert s.boxes_per_class == {"car": 3, "bus": 1} and s.images_per_class == {"car": 2, "bus": 1}
    assert s.objects_per_image == {0: 1, 1: 1, 3: 1} and s.image_sizes == {"400x200": 2, "300x300": 1}
    # sizes sqrt(w * h): 40, 20, 50, 40 -> [16, 32): 1, [32, 64): 3
    assert s.object_size.counts == (0, 0, 1, 3, 0, 0, 0, 0, 0, 0) and s.object_size.median == 40
    # aspect ratios w / h: 1, 0.25, 4, 1 -> [1/4, 1/3): 1, [2/3, 3/2): 2, >= 4: 1
    assert s.aspect_ratio.counts == (0, 1, 0, 0, 2, 0, 0, 0, 1) and s.aspect_ratio.median == 1
    assert s.object_size.labels()[:3] == ["0-8", "8-16", "16-32"] and s.object_size.labels()[-1] == ">= 1024"


def test_input_size_suggestion_follows_the_models_resize():
    # 400 x 200 images, longer side -> S: a 40 px object has S / 10 px; 16 px from S = 160 (128 gives 12.8).
    data = _images(400, 200, 40)
    assert object_sizes(data.records, 160).tolist() == [16.0] * 4
    g = suggest(data, img_size=160)
    assert (g.img_size, g.input_size, g.median_object, g.median_object_resized, g.tile) == (160, 160, 40, 16, None)
    assert not g.notes
    assert suggest(data).input_size == 640  # tiling is judged at 640 unless an input size is given


def test_the_median_object_reads_the_same_in_every_line():
    side = math.sqrt(64.949 ** 2)  # printed "64.9"; rounded to 2 decimals first (64.95) it printed "65.0"
    stats = compute_stats({"train": _images(8000, 8000, side)}, img_size=640)
    text = stats.summary()
    assert "median 64.9 px;" in text and "(64.9 px natively)" in text and "65.0" not in text


def test_tiles_when_the_input_size_shrinks_objects_of_larger_images():
    # At --img-size 128 the 40 px objects of 400 px images have 12.8 px: 128 px tiles at native
    # resolution keep their 40 px.
    g = suggest(_images(400, 200, 40), img_size=128)
    assert (g.input_size, g.median_object_resized, g.tile) == (128, 12.8, 128)
    # 8000 px images with 64 px objects: 16 px would need S = 2000, above 1333; at 640 they have 5.12 px:
    # 640 px tiles keep 64.
    g = suggest(_images(8000, 8000, 64))
    assert (g.img_size, g.input_size, g.tile) == (1333, 640, 640) and g.median_object_resized == pytest.approx(5.12)
    assert "even --img-size 1333 leaves the median object under 16 px" in g.notes
    # an input size odd to the tile step: the tile is its multiple of 32 below (at least 128)
    assert suggest(_images(8000, 8000, 64), img_size=500).tile == 480


def test_objects_small_even_natively_tiles_and_an_upsampling_scale():
    g = suggest(_images(640, 640, 8))  # 8 px objects in 640 px images at --img-size 640: no tiles help
    assert (g.img_size, g.tile) == (1280, None)
    assert any("enlarges the median image (640 px" in n for n in g.notes)
    assert any("only a larger --img-size (upsampling) enlarges it" in n for n in g.notes)
    g = suggest(_images(2048, 2048, 8), img_size=512)  # larger images: tiles, and --tile-scale 2 for 16 px
    assert g.tile == 512 and any("--tile-scale 2 would enlarge it to 16 px" in n for n in g.notes)


def test_rare_classes_and_repeat_threshold():
    # 8 images: a and b in 6 each (f = 0.75), c in 1 (f = 0.125 < 0.75 / 4): rare; threshold = f_median = 0.75
    labels = [[0, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1, 2], [], []]
    records = [ImageRecord(f"{k}.png", k + 1, 50, 50, [[0, 0, 10, 10]] * len(x), x) for k, x in enumerate(labels)]
    data = _data(records, ["a", "b", "c"])
    g = suggest(data)
    assert g.rare_classes == ["c"] and g.repeat_threshold == 0.75
    assert repeat_factors(records, g.repeat_threshold)[5] == pytest.approx(math.sqrt(6))  # c's image: 2.45x
    assert "rare classes: 1 (c); --repeat-threshold 0.75" in compute_stats({"train": data}).summary()
    balanced = suggest(_images(100, 100, 20))
    assert balanced.rare_classes == [] and balanced.repeat_threshold is None


def test_dataset_stats_writes_pngs_and_json(shared_data, tmp_path):
    stats = dataset_stats(shared_data / "fruit", tmp_path / "stats", img_size=320)
    names = ["boxes_per_class.png", "object_sizes.png", "aspect_ratios.png", "objects_per_image.png",
             "image_sizes.png", "stats.json"]
    assert [f.name for f in stats.files] == names
    for f in stats.files[:-1]:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "stats" / "stats.json").read_text())  # strict JSON: the infinite edge is null
    assert doc["splits"]["train"]["boxes_per_class"] == {"apple": 10, "banana": 20, "orange": 11}
    assert doc["splits"]["val"]["images"] == 13 and doc["splits"]["train"]["object_size"]["edges"][-1] is None
    assert sum(doc["splits"]["train"]["object_size"]["counts"]) == 41
    assert doc["suggestions"]["input_size"] == 320 and doc["suggestions"]["tile"] is None
    text = stats.summary()
    assert "train: 25 images (0 without objects), 41 boxes (apple 10, banana 20, orange 11), 0 crowd" in text
    assert "tiles: not needed" in text and "rare classes: none" in text

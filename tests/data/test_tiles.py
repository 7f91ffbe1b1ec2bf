"""The tiled small-object dataset: loadable, classes merged by name, boxes inside the tiles and on the
pasted pixels, byte-identical for the same arguments."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fcos.cli import main
from fcos.data import load_annotations
from fcos.data.tiles import generate_tiles


def _tiles(shared_data, out, **changes):
    args = dict(num_train=3, num_val=2, size=160, cell=(24, 48), progress=False)
    return generate_tiles([shared_data / "fruit", shared_data / "raccoon"], out, **{**args, **changes})


def test_tiles_are_loadable_with_merged_classes_and_small_boxes(shared_data, tmp_path):
    out = _tiles(shared_data, tmp_path / "t")
    train = load_annotations(out, "train")
    val = load_annotations(out, "val", train.class_names)
    assert train.class_names == ["apple", "banana", "orange", "raccoon"]
    assert len(train) == 3 and len(val) == 2
    for record in train.records + val.records:
        assert (record.width, record.height) == (160, 160) and len(record.boxes) > 3  # dense
        boxes = record.boxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 160).all()
        assert ((boxes[:, 2:] - boxes[:, :2]).max(1) <= 48 + 1e-3).all()  # a box fits its row's cell
        # every box lies on pasted photo pixels, not on the grey background between them
        pixels = np.asarray(Image.open(record.path), np.int16)
        for x0, y0, x1, y1 in boxes:
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            assert np.abs(pixels[cy, cx] - 114).max() > 0 or pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].std() > 0


def test_tiles_are_deterministic(shared_data, tmp_path):
    a, b = _tiles(shared_data, tmp_path / "a"), _tiles(shared_data, tmp_path / "b")
    for name in ("annotations/train.json", "annotations/val.json", "images/train_00002.jpg", "images/val_00001.jpg"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = _tiles(shared_data, tmp_path / "c", seed=1)
    assert (c / "annotations/train.json").read_bytes() != (a / "annotations/train.json").read_bytes()


def test_data_tiles_cli(shared_data, tmp_path, capsys):
    code = main(["data", "tiles", "--from", str(shared_data / "fruit"), "--out", str(tmp_path / "t"), "--train", "2",
                 "--val", "1", "--size", "128", "--cell", "32", "64"])
    assert code == 0 and "wrote the tiled dataset" in capsys.readouterr().out
    assert load_annotations(tmp_path / "t", "train").class_names == ["apple", "banana", "orange"]

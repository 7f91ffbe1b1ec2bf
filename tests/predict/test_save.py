"""YOLO label lines and crops written by fcos predict --save-txt / --save-crops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcos.predict.save import folder_name, save_crops, yolo_lines
from fcos.utils.files import WriteError


def test_yolo_lines_by_hand_and_back():
    boxes = np.array([[10, 20, 50, 80], [0, 0, 200, 100]], np.float32)
    text = yolo_lines(boxes, np.array([2, 0]), np.array([0.875, 0.5]), (200, 100))
    assert text == "2 0.150000 0.500000 0.200000 0.600000 0.87500\n0 0.500000 0.500000 1.000000 1.000000 0.50000\n"
    values = np.array([line.split() for line in text.splitlines()], np.float64)
    cx, cy, w, h = values[:, 1] * 200, values[:, 2] * 100, values[:, 3] * 200, values[:, 4] * 100
    assert np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) == pytest.approx(boxes, abs=1e-3)
    assert yolo_lines(np.zeros((0, 4)), np.zeros(0), np.zeros(0), (10, 10)) == ""


def test_crops_are_the_box_pixels_in_a_folder_per_class(tmp_path):
    pixels = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3) % 251
    image = Image.fromarray(pixels.astype(np.uint8))
    boxes = np.array([[10.2, 5.7, 30.1, 25.0], [70, 50, 95, 70], [40, 40, 40, 45]])  # the last has no width
    written = save_crops(image, boxes, np.array([1, 0, 0]), ["cat", "a/b"], tmp_path, "img")
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["a_b/img_0.jpg", "cat/img_1.jpg"]
    with Image.open(tmp_path / "a_b" / "img_0.jpg") as crop:
        assert crop.size == (21, 20)  # x 10..31, y 5..25: rounded outwards
        expected = pixels[5:25, 10:31].astype(np.float64)
        assert np.abs(np.asarray(crop, np.float64) - expected).mean() < 12  # JPEG quality 95 of a noisy pattern
    with Image.open(tmp_path / "cat" / "img_1.jpg") as crop:
        assert crop.size == (10, 10)  # clipped to the image
    assert folder_name("..") == "_" and folder_name("traffic light") == "traffic light"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match="cat"):
        save_crops(image, boxes[:1], np.array([0]), ["cat"], blocker, "img")

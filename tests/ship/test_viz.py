"""Drawing: boxes in the class colour, filled label tags, dashed ground truth, thresholds, grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from fcos.viz import class_color, draw_detections, image_grid

NAMES = ["apple", "banana", "orange"]


def grey(w=200, h=160):
    return Image.new("RGB", (w, h), (128, 128, 128))


def count_color(image, color):
    return int((np.asarray(image) == np.array(color, dtype=np.uint8)).all(-1).sum())


def test_draws_boxes_in_class_colours_on_a_copy():
    image = grey()
    out = draw_detections(image, [[20, 40, 120, 140]], [1], [0.9], NAMES)
    assert out is not image and out.size == image.size and out.mode == "RGB"
    assert count_color(image, class_color(1)) == 0  # input untouched
    pixels = np.asarray(out)
    # The left edge of the box (below the tag) carries the class colour.
    assert tuple(pixels[100, 20]) == class_color(1)
    # Box interior away from the tag stays untouched.
    assert tuple(pixels[100, 70]) == (128, 128, 128)
    assert count_color(out, class_color(1)) > 300  # outline + filled tag background


def test_colours_differ_per_class_and_inputs_may_be_tensors_or_arrays():
    assert len({class_color(i) for i in range(20)}) == 20
    boxes = [[10, 30, 60, 80], [100, 30, 150, 80]]
    a = draw_detections(grey(), torch.tensor(boxes), torch.tensor([0, 2]), torch.tensor([0.8, 0.7]), NAMES)
    b = draw_detections(grey(), np.array(boxes), np.array([0, 2]), np.array([0.8, 0.7]), NAMES)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert count_color(a, class_color(0)) > 0 and count_color(a, class_color(2)) > 0


def test_score_threshold_and_empty_input():
    image = grey()
    out = draw_detections(image, [[20, 40, 120, 140]], [0], [0.2], NAMES, score_thresh=0.5)
    assert np.array_equal(np.asarray(out), np.asarray(image))
    empty = draw_detections(image, np.zeros((0, 4)), [], [], NAMES)
    assert np.array_equal(np.asarray(empty), np.asarray(image))


def test_ground_truth_is_dashed():
    out = draw_detections(grey(), [], [], None, NAMES, gt_boxes=[[20, 20, 180, 100]], gt_labels=[2])
    top_edge = np.asarray(out)[20, 20:180]
    on = (top_edge == np.array(class_color(2), dtype=np.uint8)).all(-1)
    assert 0.3 < on.mean() < 0.9  # dashes and gaps
    assert np.diff(on.astype(int)).__abs__().sum() >= 6  # several dash boundaries


def test_labels_without_names_or_scores_and_mismatched_lengths():
    out = draw_detections(grey(), [[20, 40, 120, 140]], [7])  # no names, no scores: label index as text
    assert count_color(out, class_color(7)) > 0
    with pytest.raises(ValueError, match="same length"):
        draw_detections(grey(), [[0, 0, 10, 10]], [0, 1])


def test_image_grid_layout():
    images = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    grid = image_grid(images, cols=2, pad=4)
    assert grid.size == (2 * 40 + 3 * 4, 2 * 30 + 3 * 4)
    px = np.asarray(grid)
    assert tuple(px[4 + 15, 4 + 20]) == (255, 0, 0)
    assert tuple(px[4 + 15, 4 + 40 + 4 + 20]) == (0, 255, 0)
    assert tuple(px[4 + 30 + 4 + 15, 4 + 20]) == (0, 0, 255)
    assert image_grid(images, cols=10).size == (3 * 40 + 4 * 4, 30 + 2 * 4)
    with pytest.raises(ValueError):
        image_grid([], cols=2)

"""Drawing: boxes in the class colour, filled label tags (sized, placed and switched off as on dense scenes
they must be), dashed ground truth, thresholds, grids."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fcos.utils.draw import MAX_TAG_OVERLAP, class_color, draw_detections, image_grid, image_rows, place_tags

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


def tag_pixels(image, *args, **kwargs):
    """[H, W] bool: the pixels the tags changed (the drawing with and without them)."""
    with_tags = np.asarray(draw_detections(image, *args, **kwargs))
    without = np.asarray(draw_detections(image, *args, **kwargs, show_labels=False))
    return (with_tags != without).any(-1)


def rows_with(mask):
    rows = np.flatnonzero(mask.any(1))
    return (int(rows.min()), int(rows.max())) if rows.size else None


def test_dense_scene_tags_are_small_apart_and_leave_the_objects_visible(shared_data):
    from deploy_helpers import dense_scene

    image, boxes, labels = dense_scene(shared_data)  # 48 real fruit images in a 1120 x 840 mosaic, 76 boxes
    scores = np.random.default_rng(0).uniform(0.3, 1.0, len(boxes))
    tags = tag_pixels(image, boxes, labels, scores, NAMES)
    inside = np.zeros(tags.shape, bool)
    for x0, y0, x1, y1 in boxes.round().astype(int):
        inside[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = True
    # Tags scaled to the image only (the old rule, 21 px here) covered 9.6% of the objects and overlapped
    # each other; tags scaled to their boxes cover 5.9%.
    assert (tags & inside).sum() / inside.sum() < 0.075
    # The layout: no tag shares more than MAX_TAG_OVERLAP with an earlier one, and nearly all nothing at all.
    sizes = [(60.0, 14.0)] * len(boxes)
    rects = place_tags(boxes.tolist(), sizes, image.size)
    placed = [r for r in rects if r is not None]
    assert len(placed) >= 0.9 * len(boxes)
    overlaps = [_area_overlap(a, b) / (60 * 14) for k, a in enumerate(placed) for b in placed[:k]]
    assert max(overlaps) <= MAX_TAG_OVERLAP and np.mean(np.array(overlaps) > 0) < 0.01


def _area_overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def test_tags_stay_inside_the_image_and_avoid_earlier_tags():
    canvas = (200, 100)
    # a box touching the top right corner: no room above, so the tag goes inside, whole
    (rect,) = place_tags([[150, 0, 200, 40]], [(80, 14)], canvas)
    assert rect == (120, 0, 200, 14)
    # a box at the bottom left, ground truth (prefers below): no room below, so inside its bottom
    (rect,) = place_tags([[0, 60, 50, 100]], [(40, 14)], canvas, below=[True])
    assert rect == (0, 86, 40, 100)
    # two boxes at the same place: the second tag goes inside, then below, never onto the first
    rects = place_tags([[50, 40, 120, 70]] * 3, [(40, 10)] * 3, canvas)
    assert rects == [(50, 30, 90, 40), (50, 40, 90, 50), (50, 70, 90, 80)]
    # every spot taken: a fourth identical tag would hide one entirely, so it is left out
    assert place_tags([[50, 40, 120, 70]] * 5, [(40, 10)] * 5, canvas)[4] is None
    # drawn: every tag pixel lies inside the image, the text whole (the tag is 'apple 0.90' wide)
    out = tag_pixels(grey(200, 100), [[150, 0, 199, 40], [0, 60, 50, 99]], [0, 0], [0.9, 0.8], NAMES)
    assert out[:, 120:].any() and out[:15].any()


def test_tags_shrink_with_their_boxes_and_with_the_image():
    big = rows_with(tag_pixels(grey(800, 800), [[100, 300, 500, 700]], [0], [0.9], NAMES))
    small = rows_with(tag_pixels(grey(800, 800), [[100, 300, 130, 320]], [0], [0.9], NAMES))
    big_height, small_height = big[1] - big[0] + 1, small[1] - small[0] + 1
    assert big_height >= 20 and small_height <= 14 < big_height  # 800 / 40 = 20 px font vs MIN_FONT
    assert big[1] < 300 and small[1] < 300  # both above their boxes
    tiny_image = rows_with(tag_pixels(grey(200, 160), [[20, 40, 180, 150]], [0], [0.9], NAMES))
    assert tiny_image[1] - tiny_image[0] + 1 < big_height


def test_hide_labels_hide_conf_and_line_width():
    box = [[40, 40, 140, 120]]
    bare = draw_detections(grey(), box, [1], [0.9], NAMES, show_labels=False, line_width=3)
    expected = grey()
    ImageDraw.Draw(expected).rectangle(box[0], outline=class_color(1), width=3)
    assert np.array_equal(np.asarray(bare), np.asarray(expected))  # the box alone, 3 px wide
    row = np.asarray(bare)[80]
    assert (row == np.array(class_color(1), np.uint8)).all(-1).sum() == 6  # left and right edges, 3 px each

    def tag_width(**kwargs):
        mask = tag_pixels(grey(), box, [1], [0.9], NAMES, **kwargs)
        columns = np.flatnonzero(mask.any(0))
        return columns.max() - columns.min() + 1

    assert tag_width(show_conf=False) < tag_width()  # "banana" vs "banana 0.90"


def test_ground_truth_tags_only_for_boxes_no_prediction_found():
    gt = [[20, 20, 100, 80], [120, 20, 190, 80]]
    found = tag_pixels(grey(), [[21, 21, 100, 80]], [0], [0.9], NAMES, gt_boxes=gt, gt_labels=[0, 0])
    # the found box's only tag is the prediction's (above it); the missed one gets "GT: apple" below it
    assert not found[81:, :110].any() and found[81:, 120:].any()
    wrong_class = tag_pixels(grey(), [[21, 21, 100, 80]], [1], [0.9], NAMES, gt_boxes=gt[:1], gt_labels=[0])
    assert wrong_class[81:].any()  # found as another class: the ground truth keeps its tag


def test_image_rows_packs_mixed_sizes():
    images = [Image.new("RGB", (100, 50), (255, 0, 0)), Image.new("RGB", (60, 80), (0, 255, 0)),
              Image.new("RGB", (150, 40), (0, 0, 255))]
    grid = image_rows(images, max_width=180, pad=2)
    # rows: [100 + 60 = 160 + 3 pads], [150]; heights 80 and 40
    assert grid.size == (2 + 100 + 2 + 60 + 2, 2 + 80 + 2 + 40 + 2)
    px = np.asarray(grid)
    assert tuple(px[2 + 40, 2 + 50]) == (255, 0, 0) and tuple(px[2 + 40, 104 + 30]) == (0, 255, 0)
    assert tuple(px[84 + 20, 2 + 75]) == (0, 0, 255)
    assert image_rows(images[:1], max_width=10).size == (108, 58)  # wider than max_width: a row of its own

import json

import numpy as np
import pytest
from PIL import Image

from fcos.data.coco import read_coco
from fcos.data.shapes import CLASSES, MIN_VISIBLE, _render, generate_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    return generate_shapes(out, num_train=150, num_val=30, image_size=256, seed=0)


def test_same_seed_gives_identical_files_and_prefixes(shapes, tmp_path):
    out = shapes
    again = generate_shapes(tmp_path / "again", num_train=20, num_val=3, seed=0)
    for name in ("train_00000.jpg", "train_00019.jpg", "val_00002.jpg"):
        assert (again / "images" / name).read_bytes() == (out / "images" / name).read_bytes()
    twice = generate_shapes(tmp_path / "twice", num_train=20, num_val=3, seed=0)
    for split in ("train", "val"):
        assert (again / "annotations" / f"{split}.json").read_bytes() == (
            twice / "annotations" / f"{split}.json"
        ).read_bytes()
    assert sorted(p.name for p in (again / "images").iterdir()) == sorted(
        p.name for p in (twice / "images").iterdir()
    )
    other = generate_shapes(tmp_path / "other", num_train=1, num_val=0, seed=1)
    assert (other / "images" / "train_00000.jpg").read_bytes() != (
        again / "images" / "train_00000.jpg"
    ).read_bytes()


def test_annotations_are_a_valid_varied_coco_dataset(shapes):
    out = shapes
    train, val = (read_coco(out / "annotations" / f"{split}.json") for split in ("train", "val"))
    assert (len(train.records), len(val.records)) == (150, 30)
    assert train.class_names == list(CLASSES) and train.category_ids == [1, 2, 3]
    assert all(n > 50 for n in train.report.boxes_per_class.values())
    assert not train.report.clipped and not train.report.dropped  # boxes are inside by construction
    ids = [r.image_id for r in train.records + val.records]
    assert len(set(ids)) == len(ids)
    counts = [len(r.boxes) for r in train.records]
    assert min(counts) >= 1 and max(counts) == 6 and np.mean(counts) > 2.5
    boxes = np.concatenate([r.boxes for r in train.records])
    sides = np.concatenate([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    assert sides.min() >= 12 and sides.min() < 16 and sides.max() > 0.6 * 256
    assert (boxes >= 0).all() and (boxes <= 256).all()
    with Image.open(train.records[0].path) as image:
        assert image.size == (256, 256) and image.mode == "RGB"
    doc = json.loads((out / "annotations" / "train.json").read_text())
    assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in doc["annotations"])


def test_boxes_are_tight_on_visible_pixels_and_objects_stay_visible():
    for index in range(60):
        pixels, shapes = _render(np.random.default_rng([3, 0, index]), 128, 12, 6)
        image = pixels.astype(np.float32) / 255
        full = np.zeros((len(shapes), 128, 128), bool)
        owner = np.full((128, 128), -1)
        for k, shape in enumerate(shapes):
            x1, y1, x2, y2 = shape.box
            full[k, y1:y2, x1:x2] = shape.mask
            owner[full[k]] = k  # later shapes are drawn on top
        for k, shape in enumerate(shapes):
            visible = owner == k
            rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
            assert (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) == shape.box
            assert visible.sum() >= MIN_VISIBLE * full[k].sum()
            # Clearly visible: the object's colour differs from its 2-pixel surroundings.
            grown = visible.copy()
            for _ in range(2):
                grown[1:] |= grown[:-1].copy()
                grown[:-1] |= grown[1:].copy()
                grown[:, 1:] |= grown[:, :-1].copy()
                grown[:, :-1] |= grown[:, 1:].copy()
            ring = grown & ~full[k]
            if ring.any():
                assert np.linalg.norm(image[visible].mean(0) - image[ring].mean(0)) > 0.25


def test_occluded_images_hide_parts_of_objects_and_keep_full_extent_boxes():
    from fcos.data.shapes import OCCLUDED_MIN_VISIBLE

    hidden_edges = bands = 0
    for index in range(40):
        rng = np.random.default_rng([3, 0, index])
        pixels, shapes = _render(rng, 128, 12, 6, occlusion=1.0)
        image = pixels.astype(np.float32) / 255
        owner = np.full((128, 128), -1)
        full = np.zeros((len(shapes), 128, 128), bool)
        for k, shape in enumerate(shapes):
            x1, y1, x2, y2 = shape.box
            full[k, y1:y2, x1:x2] = shape.mask
            owner[full[k]] = k
        # Pixels a shape owns but that do not show its colour lie under the band.
        shows = np.zeros((128, 128), bool)
        for k, shape in enumerate(shapes):
            mine = owner == k
            shows[mine] = np.linalg.norm(image[mine] - shape.colour, axis=1) < 0.2
        bands += int(((owner >= 0) & ~shows).sum() > 20)
        for k, shape in enumerate(shapes):
            seen = (owner == k) & shows
            # At least the promised share is seen (a little slack for noise at the colour test).
            assert seen.sum() >= (OCCLUDED_MIN_VISIBLE - 0.03) * full[k].sum()
            rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
            # The box is the whole object: it contains what is seen, and is larger where an edge is hidden.
            x1, y1, x2, y2 = shape.box
            assert x1 <= cols[0] and y1 <= rows[0] and cols[-1] < x2 and rows[-1] < y2
            hidden_edges += (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) != shape.box
    assert hidden_edges >= 10 and bands >= 10
    with pytest.raises(ValueError, match="occlusion"):
        generate_shapes("unused", occlusion=1.5)

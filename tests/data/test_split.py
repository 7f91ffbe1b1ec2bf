"""``split_dataset`` / ``stratify``: hand-computed stratification, rare classes on both sides, determinism,
fractions, and the written dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcos.data.errors import DatasetError
from fcos.data.layouts import load_annotations, load_splits
from fcos.data.split import load_image_set, split_dataset, stratify


def _labels(*images: list[int]) -> list[np.ndarray]:
    return [np.array(x, np.int64) for x in images]


def _on_side(labels, in_val, c) -> tuple[int, int]:
    """(train, val) images holding class c."""
    holding = np.array([c in x for x in labels])
    return int((holding & ~in_val).sum()), int((holding & in_val).sum())


def test_two_rare_images_split_one_each():
    # 2 images of a, 8 of b, val 0.2: 2 val images. Group a (ideal 0.4) must keep one on each side: 1;
    # group b (ideal 1.6): floor 1, and the total 2 is reached.
    labels = _labels(*[[0]] * 2, *[[1]] * 8)
    for seed in range(5):
        in_val = stratify(labels, 2, 0.2, seed)
        assert in_val.sum() == 2 and in_val[:2].sum() == 1 and in_val[2:].sum() == 1


def test_largest_remainder_by_hand():
    # a: 3 images, b: 5, c: 12 (N = 20). val 0.3: 6 images; ideals 0.9, 1.5, 3.6 -> floors 0, 1, 3, raised
    # to a's bound 1 -> 5; one more to the largest remainder (c: 0.6 > b: 0.5 > a: -0.1) -> 1, 1, 4.
    labels = _labels(*[[0]] * 3, *[[1]] * 5, *[[2]] * 12)
    in_val = stratify(labels, 3, 0.3, seed=0)
    assert [in_val[:3].sum(), in_val[3:8].sum(), in_val[8:].sum()] == [1, 1, 4]
    in_val = stratify(labels, 3, 0.25, seed=0)  # 5 images: ideals 0.75, 1.25, 3.0 -> 1, 1, 3
    assert [in_val[:3].sum(), in_val[3:8].sum(), in_val[8:].sum()] == [1, 1, 3]


def test_single_image_classes_stay_in_train_and_negatives_are_stratified_too():
    # d (class 3) is in one image: train. 10 negatives and 9 images of a: val 0.2 of 20 = 4 images.
    labels = _labels([3], *[[]] * 10, *[[0]] * 9)
    in_val = stratify(labels, 4, 0.2, seed=1)
    assert not in_val[0] and in_val.sum() == 4
    assert in_val[1:11].sum() == 2 and in_val[11:].sum() == 2  # ideals 2.0 and 1.8 (+1 by remainder)


def test_bounds_win_over_the_fraction():
    # four classes in two images each, val 0.1 of 8 = 1 image; each class on both sides needs 4.
    labels = _labels([0], [0], [1], [1], [2], [2], [3], [3])
    in_val = stratify(labels, 4, 0.1, seed=0)
    assert in_val.sum() == 4 and all(_on_side(labels, in_val, c) == (1, 1) for c in range(4))


def test_co_occurring_classes_are_repaired_onto_both_sides():
    # c (2) is in images 0 and 2, grouped under a (0) and b (1): half of the seeds first put both on one
    # side; a swap inside a group fixes it (val 0 + 3 or 1 + 2), keeping 2 val images.
    labels = _labels([0, 2], [0], [1, 2], [1])
    for seed in range(12):
        in_val = stratify(labels, 3, 0.5, seed)
        assert in_val.sum() == 2
        assert all(_on_side(labels, in_val, c) == (1, 1) for c in range(3)), seed


@pytest.mark.parametrize("seed", range(6))
def test_random_multilabel_sets_keep_every_class_of_two_or_more_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    frequency = np.array([0.5, 0.3, 0.1, 0.03, 0.02])  # classes from common to rare
    labels = [np.flatnonzero(rng.random(5) < frequency) for _ in range(60)]
    in_val = stratify(labels, 5, 0.2, seed)
    assert abs(int(in_val.sum()) - 12) <= 1
    for c in range(5):
        train, val = _on_side(labels, in_val, c)
        total = train + val
        assert (train >= 1 and val >= 1) if total >= 2 else val == 0, (c, train, val)


def test_deterministic_for_a_seed():
    labels = _labels(*[[i % 3] for i in range(30)])
    a, b, c = stratify(labels, 3, 0.3, 4), stratify(labels, 3, 0.3, 4), stratify(labels, 3, 0.3, 5)
    assert (a == b).all() and (a != c).any() and a.sum() == c.sum() == 9


def test_split_dataset_writes_a_loadable_dataset_in_the_sources_format(shared_data, tmp_path):
    fruit = shared_data / "fruit"
    report = split_dataset(fruit, tmp_path / "out", val=0.2, seed=0, split="train")
    train, val = load_annotations(tmp_path / "out", "train"), load_annotations(tmp_path / "out", "val")
    assert train.format == val.format == "coco" and (len(train), len(val)) == (20, 5)  # 25 images, 0.2
    assert report.images == {"train": 20, "val": 5}
    for name in ("apple", "banana", "orange"):  # every class in both, as the report says
        assert report.images_per_class["train"][name] >= 1 and report.images_per_class["val"][name] >= 1
    source = {r.path.name: r for r in load_annotations(fruit, "train").records}
    assert sorted(r.path.name for r in train.records + val.records) == sorted(source)  # each image once, whole
    for record in train.records + val.records:
        np.testing.assert_array_equal(record.boxes, source[record.path.name].boxes)
    assert "split 25 images: train 20, val 5" in report.summary()
    again = split_dataset(fruit, tmp_path / "again", val=0.2, seed=0, split="train", fmt="yolo")
    assert again.images_per_class == report.images_per_class  # the same division, in another format
    yolo = load_splits(tmp_path / "again")
    assert [d.format for d in yolo.values()] == ["yolo", "yolo"]
    assert sorted(r.path.name for r in yolo["val"].records) == sorted(r.path.name for r in val.records)


def test_flat_folders_without_splits(tmp_path, make_yolo, make_voc_once):
    root = make_yolo({f"i{k}": f"{k % 2} 0.5 0.5 0.5 0.5\n" for k in range(6)})
    (root / "images" / "train").rename(root / "images" / "all")  # images/ and labels/ without split folders
    for path in (root / "images" / "all").iterdir():
        path.rename(root / "images" / path.name)
    for path in (root / "labels" / "train").iterdir():
        path.rename(root / "labels" / path.name)
    assert len(load_image_set(root)) == 6
    report = split_dataset(root, tmp_path / "out", val=0.34, seed=2)
    assert report.images == {"train": 4, "val": 2} and report.images_per_class["val"] == {"cat": 1, "dog": 1}
    voc, _ = make_voc_once
    (voc / "ImageSets" / "Main" / "train.txt").unlink()
    assert [r.path.name for r in load_image_set(voc).records] == ["a.jpg"]  # every Annotations/*.xml


def test_bad_inputs(shared_data, tmp_path):
    fruit = shared_data / "fruit"
    for val in (0, 1, 1.5, -0.2):
        with pytest.raises(DatasetError, match=rf"^{fruit}: the validation fraction must lie in \(0, 1\)"):
            split_dataset(fruit, tmp_path / "out", val=val, split="train")
    with pytest.raises(DatasetError, match=r"has the splits train, val: name the one to divide"):
        split_dataset(fruit, tmp_path / "out")
    with pytest.raises(DatasetError, match=r"out: unknown format 'csv'"):
        split_dataset(fruit, tmp_path / "out", split="val", fmt="csv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(DatasetError, match="exists and is not empty"):
        split_dataset(fruit, tmp_path / "full", split="val")
    (tmp_path / "images").symlink_to(fruit / "images")
    one = tmp_path / "annotations" / "one.json"  # images/ beside its folder
    one.parent.mkdir()
    doc = json.loads((fruit / "annotations" / "val.json").read_text())
    doc["images"] = doc["images"][:1]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]]
    one.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"one\.json: 1 image\(s\): a split needs at least 2"):
        split_dataset(one, tmp_path / "out")

from pathlib import Path

import numpy as np
import pytest

from fcos.data.coco import read_coco
from fcos.data.errors import DatasetError
from fcos.data.layouts import layout_named, load_annotations
from fcos.data.yolo import NO_LABEL_FILE, ORPHAN_LABEL, POLYGON, label_path, read_yolo


@pytest.mark.parametrize("split", ["train", "val"])
def test_fruit_yolo_equals_fruit_coco(shared_data, split):
    yolo = read_yolo(shared_data / "fruit" / "yolo", split)
    coco = read_coco(shared_data / "fruit" / "annotations" / f"{split}.json")
    assert yolo.class_names == coco.class_names == ["apple", "banana", "orange"]
    assert yolo.format == "yolo" and yolo.category_ids == [1, 2, 3]
    assert yolo.report.boxes_per_class == coco.report.boxes_per_class
    assert not yolo.report.dropped and not yolo.report.notes
    by_name = {r.path.name: r for r in coco.records}
    assert sorted(r.path.name for r in yolo.records) == sorted(by_name)
    for record in yolo.records:
        other = by_name[record.path.name]
        assert (record.width, record.height) == (other.width, other.height)
        # Box order may differ between the files: match each COCO box to its nearest YOLO box.
        assert len(record.boxes) == len(other.boxes)
        distance = np.abs(record.boxes[:, None, :] - other.boxes[None, :, :]).max(-1)  # [N_yolo, N_coco]
        match = distance.argmin(0)
        assert sorted(match.tolist()) == list(range(len(match)))  # a one-to-one matching
        assert distance.min(0).max(initial=0) < 1e-3
        np.testing.assert_array_equal(record.labels[match], other.labels)


def test_boxes_negatives_and_notes(make_yolo):
    root = make_yolo({"a": "1 0.5 0.5 0.5 0.5\n\n0 0.25 0.25 0.1 0.2\n", "b": None, "c": ""})
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    data = read_yolo(root, "train")
    a, b, c = data.records
    np.testing.assert_allclose(a.boxes, [[10, 5, 30, 15], [8, 3, 12, 7]], atol=1e-5)
    assert a.labels.tolist() == [1, 0] and (a.width, a.height) == (40, 20)
    assert len(b.boxes) == len(c.boxes) == 0 and data.report.empty_images == 2
    assert data.report.notes == {NO_LABEL_FILE: 1, ORPHAN_LABEL: 1}
    assert "image without a label file (no objects): 1" in data.report.summary()


def test_polygon_labels_are_read_as_their_boxes_and_a_bom_is_not_text(make_yolo):
    # ultralytics' segment rows (class x1 y1 ... xn yn) train a detector on their bounding boxes
    root = make_yolo({"a": "\ufeff1 0.5 0.5 0.5 0.5\r\n0 0.1 0.2 0.4 0.1 0.3 0.6 0.2 0.5\n"})
    data = read_yolo(root, "train")
    (a,) = data.records
    # polygon x in [0.1, 0.4] * 40, y in [0.1, 0.6] * 20
    np.testing.assert_allclose(a.boxes, [[10, 5, 30, 15], [4, 2, 16, 12]], atol=1e-5)
    assert a.labels.tolist() == [1, 0] and data.report.notes == {POLYGON: 1}


def test_roboflow_paths_quoted_name_keys_and_an_empty_split_value(tmp_path, write_image):
    """A Roboflow export: data.yaml beside train/ and valid/, naming them '../train/images'."""
    root = tmp_path / "export"
    for split in ("train", "valid"):
        write_image(root / split / "images" / "a.jpg", 40, 20)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ''\n"
                                    "nc: 2\nnames: {'0': cat, '1': dog}\n")
    data = load_annotations(root, "val")
    assert data.class_names == ["cat", "dog"] and data.records[0].path == root / "valid" / "images" / "a.jpg"
    assert data.records[0].labels.tolist() == [1]
    assert not layout_named("yolo").has_split(root, "test")  # 'test: ""' names no split


@pytest.mark.parametrize(
    "yaml",
    [
        "names: [cat, dog]\n",
        "names: {0: cat, 1: dog}\n",
        "path: .\ntrain: images/train\nnames: {1: dog, 0: cat}\nnc: 2\n",
    ],
)
def test_yaml_variants(make_yolo, yaml):
    root = make_yolo({"a": "1 0.5 0.5 0.5 0.5\n"}, yaml=yaml)
    for given in (root, root / "data.yaml"):
        data = read_yolo(given, "train")
        assert data.class_names == ["cat", "dog"] and data.records[0].labels.tolist() == [1]


def test_yaml_path_relative_to_yaml_and_class_names(make_yolo, tmp_path):
    root = make_yolo({"a": "1 0.5 0.5 0.5 0.5\n"}, yaml=None)
    yaml = tmp_path / "configs" / "mine.yaml"
    yaml.parent.mkdir()
    yaml.write_text("path: ../yolo\ntrain: images/train\nnames: [cat, dog]\n")
    assert read_yolo(yaml, "train").records[0].labels.tolist() == [1]
    assert read_yolo(yaml, "train", class_names=["dog", "cat"]).records[0].labels.tolist() == [0]
    assert read_yolo(root, "train", class_names=["cat", "dog"]).class_names == ["cat", "dog"]  # no yaml
    with pytest.raises(DatasetError, match="no data.yaml here to name the classes"):
        read_yolo(root, "train")


@pytest.mark.parametrize(
    "text,line,problem",
    [
        ("0 0.5 0.5 0.5\n", 1, "expected 5 fields 'class cx cy w h' (or a polygon"),
        ("0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5 0.9\n", 2, "(or a polygon 'class x1 y1 x2 y2 x3 y3 ...'), got 6"),
        ("0 0.1 0.1 0.2 0.1 0.3\n", 1, "got 6"),  # two points are no polygon
        ("0 0.1 0.1 0.2 0.1 0.3 0.3 0.4\n", 1, "got 8"),  # an odd coordinate count
        ("\n\n0 0.5 abc 0.5 0.5\n", 3, "non-numeric field in '0 0.5 abc 0.5 0.5'"),
        ("2 0.5 0.5 0.5 0.5\n", 1, "class 2 is out of range 0..1"),
        ("-1 0.5 0.5 0.5 0.5\n", 1, "class -1 is out of range"),
        ("0.5 0.5 0.5 0.5 0.5\n", 1, "class 0.5 is out of range"),
        ("0 nan 0.5 0.5 0.5\n", 1, "NaN or infinite value"),
        ("0 1.5 0.5 0.2 0.2\n", 1, "lies entirely outside the 40x20 image"),
    ],
)
def test_bad_label_lines_name_file_and_line(make_yolo, text, line, problem):
    root = make_yolo({"a": text})
    with pytest.raises(DatasetError) as info:
        read_yolo(root, "train")
    message = str(info.value)
    assert message.startswith(f"{root / 'labels' / 'train' / 'a.txt'} line {line}: "), message
    assert problem in message, message


@pytest.mark.parametrize(
    "yaml,problem",
    [
        ("names: [a, b\n", "invalid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("nc: 2\n", "'names' must be a non-empty list"),
        ("names: {0: a, 2: b}\n", "'names' keys must be the class indices 0..1"),
        ("names: [a, a]\n", "'names' contains duplicates"),
        ("names: [a, b]\nnc: 3\n", "'nc' is 3 but 'names' has 2 entries"),
        ("names: [a]\ntrain: images/nowhere\n", "nowhere: image folder (or .txt image list) not found"),
        ("names: [a]\ntrain: 3\n", "'train' must be a path or a list of paths"),
    ],
)
def test_bad_yaml(make_yolo, yaml, problem):
    root = make_yolo({"a": ""}, yaml=yaml)
    with pytest.raises(DatasetError) as info:
        read_yolo(root, "train")
    assert problem in str(info.value) and str(root) in str(info.value)


def test_corrupt_image_header_and_label_path(make_yolo):
    root = make_yolo({"a": ""})
    (root / "images" / "train" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"a\.png: not an image in a supported format"):
        read_yolo(root, "train")
    assert label_path(Path("/d/images/x/images/train/a.jpg")) == Path("/d/images/x/labels/train/a.txt")


def test_split_as_image_list_file_or_list_of_folders(make_yolo, write_image):
    root = make_yolo({"a": "1 0.5 0.5 0.5 0.5\n", "b": "0 0.5 0.5 0.5 0.5\n"}, yaml=None)
    write_image(root / "images" / "extra" / "c.png", 40, 20)
    (root / "train.txt").write_text("images/train/b.png\n\nimages/extra/c.png\n")
    (root / "data.yaml").write_text(
        "names: [cat, dog]\ntrain: train.txt\nval: [images/train, images/extra]\n"
    )
    listed = read_yolo(root, "train")
    assert [r.path.name for r in listed.records] == ["b.png", "c.png"]
    assert listed.report.notes == {NO_LABEL_FILE: 1}
    assert [r.path.name for r in read_yolo(root, "val").records] == ["a.png", "b.png", "c.png"]
    (root / "train.txt").write_text("images/train/zzz.png\n")
    with pytest.raises(DatasetError, match=r"train\.txt line 1: image .*zzz\.png not found"):
        read_yolo(root, "train")

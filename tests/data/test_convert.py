"""Dataset writers and ``convert_dataset``: read -> write -> read gives the same images, sizes, classes,
boxes and crowd flags for every pair of formats; what a format cannot hold is counted, never silently lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from image_files import jpeg_with_orientation
from PIL import Image

from fcos.data.coco import read_coco, write_coco
from fcos.data.convert import convert_dataset
from fcos.data.errors import DatasetError
from fcos.data.layouts import load_splits
from fcos.data.records import DetectionData, ImageRecord, LoadReport
from fcos.data.voc import write_voc
from fcos.data.yolo import CROWD_NOT_WRITTEN, write_yolo

FORMATS = ("coco", "voc", "yolo")

# One small dataset, written by hand in each format: (split, file, width, height, [(class, box, crowd)]).
# Fractional coordinates, boxes on the right and bottom borders, an image without boxes, a crowd box;
# classes named out of alphabetical order.
CLASSES = ["dog", "cat", "bird"]
IMAGES = [
    ("train", "a.png", 40, 30, [("dog", (1.5, 2.25, 20.75, 25.0), 0), ("cat", (30.0, 20.0, 40.0, 30.0), 0)]),
    ("train", "b.png", 33, 17, [("bird", (0.0, 0.0, 33.0, 17.0), 0), ("dog", (3.0, 3.0, 9.0, 8.0), 1)]),
    ("train", "c.png", 24, 24, []),
    ("val", "d.png", 40, 30, [("cat", (10.125, 5.5, 12.375, 29.0), 0), ("bird", (2.0, 2.0, 7.0, 9.0), 0)]),
    ("val", "e.png", 19, 23, [("dog", (0.1, 0.2, 18.9, 22.8), 0)]),
]


def _image(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _coco(root: Path) -> Path:
    categories = [{"id": i, "name": n} for i, n in zip((3, 7, 11), CLASSES, strict=True)]  # ids kept by COCO only
    ids = {n: c["id"] for n, c in zip(CLASSES, categories, strict=True)}
    docs = {"train": {"images": [], "annotations": [], "categories": categories},
            "val": {"images": [], "annotations": [], "categories": categories}}
    for k, (split, name, w, h, objects) in enumerate(IMAGES):
        _image(root / "images" / name, w, h, k)
        docs[split]["images"].append({"id": 100 + k, "file_name": name, "width": w, "height": h})
        for cls, (x1, y1, x2, y2), crowd in objects:
            anns = docs[split]["annotations"]
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": ids[cls],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": crowd, "area": (x2 - x1) * (y2 - y1)})
    (root / "annotations").mkdir(parents=True)
    for split, doc in docs.items():
        (root / "annotations" / f"{split}.json").write_text(json.dumps(doc))
    return root


def _voc(root: Path) -> Path:
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    stems: dict[str, list[str]] = {"train": [], "val": []}
    for k, (split, name, w, h, objects) in enumerate(IMAGES):
        _image(root / "JPEGImages" / name, w, h, k)
        stems[split].append(Path(name).stem)
        parts = [f"<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>"]
        for cls, box, crowd in objects:
            coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
            parts.append(f"<object><name>{cls}</name><difficult>{crowd}</difficult><bndbox>{coords}</bndbox></object>")
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text("".join(parts) + "</annotation>")
    for split, names in stems.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def _yolo(root: Path) -> Path:
    """The YOLO copy has no crowd box (YOLO has no crowd flag)."""
    for k, (split, name, w, h, objects) in enumerate(IMAGES):
        _image(root / "images" / split / name, w, h, k)
        lines = [f"{CLASSES.index(c)} {(x1 + x2) / 2 / w!r} {(y1 + y2) / 2 / h!r} {(x2 - x1) / w!r} {(y2 - y1) / h!r}\n"
                 for c, (x1, y1, x2, y2), crowd in objects if not crowd]
        label = root / "labels" / split / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(lines))
    (root / "data.yaml").write_text(f"names: [{', '.join(CLASSES)}]\n")
    return root


BUILDERS = {"coco": _coco, "voc": _voc, "yolo": _yolo}


def assert_same(a: dict[str, DetectionData], b: dict[str, DetectionData], *, crowd: bool = True) -> None:
    """Same splits, images (by file stem), sizes, boxes within 1e-3 px with the same class names, crowd
    boxes (unless ``crowd`` is False: the target could not hold them) and nothing clipped or dropped."""
    assert list(a) == list(b)
    for split in a:
        x, y = a[split], b[split]
        assert sorted(x.class_names) == sorted(y.class_names)
        assert not y.report.clipped and not y.report.dropped, y.report.summary()
        left, right = {r.path.stem: r for r in x.records}, {r.path.stem: r for r in y.records}
        assert sorted(left) == sorted(right)
        for stem, r in left.items():
            s = right[stem]
            assert (r.width, r.height) == (s.width, s.height), stem
            assert r.path.read_bytes() == s.path.read_bytes(), stem  # the image itself, byte for byte
            np.testing.assert_allclose(s.boxes, r.boxes, atol=1e-3, err_msg=stem)
            assert [y.class_names[i] for i in s.labels] == [x.class_names[i] for i in r.labels], stem
            if crowd:
                np.testing.assert_allclose(s.crowd, r.crowd, atol=1e-3, err_msg=stem)
                assert [y.class_names[i] for i in s.crowd_labels] == [x.class_names[i] for i in r.crowd_labels]
            else:
                assert len(s.crowd) == 0


@pytest.mark.parametrize("target", FORMATS)
@pytest.mark.parametrize("source", FORMATS)
def test_round_trip_every_pair_of_formats(tmp_path, source, target):
    src = BUILDERS[source](tmp_path / "src")
    before = load_splits(src)
    report = convert_dataset(src, target, tmp_path / "out")
    after = load_splits(tmp_path / "out")
    assert [d.format for d in after.values()] == [target, target]
    lost_crowd = target == "yolo" and source != "yolo"
    assert_same(before, after, crowd=not lost_crowd)
    assert report.images == {"train": 3, "val": 2} and report.linked == 5 and report.copied == 0
    assert report.lost == ({CROWD_NOT_WRITTEN: 1} if lost_crowd else {})
    train = after["train"]
    if target == "voc":  # names only: alphabetical order, ids 1..C
        assert train.class_names == sorted(CLASSES) and train.category_ids == [1, 2, 3]
    else:  # COCO and YOLO keep the class order; COCO also the category ids (YOLO: 1..C)
        assert train.class_names == before["train"].class_names
        assert train.category_ids == ([3, 7, 11] if source == target == "coco" else [1, 2, 3])
    if source == target == "coco":  # COCO holds image ids too
        assert [r.image_id for r in train.records] == [100, 101, 102]


def test_crowd_and_difficult_are_the_same_flag(tmp_path):
    """COCO iscrowd=1 -> VOC difficult -> COCO iscrowd=1, and the notes say so."""
    src = _coco(tmp_path / "src")
    voc = convert_dataset(src, "voc", tmp_path / "voc")
    assert any("written as difficult objects" in note for note in voc.notes)
    assert any("category ids [3, 7, 11] become 1..C" in note for note in voc.notes)
    assert any("class order ['dog', 'cat', 'bird'] becomes alphabetical" in note for note in voc.notes)
    xml = (tmp_path / "voc" / "Annotations" / "b.xml").read_text()
    assert "<difficult>1</difficult>" in xml and "<xmax>33</xmax>" in xml  # integral boxes stay integers
    back = convert_dataset(tmp_path / "voc", "coco", tmp_path / "coco")
    assert back.crowd == {"train": 1, "val": 0}
    doc = json.loads((tmp_path / "coco" / "annotations" / "train.json").read_text())
    assert [a["bbox"] for a in doc["annotations"] if a["iscrowd"]] == [[3.0, 3.0, 6.0, 5.0]]


def test_yolo_labels_by_hand(tmp_path):
    data = {"train": read_coco(_coco(tmp_path / "src") / "annotations" / "train.json")}
    report = write_yolo(data, tmp_path / "out")
    assert (tmp_path / "out" / "labels" / "train" / "c.txt").read_text() == ""  # a negative: an empty file
    lines = (tmp_path / "out" / "labels" / "train" / "a.txt").read_text().splitlines()
    # dog (1.5, 2.25, 20.75, 25.0) in 40 x 30: centre (11.125, 13.625), size 19.25 x 22.75
    assert lines[0].split() == ["0", repr(11.125 / 40), repr(13.625 / 30), repr(19.25 / 40), repr(22.75 / 30)]
    assert lines[1].split()[0] == "1"
    assert (tmp_path / "out" / "data.yaml").read_text() == "train: images/train\nnc: 3\nnames:\n  0: dog\n  1: cat\n  2: bird\n"
    assert report.lost == {CROWD_NOT_WRITTEN: 1} and report.crowd == {"train": 0}
    assert "crowd / difficult boxes (YOLO has no crowd flag): 1" in report.summary()
    assert any("category ids [3, 7, 11] become 1..C" in n for n in report.notes)


def test_images_are_hard_linked_or_copied(tmp_path):
    src = _coco(tmp_path / "src")
    convert_dataset(src, "coco", tmp_path / "linked")
    report = convert_dataset(src, "yolo", tmp_path / "copied", link=False)
    original = src / "images" / "a.png"
    assert os.stat(tmp_path / "linked" / "images" / "a.png").st_ino == os.stat(original).st_ino
    copy = tmp_path / "copied" / "images" / "train" / "a.png"
    assert os.stat(copy).st_ino != os.stat(original).st_ino and copy.read_bytes() == original.read_bytes()
    assert (report.linked, report.copied) == (0, 5)


def test_colliding_and_nested_file_names(tmp_path, write_image):
    """Two splits' a.png (different files) share COCO's images/ folder; VOC and YOLO flatten sub-folders and
    need unique stems (a.png and a.jpg would share a.xml / a.txt)."""
    root = tmp_path / "yolo"
    for split, name, size in (("train", "a.png", 10), ("train", "sub dir/a.jpg", 12), ("val", "a.png", 14)):
        write_image(root / "images" / split / name, size, size)
        label = root / "labels" / split / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [x]\n")
    convert_dataset(root, "coco", tmp_path / "coco")
    names = {s: [i["file_name"] for i in json.loads((tmp_path / "coco" / "annotations" / f"{s}.json").read_text())["images"]]
             for s in ("train", "val")}
    assert names == {"train": ["a.png", "sub dir/a.jpg"], "val": ["a_2.png"]}
    convert_dataset(tmp_path / "coco", "voc", tmp_path / "voc")
    assert sorted(p.name for p in (tmp_path / "voc" / "JPEGImages").iterdir()) == ["a.png", "a_2.png", "sub_dir_a.jpg"]
    assert (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").read_text() == "a_2\n"
    back = load_splits(tmp_path / "voc")
    assert [(r.path.name, r.width) for r in back["train"].records] == [("a.png", 10), ("sub_dir_a.jpg", 12)]
    assert [(r.path.name, r.width) for r in back["val"].records] == [("a_2.png", 14)]


@pytest.mark.parametrize("target", FORMATS)
@pytest.mark.parametrize("source", ["fruit-coco", "fruit-yolo", "raccoon-voc"])
def test_real_subsets_round_trip(shared_data, tmp_path, source, target):
    if source == "raccoon-voc":  # the upstream VOC xml of the raccoon subset, split like its COCO files
        src = tmp_path / "src"
        (src / "ImageSets" / "Main").mkdir(parents=True)
        (src / "Annotations").symlink_to(shared_data / "raccoon" / "original" / "annotations")
        (src / "JPEGImages").symlink_to(shared_data / "raccoon" / "images")
        for split in ("train", "val"):
            doc = json.loads((shared_data / "raccoon" / "annotations" / f"{split}.json").read_text())
            stems = [Path(image["file_name"]).stem for image in doc["images"]]
            (src / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    else:
        src = shared_data / "fruit" / ("yolo" if source == "fruit-yolo" else "")
    before = load_splits(src)
    report = convert_dataset(src, target, tmp_path / "out")
    assert_same(before, load_splits(tmp_path / "out"))
    assert not report.lost and report.images == {s: len(d.records) for s, d in before.items()}


def test_a_chain_through_every_format_comes_back(tmp_path):
    src = _voc(tmp_path / "src")
    convert_dataset(src, "coco", tmp_path / "coco")
    convert_dataset(tmp_path / "coco", "yolo", tmp_path / "yolo")
    convert_dataset(tmp_path / "yolo", "voc", tmp_path / "voc")
    assert_same(load_splits(src), load_splits(tmp_path / "voc"), crowd=False)


def test_bad_outputs_and_formats(tmp_path):
    src = _coco(tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'full'}: exists and is not empty"):
        convert_dataset(src, "voc", tmp_path / "full")
    with pytest.raises(DatasetError, match=r"x\.txt: exists and is a file"):
        convert_dataset(src, "voc", tmp_path / "full" / "x.txt")
    with pytest.raises(DatasetError, match=r"out: unknown format 'tfrecord': expected one of coco, voc, yolo"):
        convert_dataset(src, "tfrecord", tmp_path / "out")
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert convert_dataset(src, "voc", tmp_path / "empty").images == {"train": 3, "val": 2}
    nothing = DetectionData([], ["a"], [1], LoadReport(), Path("src.json"), "coco")
    with pytest.raises(DatasetError, match=r"src\.json: split 'train' has no images: nothing to write"):
        write_coco(nothing, tmp_path / "none")
    with pytest.raises(ValueError, match="must be a plain file name"):
        write_coco({"../x": read_coco(src / "annotations" / "val.json")}, tmp_path / "none")


def test_a_failed_write_leaves_nothing(tmp_path):
    data = read_coco(_coco(tmp_path / "src") / "annotations" / "train.json")
    data.records[2].path.unlink()  # c.png is gone after reading
    for writer in (write_coco, write_voc, write_yolo):
        with pytest.raises(DatasetError, match=r"c\.png: "):
            writer(data, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no partial folder either


def test_voc_one_file_per_image(tmp_path):
    data = read_coco(_coco(tmp_path / "src") / "annotations" / "train.json")
    other = DetectionData([ImageRecord(data.records[0].path, 1, 40, 30)], data.class_names, data.category_ids,
                          LoadReport(), data.source, "coco")
    with pytest.raises(DatasetError, match=r"a\.png: is in two splits with different boxes \(split 'val'\)"):
        write_voc({"train": data, "val": other}, tmp_path / "out")
    same = write_voc({"train": data, "val": data}, tmp_path / "ok")  # the same image and boxes: one file
    assert same.linked == 3 and len(list((tmp_path / "ok" / "Annotations").iterdir())) == 3


def test_yolo_refuses_sideways_exif_with_stored_size_annotations(tmp_path):
    """Stored 24 x 16 with orientation 6 (upright 16 x 24): COCO annotations of the stored pixels cannot become
    YOLO labels, which describe the upright image."""
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    image = Image.fromarray(np.zeros((16, 24, 3), np.uint8))
    (root / "images" / "p.jpg").write_bytes(jpeg_with_orientation(image, 6))
    doc = {"images": [{"id": 1, "file_name": "p.jpg", "width": 24, "height": 16}], "annotations": [],
           "categories": [{"id": 1, "name": "x"}]}
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"p\.jpg: its EXIF orientation shows it as 16x24, but the annotations describe"):
        convert_dataset(root, "yolo", tmp_path / "out")
    assert convert_dataset(root, "voc", tmp_path / "voc").images == {"train": 1}  # VOC declares the size

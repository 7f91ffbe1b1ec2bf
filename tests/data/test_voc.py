import json
from pathlib import Path

import numpy as np
import pytest

from fcos.data.coco import read_coco
from fcos.data.errors import DatasetError
from fcos.data.geometry import CLIPPED
from fcos.data.voc import DIFFICULT, read_voc


@pytest.fixture(scope="module")
def raccoon_voc(shared_data, tmp_path_factory) -> Path:
    """The raccoon VOC xml files in a VOC layout, split like the COCO files."""
    root = tmp_path_factory.mktemp("raccoon_voc")
    raccoon = shared_data / "raccoon"
    (root / "Annotations").symlink_to(raccoon / "original" / "annotations", target_is_directory=True)
    (root / "JPEGImages").symlink_to(raccoon / "images", target_is_directory=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split in ("train", "val"):
        doc = json.loads((raccoon / "annotations" / f"{split}.json").read_text())
        stems = [Path(image["file_name"]).stem for image in doc["images"]]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


@pytest.mark.parametrize("split", ["train", "val"])
def test_raccoon_voc_equals_raccoon_coco(shared_data, raccoon_voc, split):
    voc = read_voc(raccoon_voc, split)
    coco = read_coco(shared_data / "raccoon" / "annotations" / f"{split}.json")
    assert voc.class_names == coco.class_names == ["raccoon"] and voc.category_ids == [1]
    assert voc.report.boxes_per_class == coco.report.boxes_per_class
    by_name = {r.path.name: r for r in coco.records}
    assert sorted(r.path.name for r in voc.records) == sorted(by_name)
    for record in voc.records:
        other = by_name[record.path.name]
        assert (record.width, record.height) == (other.width, other.height)
        np.testing.assert_allclose(record.boxes, other.boxes, atol=1e-3)
        np.testing.assert_array_equal(record.labels, other.labels)
    assert [r.image_id for r in voc.records] == list(range(1, len(voc.records) + 1))


def _xml(width="40", height="30", objects=(("cat", (1, 2, 20, 25), 0),), filename="a.jpg", size=True) -> str:
    parts = ["<annotation>", f"<filename>{filename}</filename>" if filename else ""]
    if size:
        parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for name, box, difficult in objects:
        coords = "".join(
            f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        )
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>"
        )
    return "".join(parts + ["</annotation>"])


def test_difficult_objects_become_crowd_boxes_and_classes_sorted(make_voc):
    objects = (("dog", (1, 2, 20, 25), 0), ("cat", (5, 5, 10, 10), 1), ("cat", (-3, 0, 10, 31), 0))
    data = read_voc(make_voc({"a": _xml(objects=objects)}))
    (record,) = data.records
    assert data.class_names == ["cat", "dog"]
    assert record.boxes.tolist() == [[1, 2, 20, 25], [0, 0, 10, 30]] and record.labels.tolist() == [1, 0]
    assert record.crowd.tolist() == [[5, 5, 10, 10]] and record.crowd_labels.tolist() == [0]
    assert data.report.ignored == {DIFFICULT: 1} and data.report.clipped == {CLIPPED: 1}


def test_class_names_argument_fixes_order_and_rejects_unknown(make_voc):
    root = make_voc({"a": _xml()})
    data = read_voc(root, class_names=["dog", "cat"])
    assert data.class_names == ["dog", "cat"] and data.records[0].labels.tolist() == [1]
    with pytest.raises(DatasetError, match=r"a\.xml: object 1: class 'cat' is not in class_names \['dog'\]"):
        read_voc(root, class_names=["dog"])


@pytest.mark.parametrize(
    "text,problem",
    [
        ("<annotation><size>", "malformed XML"),
        (_xml(size=False), "missing <size>"),
        (_xml(width="0"), "<size> is 0x30"),
        (_xml(width="forty"), "size: <width> 'forty' is not a number"),
        (
            _xml(objects=(("cat", (50, 2, 60, 25), 0),)),
            "object 1 (cat) bndbox [50, 2, 60, 25] lies entirely outside the 40x30 image",
        ),
        (_xml(objects=(("cat", ("x", 2, 6, 25), 0),)), "object 1 (cat): <xmin> 'x' is not a number"),
        (_xml(objects=(("cat", ("nan", 2, 6, 25), 0),)), "NaN or infinite"),
        (_xml(objects=(("cat", (1, 2, 6, 25), 2),)), "<difficult> must be 0 or 1"),
        (
            "<annotation><size><width>4</width><height>4</height></size><object><name>c</name></object></annotation>",
            "object 1 (c) has no <bndbox>",
        ),
    ],
)
def test_broken_xml_raises_naming_the_file(make_voc, text, problem):
    root = make_voc({"a": text})
    with pytest.raises(DatasetError) as info:
        read_voc(root)
    message = str(info.value)
    assert problem in message and str(root) in message, message
    if "image file" not in problem:
        assert message.startswith(str(root / "Annotations" / "a.xml")), message


def test_split_file_problems(make_voc, tmp_path):
    root = make_voc({"a": _xml()}, split_lines=["a", "", "b"])
    with pytest.raises(
        DatasetError, match=r"b\.xml: annotation file not found \(listed in .*train\.txt line 3\)"
    ):
        read_voc(root)
    with pytest.raises(DatasetError, match=r"val\.txt: split file not found"):
        read_voc(root, "val")
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\na\n")
    with pytest.raises(DatasetError, match=r"train\.txt line 2: image id 'a' repeats line 1"):
        read_voc(root)


def test_split_ids_may_hold_spaces_and_class_split_files_their_flag_column(make_voc):
    root = make_voc({"ñ val_00000": _xml(), "b": _xml()}, split_lines=["ñ val_00000", "  b  "])
    assert [r.path.name for r in read_voc(root).records] == ["ñ val_00000.jpg", "b.jpg"]
    (root / "ImageSets" / "Main" / "cat_train.txt").write_text("ñ val_00000  1\nb -1\n")  # a class split file
    assert [r.path.name for r in read_voc(root, "cat_train").records] == ["ñ val_00000.jpg", "b.jpg"]


@pytest.mark.parametrize("filename", ["a", "A.JPG", "a.png", "C:\\data\\a.jpg", "elsewhere.jpg"])
def test_a_filename_naming_no_file_falls_back_to_the_image_of_the_id(make_voc, filename):
    """torchvision's rule (JPEGImages/<id>.jpg) where <filename> names no file: no suffix, another case or
    suffix, a path from the machine that wrote the XML."""
    root = make_voc({"a": _xml(filename=filename)})
    assert read_voc(root).records[0].path == root / "JPEGImages" / "a.jpg"
    (root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match=r"image file not found \(named by .*a\.xml\)"):
        read_voc(root)

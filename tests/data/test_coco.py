import json
import math

import numpy as np
import pytest

from fcos.data.coco import read_coco
from fcos.data.errors import DatasetError
from fcos.data.geometry import CLIPPED, DEGENERATE


@pytest.mark.parametrize(
    "name,split,images,boxes,per_class",
    [
        # the vendored subsets (tests/assets/README.md)
        ("raccoon", "train", 9, 10, {"raccoon": 10}),
        ("raccoon", "val", 8, 9, {"raccoon": 9}),
        ("fruit", "train", 25, 41, {"apple": 10, "banana": 20, "orange": 11}),
        ("fruit", "val", 13, 25, {"apple": 10, "banana": 8, "orange": 7}),
    ],
)
def test_real_datasets(shared_data, name, split, images, boxes, per_class):
    data = read_coco(shared_data / name / "annotations" / f"{split}.json")
    assert (len(data.records), data.report.boxes, data.report.boxes_per_class) == (images, boxes, per_class)
    assert data.class_names == list(per_class) and data.category_ids == list(range(1, len(per_class) + 1))
    assert data.format == "coco" and not data.report.clipped and not data.report.dropped
    first = data.records[0]
    assert first.path.is_file() and first.boxes.dtype == np.float32 and first.labels.dtype == np.int64
    for record in data.records:
        assert ((record.boxes[:, :2] >= 0) & (record.boxes[:, 2:] <= [record.width, record.height])).all()
        assert (record.boxes[:, 2:] > record.boxes[:, :2]).all()


def test_raccoon_first_box_is_xywh_to_xyxy(shared_data):
    path = shared_data / "raccoon" / "annotations" / "train.json"
    doc = json.loads(path.read_text())
    first = doc["annotations"][0]
    data = read_coco(path)
    record = next(r for r in data.records if r.image_id == first["image_id"])
    x, y, w, h = first["bbox"]
    assert record.boxes[0].tolist() == pytest.approx([x, y, x + w, y + h])


def test_clipping_dropping_negatives_and_crowd(make_coco, coco_ann):
    images = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 5, "file_name": "b.png", "width": 20, "height": 20},  # no annotations: a negative
    ]
    annotations = [
        coco_ann(1, [5, 5, 10, 10]),
        coco_ann(2, [30, 20, 20, 20], category_id=2),  # partly outside: clipped to [30, 20, 40, 30]
        coco_ann(3, [5, 5, 0, 10]),  # zero width: dropped
        coco_ann(4, [1, 1, 8, 8], iscrowd=1),  # crowd
    ]
    data = read_coco(make_coco(images, annotations))
    a, b = data.records
    assert a.boxes.tolist() == [[5, 5, 15, 15], [30, 20, 40, 30]] and a.labels.tolist() == [0, 1]
    assert a.crowd.tolist() == [[1, 1, 9, 9]] and a.crowd_labels.tolist() == [0]
    assert b.image_id == 5 and len(b.boxes) == 0
    report = data.report
    assert report.clipped == {CLIPPED: 1} and report.dropped == {DEGENERATE: 1}
    assert report.empty_images == 1 and sum(report.ignored.values()) == 1
    assert "images: 2 (1 without objects)" in report.summary()


def test_categories_sorted_by_id_and_class_names_remap(make_coco, coco_ann):
    categories = [{"id": 9, "name": "zebra"}, {"id": 2, "name": "ant"}]
    path = make_coco(annotations=[coco_ann(1, [0, 0, 5, 5], category_id=9)], categories=categories)
    data = read_coco(path)
    assert (data.class_names, data.category_ids, data.records[0].labels.tolist()) == (
        ["ant", "zebra"],
        [2, 9],
        [1],
    )
    remapped = read_coco(path, class_names=["zebra", "ant"])
    assert remapped.category_ids == [9, 2] and remapped.records[0].labels.tolist() == [0]


_IMG = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}


def _a(ann_id=1, bbox=(1, 1, 5, 5), **kw):
    return {"id": ann_id, "image_id": 1, "category_id": 1, "bbox": list(bbox), **kw}


# case -> (make_coco arguments, expected text after "<file>: ")
BROKEN = {
    "unknown category": (
        dict(annotations=[_a(17, category_id=99)]),
        "annotation id 17: category_id 99 is not in categories",
    ),
    "unknown image": (dict(annotations=[_a(3, image_id=8)]), "annotation id 3: image_id 8 is not in images"),
    "entirely outside": (
        dict(annotations=[_a(4, (50, 1, 5, 5))]),
        "annotation id 4: bbox [50.0, 1.0, 5.0, 5.0] lies entirely outside the 40x30 image",
    ),
    "nan": (
        dict(annotations=[_a(1, (math.nan, 1, 2, 2))]),  # json.dumps writes NaN, as some exporters do
        "annotation id 1: bbox [nan, 1.0, 2.0, 2.0] has a NaN or infinite coordinate",
    ),
    "inf": (dict(annotations=[_a(1, (1, 1, math.inf, 2))]), "has a NaN or infinite coordinate"),
    "bbox string": (
        dict(annotations=[_a(5, bbox="1,2,3,4")]),
        "annotation id 5: 'bbox' must be a list of 4 numbers",
    ),
    "bbox short": (dict(annotations=[_a(5, bbox=(1, 2, 3))]), "'bbox' must be a list of 4 numbers"),
    "bbox bool": (dict(annotations=[_a(5, bbox=(True, 2, 3, 4))]), "'bbox' must be a list of 4 numbers"),
    "image id string": (
        dict(annotations=[_a(6, image_id="1")]),
        "annotation id 6: annotations[0]: 'image_id' must be a 64-bit integer, got '1'",
    ),
    "iscrowd 2": (dict(annotations=[_a(7, iscrowd=2)]), "'iscrowd' must be 0 or 1"),
    "annotation not object": (dict(annotations=[[1, 2]]), "annotations[0] is not a JSON object"),
    "annotation without id": (
        dict(annotations=[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}]),
        "annotations[0] has no 'id'",
    ),
    "duplicate annotation id": (dict(annotations=[_a(8), _a(8)]), "annotation id 8: duplicate annotation id"),
    "duplicate image id": (dict(images=[_IMG, {**_IMG, "file_name": "b.png"}]), "duplicate image id 1"),
    "image size string": (dict(images=[{**_IMG, "width": "40"}]), "'width' must be a 64-bit integer"),
    "image size zero": (dict(images=[{**_IMG, "height": 0}]), "has size 40x0"),
    "image without file_name": (
        dict(images=[{"id": 1, "width": 4, "height": 4}]),
        "needs a string 'file_name'",
    ),
    "no categories": (dict(categories=[]), "'categories' is empty"),
    "duplicate category": (
        dict(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
        "duplicate category id 1",
    ),
    "category without name": (dict(categories=[{"id": 1}]), "needs a non-empty string 'name'"),
    "missing images": (dict(doc={"annotations": [], "categories": []}), "missing the 'images' list"),
    "missing annotations": (dict(doc={"images": [], "categories": []}), "missing the 'annotations' list"),
    "images not list": (
        dict(doc={"images": {}, "annotations": [], "categories": []}),
        "'images' must be a list, got dict",
    ),
    "top level list": (dict(doc=[1, 2]), "the top level must be a JSON object"),
    "truncated": (dict(text='{"images": [{"id": 1, "file_na'), "line 1: invalid JSON at column"),
    "not utf8": (dict(), "not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_raise_dataset_error_naming_file_and_problem(make_coco, case):
    kwargs, problem = BROKEN[case]
    path = make_coco(**{"images": [_IMG], **kwargs})
    if case == "not utf8":
        path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetError) as info:
        read_coco(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert problem in message, message


def test_missing_image_file_names_the_image(make_coco):
    path = make_coco()
    (path.parent.parent / "images" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"a\.png: image file not found \(image id 1 in .*train\.json\)"):
        read_coco(path)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match="nope.json: annotation file not found"):
        read_coco(tmp_path / "nope.json")

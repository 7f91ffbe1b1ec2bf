"""Readers fail only with DatasetError, whatever the files contain, and what they return is well formed."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcos.data.coco import read_coco
from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData
from fcos.data.voc import read_voc
from fcos.data.yolo import read_yolo

# FCOS_FUZZ_EXAMPLES=5000 for a long, randomised run; the default is a quick, reproducible one.
_EXAMPLES = int(os.environ.get("FCOS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 150,
    deadline=None,
    derandomize=not _EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**400) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)

_DOC = {
    "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5], "iscrowd": 0}],
    "categories": [{"id": 1, "name": "cat"}],
}
_FIELDS = [(section, key) for section, items in _DOC.items() for key in items[0]] + [
    ("annotations", "bbox.0"),
    ("annotations", "bbox.3"),
]


def _reads_or_dataset_error(read) -> None:
    """The property: a reader either returns well-formed records or raises DatasetError naming the
    problem; any other exception is a failure."""
    try:
        data = read()
    except DatasetError as exc:
        assert exc.path is not None and str(exc), "a DatasetError names the file and what is wrong"
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        pytest.fail(f"{type(exc).__name__} escaped the reader (only DatasetError may): {exc}")
    assert isinstance(data, DetectionData) and len(data.category_ids) == len(data.class_names)
    for record in data.records:
        boxes, labels = record.boxes, record.labels
        assert boxes.shape == (len(labels), 4) and np.isfinite(boxes).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all()
        assert (boxes[:, [0, 2]] <= record.width).all() and (boxes[:, [1, 3]] <= record.height).all()
        assert ((labels >= 0) & (labels < data.num_classes)).all()


@FUZZ
@given(field=st.sampled_from(_FIELDS), value=json_values, drop=st.booleans())
def test_coco_field_mutations(make_coco, field, value, drop):
    path = make_coco()
    doc = json.loads(json.dumps(_DOC))
    section, key = field
    item = doc[section][0]
    if "." in key:
        item["bbox"][int(key[-1])] = value
    elif drop:
        del item[key]
    else:
        item[key] = value
    path.write_text(json.dumps(doc))
    _reads_or_dataset_error(lambda: read_coco(path))


@FUZZ
@given(text=st.text(alphabet=st.sampled_from("0123456789 .-+eEnaifINF\n\t,x"), max_size=40))
def test_yolo_label_text(make_yolo, text):
    root = make_yolo({"a": text})
    _reads_or_dataset_error(lambda: read_yolo(root, "train"))


@FUZZ
@given(yaml=st.text(alphabet=st.sampled_from("names:[]{}0123,ab -\n'\"pathtrainval./"), max_size=40))
def test_yolo_yaml_text(make_yolo, yaml):
    root = make_yolo({"a": "0 0.5 0.5 0.2 0.2\n"}, yaml=yaml)
    _reads_or_dataset_error(lambda: read_yolo(root, "train"))


@FUZZ
@given(
    tag=st.sampled_from(["width", "height", "xmin", "ymax", "name", "difficult", "filename"]),
    text=st.text(max_size=8).filter(lambda t: "<" not in t and "&" not in t) | st.floats().map(str),
)
def test_voc_element_text(make_voc_once, tag, text):
    root, xml = make_voc_once
    (root / "Annotations" / "a.xml").write_text(xml.replace(f"<{tag}>", f"<{tag}>{text}", 1))
    _reads_or_dataset_error(lambda: read_voc(root))


def test_huge_integers_do_not_overflow(make_coco):
    path = make_coco()
    doc = json.loads(json.dumps(_DOC))
    doc["annotations"][0]["bbox"] = [10**400, 1, 1, 1]
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="'bbox' must be a list of 4 numbers"):
        read_coco(path)

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData, ImageRecord, LoadReport, remap_classes, to_coco


def _data(fmt="voc"):
    records = [
        ImageRecord(
            "/d/a.jpg", 1, 100, 80, [[10, 10, 50, 40], [60, 20, 90, 70]], [0, 1], [[0, 0, 20, 20]], [1]
        ),
        ImageRecord("/d/sub/b.jpg", 2, 64, 64),  # a negative
    ]
    report = LoadReport(title="test")
    report.tally(records, ["cat", "dog"])
    return DetectionData(records, ["cat", "dog"], [3, 7] if fmt == "coco" else [1, 2], report, "/d/x", fmt)


def test_record_coerces_dtypes_and_shapes():
    record = ImageRecord("/a.jpg", 1, 10, 10)
    assert record.boxes.shape == (0, 4) and record.boxes.dtype == np.float32
    assert record.labels.shape == (0,) and record.labels.dtype == np.int64
    assert record.crowd.shape == (0, 4) and record.crowd_labels.shape == (0,)
    with pytest.raises(ValueError, match="2 boxes / 1 labels"):
        ImageRecord("/a.jpg", 1, 10, 10, [[0, 0, 1, 1], [0, 0, 2, 2]], [0])


def test_report_tally_and_summary():
    report = _data().report
    report.clipped["box partly outside the image"] += 2
    assert (report.images, report.empty_images, report.boxes) == (2, 1, 2)
    assert report.boxes_per_class == {"cat": 1, "dog": 1}
    text = report.summary()
    assert "images: 2 (1 without objects)" in text
    assert "cat 1, dog 1" in text
    assert "clipped to the image: 2" in text and "box partly outside the image: 2" in text
    assert "dropped: 0" in text


def test_to_coco_is_evaluable_and_perfect_detections_score_one():
    data = _data("coco")
    gt_dict = to_coco(data)
    assert [c["id"] for c in gt_dict["categories"]] == [3, 7]
    assert [a["iscrowd"] for a in gt_dict["annotations"]] == [0, 0, 1]
    assert gt_dict["annotations"][0]["bbox"] == [10.0, 10.0, 40.0, 30.0]
    assert [i["file_name"] for i in gt_dict["images"]] == ["a.jpg", "sub/b.jpg"]
    gt = COCO()
    gt.dataset = gt_dict
    gt.createIndex()
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt_dict["annotations"]
    ]  # includes a detection on the crowd box: must be ignored, not a false positive
    evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_remap_classes_by_name():
    data = remap_classes(_data("coco"), ["bird", "dog", "cat"])
    assert data.class_names == ["bird", "dog", "cat"]
    assert data.category_ids == [8, 7, 3]  # COCO keeps its ids; a new name gets a fresh one
    assert data.records[0].labels.tolist() == [2, 1] and data.records[0].crowd_labels.tolist() == [1]
    assert data.report.boxes_per_class == {"bird": 0, "dog": 1, "cat": 1}
    assert remap_classes(_data(), ["dog", "cat"]).category_ids == [1, 2]
    with pytest.raises(DatasetError, match=r"classes \['dog'\] are not in the given class_names"):
        remap_classes(_data(), ["cat"])

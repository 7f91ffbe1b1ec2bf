"""COCO evaluation: perfect detections score 1.0 and our numbers equal pycocotools run directly."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fcos.data import load_annotations, to_coco
from fcos.evaluation.coco import METRIC_NAMES, coco_metrics, to_coco_results


def ground_truth_as_predictions(data, jitter=0.0, gen=None):
    preds = []
    for rec in data.records:
        boxes = torch.from_numpy(rec.boxes.copy())
        if jitter:
            boxes = boxes + torch.randn(boxes.shape, generator=gen) * jitter
        preds.append({"image_id": rec.image_id, "boxes": boxes,
                      "scores": torch.linspace(0.9, 0.5, len(boxes)), "labels": torch.from_numpy(rec.labels.copy())})
    return preds


def test_ground_truth_fed_back_scores_one(shared_data):
    data = load_annotations(shared_data / "fruit", "val")
    metrics = coco_metrics(to_coco(data), to_coco_results(ground_truth_as_predictions(data), data.category_ids), data.class_names)
    for name in ("AP", "AP50", "AP75"):
        assert metrics[name] == pytest.approx(1.0)
    assert metrics["per_class"] == pytest.approx({"apple": 1.0, "banana": 1.0, "orange": 1.0})


def test_metrics_equal_pycocotools_on_files(shared_data, tmp_path):
    data = load_annotations(shared_data / "fruit", "val")
    gen = torch.Generator().manual_seed(0)
    results = to_coco_results(ground_truth_as_predictions(data, jitter=6.0, gen=gen), data.category_ids)
    results = [r for i, r in enumerate(results) if i % 7]  # some misses
    ours = coco_metrics(to_coco(data), results, data.class_names)
    (tmp_path / "res.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(shared_data / "fruit" / "annotations" / "val.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "res.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(METRIC_NAMES, ev.stats):
        assert ours[name] == pytest.approx(value, abs=1e-12), name
    assert 0.2 < ours["AP"] < 0.95
    per_class = [np.mean(p[p > -1]) for p in (ev.eval["precision"][:, :, k, 0, -1] for k in range(3))]
    assert list(ours["per_class"].values()) == pytest.approx(per_class)


def test_no_detections_gives_zero():
    gt = {"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    metrics = coco_metrics(gt, [], ["a"])
    assert metrics["AP"] == 0.0 and metrics["per_class"] == {"a": 0.0}


def test_per_class_ap_follows_category_ids_not_list_order():
    # COCOeval orders classes by sorted category id; here the class list is ["b", "a"] with ids [3, 1].
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "b"}, {"id": 1, "name": "a"}],
    }
    only_a = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    metrics = coco_metrics(gt, only_a, ["b", "a"])
    assert metrics["per_class"] == {"b": 0.0, "a": pytest.approx(1.0)}

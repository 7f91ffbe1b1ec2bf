"""Diagnostics are tested by the data behind each picture: the COCO evaluator's PR curves, the
confusion matrix's matching rule on hand-made cases, the per-class table, and the files written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcos.data import DetectionData, ImageRecord, LoadReport, load_annotations, to_coco
from fcos.evaluation.coco import coco_evaluation, to_coco_results
from fcos.evaluation.diagnostics import class_table, confusion_matrix, match_detections, write_diagnostics
from fcos.evaluation.evaluator import EvalResult
from fcos.utils.files import WriteError


def ground_truth_as_predictions(data: DetectionData) -> list[dict]:
    return [{"image_id": r.image_id, "boxes": torch.from_numpy(r.boxes.copy()),
             "scores": torch.linspace(0.9, 0.5, len(r.boxes)), "labels": torch.from_numpy(r.labels.copy())}
            for r in data.records]


def result_for(predictions: list[dict], data: DetectionData) -> EvalResult:
    metrics, curves = coco_evaluation(to_coco(data), to_coco_results(predictions, data.category_ids), data.class_names)
    return EvalResult(metrics, predictions, curves)


def one_image(boxes, labels, crowd=None, names=("a", "b")) -> DetectionData:
    crowd = np.zeros((0, 4)) if crowd is None else np.asarray(crowd, np.float32)
    record = ImageRecord(path="x.jpg", image_id=1, width=200, height=200, boxes=boxes, labels=labels,
                         crowd=crowd, crowd_labels=np.zeros(len(crowd), np.int64))
    return DetectionData(records=[record], class_names=list(names), category_ids=list(range(1, len(names) + 1)),
                         report=LoadReport(), source=Path("x.json"), format="coco")


def det(boxes, scores, labels) -> dict:
    return {"image_id": 1, "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


@pytest.fixture(scope="module")
def fruit(shared_data) -> DetectionData:
    return load_annotations(shared_data / "fruit", "val")


def test_ground_truth_fed_back_gives_precision_one_to_recall_one_and_a_diagonal_matrix(fruit):
    result = result_for(ground_truth_as_predictions(fruit), fruit)
    curves = result.curves
    assert curves.recall[0] == 0 and curves.recall[-1] == 1 and len(curves.recall) == 101
    assert curves.precision.shape == (10, 101, 3)
    assert (curves.precision == 1.0).all()  # every class, every IoU, up to recall 1
    assert curves.ap(0.5) == pytest.approx([1, 1, 1]) and curves.ap() == pytest.approx([1, 1, 1])
    matrix = confusion_matrix(result.predictions, fruit)
    counts = np.bincount(np.concatenate([r.labels for r in fruit.records]), minlength=3)
    assert (matrix == np.diag([*counts, 0])).all()  # diagonal; nothing missed, no false positive
    table = class_table(result, fruit, matrix)
    assert [row["class"] for row in table] == ["apple", "banana", "orange", "all"]
    for row in table:
        assert row["AP"] == row["AP50"] == row["precision"] == row["recall"] == pytest.approx(1.0)
    assert [row["instances"] for row in table] == [*counts.tolist(), counts.sum()]


def test_pr_curve_of_a_hand_made_ranking():
    # Two boxes of one class; detections ranked TP (0.9), FP (0.8), TP (0.7): precision 1 at recall 1/2,
    # 2/3 at recall 1. COCO's envelope is 1 up to recall 0.50 and 2/3 from 0.51 to 1.
    data = one_image([[10, 10, 50, 50], [100, 100, 150, 150]], [0, 0], names=("a",))
    predictions = [det([[10, 10, 50, 50], [60, 10, 90, 40], [100, 100, 150, 150]], [0.9, 0.8, 0.7], [0, 0, 0])]
    curves = result_for(predictions, data).curves
    expected = np.where(curves.recall <= 0.5, 1.0, 2 / 3)
    assert curves.precision[0, :, 0] == pytest.approx(expected)
    assert curves.scores[0, :, 0] == pytest.approx(np.where(curves.recall <= 0.5, 0.9, 0.7), abs=1e-6)
    assert curves.ap(0.5)[0] == pytest.approx(expected.mean())


def test_a_class_without_ground_truth_has_no_curve_and_is_left_out_of_the_means():
    data = one_image([[10, 10, 50, 50]], [0])  # class "b" has no box
    predictions = [det([[10, 10, 50, 50], [100, 100, 150, 150]], [0.9, 0.8], [0, 1])]
    result = result_for(predictions, data)
    assert np.isnan(result.curves.precision[..., 1]).all() and (result.curves.precision[..., 0] == 1).all()
    table = class_table(result, data, confusion_matrix(predictions, data))
    assert np.isnan(table[1]["AP"]) and table[1]["instances"] == 0
    assert table[1]["precision"] == 0.0 and np.isnan(table[1]["recall"])  # its one detection is a false positive
    assert table[-1]["AP"] == pytest.approx(1.0)  # "all": classes with ground truth only


def test_confusion_matrix_rule_by_hand():
    a, b = 0, 1
    data = one_image([[10, 10, 50, 50], [100, 100, 140, 140], [10, 150, 40, 190]], [a, b, a],
                     crowd=[[150, 0, 200, 60]])
    predictions = [det(
        [[10, 10, 50, 50],      # 0.9 finds GT 0 (a) as b: a confusion a -> b
         [11, 11, 50, 50],      # 0.8 same box again, GT 0 taken: a false positive of a
         [100, 100, 140, 140],  # 0.1 below the score threshold: not counted, GT 1 (b) is missed
         [160, 10, 190, 40],    # 0.7 inside the crowd region: ignored
         [10, 150, 40, 185]],   # 0.6 IoU 0.875 with GT 2 (a): correct
        [0.9, 0.8, 0.1, 0.7, 0.6], [b, a, b, b, a])]
    matrix = confusion_matrix(predictions, data, conf=0.25, iou=0.5)
    expected = np.array([[1, 1, 0],   # GT a: one found as a, one as b
                         [0, 0, 1],   # GT b: missed
                         [1, 0, 0]])  # background: one false positive of a (the crowd one is ignored)
    assert (matrix == expected).all()
    halves = [{k: v[:2] if k != "image_id" else v for k, v in predictions[0].items()},
              {k: v[2:] if k != "image_id" else v for k, v in predictions[0].items()}]
    assert (confusion_matrix(halves, data) == expected).all()  # an image's detections in two entries
    # the thresholds are the rule's: with conf 0.05, GT b is found
    assert confusion_matrix(predictions, data, conf=0.05)[1, 1] == 1
    # an empty prediction list: every box missed
    assert (confusion_matrix([], data)[:, 2] == [2, 1, 0]).all()


def test_matching_is_greedy_by_score_and_takes_the_best_free_box():
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float32)  # two overlapping boxes
    boxes = np.array([[1, 0, 11, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    match, found = match_detections(boxes, np.array([0.5, 0.9, 0.7]), gt, iou=0.5)
    # The 0.9 detection goes first and takes GT 0 (equal IoU: the first); the 0.5 one takes GT 1.
    assert match.tolist() == [1, 0, -1] and found.all()
    match, found = match_detections(boxes, np.array([0.5, 0.9, 0.7]), gt, iou=0.9)
    assert match.tolist() == [-1, -1, -1] and not found.any()  # IoU 0.82 < 0.9


def test_written_files_hold_the_table_and_the_matrix(fruit, tmp_path):
    predictions = ground_truth_as_predictions(fruit)
    predictions[0] = {**predictions[0], "labels": (predictions[0]["labels"] + 1) % 3}  # one image, wrong classes
    result = result_for(predictions, fruit)
    written = write_diagnostics(result, fruit, tmp_path / "out", conf=0.3, iou=0.6)
    assert [p.name for p in written] == ["pr_curves.png", "confusion_matrix.png", "per_class.csv", "per_class.json"]
    for name in ("pr_curves.png", "confusion_matrix.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and min(image.size) >= 500
    report = json.loads((tmp_path / "out" / "per_class.json").read_text())
    matrix = np.array(report["confusion_matrix"]["counts"])
    assert report["matrix_conf"] == 0.3 and report["matrix_iou"] == 0.6
    assert report["confusion_matrix"]["labels"] == ["apple", "banana", "orange", "background"]
    assert (matrix == confusion_matrix(predictions, fruit, conf=0.3, iou=0.6)).all()
    wrong = np.bincount(fruit.records[0].labels, minlength=3)
    assert np.trace(matrix) == sum(len(r.labels) for r in fruit.records) - wrong.sum()
    assert matrix[:3, 3].sum() == 0 and matrix[3].sum() == 0  # every box found, by some class
    for k in np.flatnonzero(wrong):  # the classes of the wrongly labelled image lost recall
        assert report["classes"][k]["recall"] < 1 and report["classes"][k]["AP50"] < 1
    rows = list(csv.DictReader((tmp_path / "out" / "per_class.csv").open()))
    assert [r["class"] for r in rows] == ["apple", "banana", "orange", "all"]
    assert list(rows[0]) == ["class", "images", "instances", "AP", "AP50", "AP75", "precision", "recall"]
    for row, entry in zip(rows[:3], report["classes"]):
        assert float(row["AP50"]) == pytest.approx(entry["AP50"], abs=1e-4)
        assert float(row["AP"]) == pytest.approx(result.metrics["per_class"][row["class"]], abs=1e-4)


def test_failed_writes_name_the_file(fruit, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = result_for(ground_truth_as_predictions(fruit), fruit)
    with pytest.raises(WriteError, match="pr_curves.png"):
        write_diagnostics(result, fruit, blocker)
    with pytest.raises(ValueError, match="rank 0"):
        write_diagnostics(EvalResult(result.metrics), fruit, tmp_path)

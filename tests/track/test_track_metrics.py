"""Tracking metrics (TrackEval) on a tiny hand-made ground truth whose MOTA, IDF1 and HOTA are worked
out by hand, ignore boxes, and the missing-extra message."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fcos.data.mot import MOTBoxes, write_mot, write_mot_gt
from fcos.track import evaluate_mot
from fcos.utils.optional import MissingExtraError

pytest.importorskip("trackeval")

A, B, FAR = [0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]


def boxes(rows: list[tuple[int, int, list[int]]], marks: list[int] | None = None) -> MOTBoxes:
    n = len(rows)
    return MOTBoxes(np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                    np.array([r[2] for r in rows], np.float64).reshape(-1, 4),
                    np.array(marks if marks is not None else [1] * n, np.float64), np.ones(n, np.int64), np.ones(n))


# Two objects over 4 frames: 8 boxes. Object 1 at A, object 2 at B.
GT = boxes([(t, 1, A) for t in range(1, 5)] + [(t, 2, B) for t in range(1, 5)])
# Object 1: ID 1 on frames 1-3 (missed on frame 4). Object 2: ID 2 on frames 1-2, ID 3 on 3-4 (a switch).
# ID 4: a false positive on frames 2 and 3, far from both. 9 tracker boxes, every match exact (IoU 1).
RESULTS = boxes([(t, 1, A) for t in (1, 2, 3)] + [(1, 2, B), (2, 2, B), (3, 3, B), (4, 3, B), (2, 4, FAR), (3, 4, FAR)])


def test_hand_made_sequence_has_the_hand_computed_metrics():
    m = evaluate_mot(GT, RESULTS)
    # CLEAR: TP 7, FN 1, FP 2, IDSW 1 -> MOTA = 1 - (1 + 2 + 1) / 8 = 0.5
    assert (m.matches, m.misses, m.false_positives, m.id_switches) == (7, 1, 2, 1)
    assert m.mota == pytest.approx(0.5) and m.motp == pytest.approx(1.0)
    # Identity: GT 1 <-> ID 1 (3 boxes), GT 2 <-> ID 2 or 3 (2 boxes): IDF1 = 2 * 5 / (8 + 9)
    assert m.idf1 == pytest.approx(10 / 17)
    # HOTA at every IoU threshold (matches are exact): DetA = 7 / (7 + 1 + 2) = 0.7; AssA averages over the 7
    # matches |TPA| / (|TPA| + |FNA| + |FPA|): (1,1) 3/(4+3-3) thrice, (2,2) and (2,3) 2/(4+2-2) twice each
    assert m.deta == pytest.approx(0.7)
    assert m.assa == pytest.approx((3 * 0.75 + 4 * 0.5) / 7)
    assert m.hota == pytest.approx(np.sqrt(0.7 * (3 * 0.75 + 4 * 0.5) / 7))
    assert (m.gt_boxes, m.gt_tracks, m.tracker_boxes, m.tracker_tracks, m.frames) == (8, 2, 9, 4, 4)
    assert (m.mostly_tracked, m.mostly_lost) == (1, 0)  # matched in 3/4 (not > 0.8) and 4/4 of their frames
    assert "MOTA 0.500  IDF1 0.588  HOTA 0.652  IDSW 1" in m.summary()


def test_perfect_and_empty_results_and_files(tmp_path):
    perfect = evaluate_mot(GT, GT)
    assert (perfect.mota, perfect.idf1, perfect.hota, perfect.id_switches) == (1.0, 1.0, pytest.approx(1.0), 0)
    gt_file = write_mot_gt(tmp_path / "gt.txt", GT.frames, GT.ids, GT.boxes, GT.classes, GT.visibility, GT.conf)
    results_file = write_mot(tmp_path / "res.txt", RESULTS.frames, RESULTS.ids, RESULTS.boxes, np.ones(len(RESULTS)))
    assert evaluate_mot(gt_file, results_file).to_dict() == evaluate_mot(GT, RESULTS).to_dict()
    nothing = evaluate_mot(gt_file, write_mot(tmp_path / "none.txt", [], [], np.zeros((0, 4)), []), frames=10)
    assert (nothing.mota, nothing.idf1, nothing.hota, nothing.misses, nothing.frames) == (0.0, 0.0, 0.0, 8, 10)
    with pytest.raises(ValueError, match="frames=3, but the files have boxes up to frame 4"):
        evaluate_mot(GT, GT, frames=3)


def test_ignore_boxes_count_neither_as_misses_nor_as_false_positives():
    gt = boxes([(t, 1, A) for t in range(1, 5)] + [(1, 9, FAR), (2, 9, FAR)], marks=[1, 1, 1, 1, 0, 0])
    results = boxes([(t, 1, A) for t in range(1, 5)] + [(1, 5, FAR)])  # tracks the ignored object on frame 1
    m = evaluate_mot(gt, results)
    assert (m.mota, m.idf1, m.false_positives, m.misses, m.gt_boxes, m.tracker_boxes) == (1.0, 1.0, 0, 0, 4, 4)
    # classes keeps some ground truth only: object 2 of class 2 is left out, its track becomes false positives
    gt2 = MOTBoxes(GT.frames, GT.ids, GT.boxes, GT.conf, np.where(GT.ids == 2, 2, 1), GT.visibility)
    m = evaluate_mot(gt2, RESULTS, classes=[1])
    assert (m.gt_boxes, m.misses, m.false_positives) == (4, 1, 6)


def test_a_missing_trackeval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "trackeval", None)
    with pytest.raises(MissingExtraError, match=r"tracking metrics .* pip install 'fcos\[track\]'"):
        evaluate_mot(GT, GT)

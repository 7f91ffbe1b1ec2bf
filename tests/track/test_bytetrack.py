"""ByteTrack's association on hand-made cases: crossings, lost tracks coming back, the low-score pass,
class-awareness, confirmation and IDs, and the cost-limited assignment it rests on."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from fcos.track import Tracker, TrackerConfig, TrackHistory, build_tracker
from fcos.track.bytetrack import ByteTrack, _solver, box_iou, linear_assignment
from fcos.utils.optional import MissingExtraError


def box(cx: float, cy: float, side: float = 20.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def frame(*objects: tuple) -> dict:
    """Detections from (cx, cy, score[, label]) tuples."""
    return {"boxes": np.array([box(o[0], o[1]) for o in objects], np.float32).reshape(-1, 4),
            "scores": np.array([o[2] for o in objects], np.float32),
            "labels": np.array([o[3] if len(o) > 3 else 0 for o in objects], np.int64)}


def ids_of(tracks) -> dict[int, int]:
    """Track ID -> the index of the detection it matched."""
    return dict(zip(tracks.ids.tolist(), tracks.detections.tolist()))


def test_box_iou_and_cost_limited_assignment_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]], np.float64)  # the second box is empty
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]], np.float64)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 1.0], [0.0, 0.0]])
    # Hungarian-then-threshold would take the two 0.5 pairs (1.0 < 0.1 + 1.0); with a limit of 0.6 leaving
    # row 1 and column 1 unmatched costs 0.6, so one good match (0.1 + 0.6 = 0.7) beats two poor ones.
    rows, cols = linear_assignment(np.array([[0.1, 0.5], [0.5, 1.0]]), 0.6)
    assert rows.tolist() == [0] and cols.tolist() == [0]
    rows, cols = linear_assignment(np.array([[0.1, 0.5], [0.5, 0.2]]), 0.6)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]
    assert linear_assignment(np.zeros((0, 3)), 0.5)[0].shape == (0,)


def test_two_crossing_objects_keep_their_ids():
    """A moves right, B left, 8 px per frame, on rows 6 px apart. Around the crossing each one's box
    overlaps the other's previous box (IoU 0.54) far more than its own (0.11): matching on the last
    boxes would swap them; the Kalman filter's velocities keep the IDs."""
    tracker = Tracker()
    first = tracker.update(frame((10, 50, 0.9), (130, 56, 0.9)))
    assert first.ids.tolist() == [1, 2] and first.detections.tolist() == [0, 1]
    for t in range(1, 16):
        tracks = tracker.update(frame((10 + 8 * t, 50, 0.9), (130 - 8 * t, 56, 0.9)))
        assert ids_of(tracks) == {1: 0, 2: 1}, t  # A (detection 0) keeps ID 1, B keeps 2
    # also when they overlap fully, listed the other way round, if their classes differ
    tracker = Tracker()
    for t in range(16):
        tracks = tracker.update(frame((130 - 8 * t, 50, 0.8, 1), (10 + 8 * t, 50, 0.9, 0)))
        assert ids_of(tracks) == {1: 0, 2: 1} and tracks.labels.tolist() == [1, 0], t


def test_a_lost_track_comes_back_within_the_buffer_and_not_after():
    def run(gap: int, buffer: int) -> list[int]:
        tracker = Tracker(TrackerConfig(track_buffer=buffer), frame_rate=30.0)
        seen = []
        for t in range(10 + gap + 5):
            hidden = 10 <= t < 10 + gap
            tracks = tracker.update(frame() if hidden else frame((20 + 2 * t, 40, 0.9)))
            assert len(tracks) == (0 if hidden else 1) or (t == 10 + gap and len(tracks) == 0)
            seen += tracks.ids.tolist()
        return seen

    assert set(run(gap=10, buffer=30)) == {1}  # lost for 10 frames, found where its motion put it
    assert set(run(gap=30, buffer=30)) == {1}  # the last frame of the buffer
    after = run(gap=31, buffer=30)  # removed: the object comes back as a new track, confirmed a frame later
    assert set(after) == {1, 2} and after.count(2) == 4
    # frame_rate scales the buffer: 10 frames at 30 fps are 5 at 15 fps
    tracker = Tracker(TrackerConfig(track_buffer=10), frame_rate=15.0)
    for t in range(20):
        tracks = tracker.update(frame() if 5 <= t < 11 else frame((20, 40, 0.9)))
    assert tracks.ids.tolist() == [2]


def test_a_low_score_detection_extends_a_track_but_never_starts_one():
    tracker = Tracker()  # high 0.5, low 0.1, new tracks from 0.6
    assert tracker.update(frame((20, 20, 0.9))).ids.tolist() == [1]
    for t in range(1, 6):  # partly hidden: the detector's score drops below high_score
        tracks = tracker.update(frame((20 + t, 20, 0.3), (80, 80, 0.3), (150, 150, 0.55)))
        assert tracks.ids.tolist() == [1] and tracks.scores.tolist() == pytest.approx([0.3])
        assert tracks.detections.tolist() == [0]
    for _ in range(5):  # alone, low (0.3) or under new_track_score (0.55), they never start a track
        assert len(tracker.update(frame((80, 80, 0.3), (150, 150, 0.55)))) == 0
    # below low_score nothing counts: the track is lost (not extended), and found again later
    tracks = tracker.update(frame((26, 20, 0.05)))
    assert len(tracks) == 0
    assert tracker.update(frame((27, 20, 0.9))).ids.tolist() == [1]


def test_a_track_never_changes_class():
    tracker = Tracker()
    tracker.update(frame((20, 20, 0.9, 0)))
    tracks = tracker.update(frame((21, 20, 0.9, 2)))  # same place, another class: not this track
    assert len(tracks) == 0  # track 1 lost, the new one unconfirmed
    tracks = tracker.update(frame((22, 20, 0.9, 2)))
    assert tracks.ids.tolist() == [2] and tracks.labels.tolist() == [2]
    tracks = tracker.update(frame((23, 20, 0.9, 0), (60, 20, 0.9, 2)))  # the class-0 object is back
    assert dict(zip(tracks.ids.tolist(), tracks.labels.tolist())) == {1: 0}  # and 2 is lost for now


def test_new_tracks_are_confirmed_on_their_second_frame_and_ids_have_no_gaps():
    tracker = Tracker()
    assert tracker.update(frame((20, 20, 0.9))).ids.tolist() == [1]  # the first frame confirms at once
    assert tracker.update(frame((21, 20, 0.9), (100, 100, 0.9))).ids.tolist() == [1]  # a one-frame blip
    assert tracker.update(frame((22, 20, 0.9), (60, 60, 0.9))).ids.tolist() == [1]  # born here
    assert tracker.update(frame((23, 20, 0.9), (61, 60, 0.9))).ids.tolist() == [1, 2]  # the blip took no ID
    # boxes and scores are the detections', in ID order, with their indices
    tracks = tracker.update(frame((62, 60, 0.7), (24, 20, 0.8)))
    assert tracks.ids.tolist() == [1, 2] and tracks.detections.tolist() == [1, 0]
    np.testing.assert_allclose(tracks.boxes, [box(24, 20), box(62, 60)])
    assert tracks.scores.tolist() == pytest.approx([0.8, 0.7]) and tracks.frame == 5


def test_tracks_coast_over_a_skipped_frame_and_reset_starts_again():
    tracker, history = Tracker(), TrackHistory()
    for t in range(12):
        tracks = tracker.skip() if t in (5, 6) else tracker.update(frame((20 + 3 * t, 30, 0.9), (200 - 3 * t, 90, 0.8)))
        history.add(tracks)
    assert tracker.frame == 12 and sorted(history.tracks) == [1, 2]
    assert history.tracks[1].frames == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12]
    tracker.reset()
    assert tracker.frame == 0 and tracker.update(frame((5, 5, 0.9))).ids.tolist() == [1]


def test_inputs_tensors_empty_and_invalid():
    tracker = ByteTrack()
    tracks = tracker.update(torch.tensor([box(20, 20), [5, 5, 5, 9]]), torch.tensor([0.9, 0.9]), torch.tensor([1, 1]))
    assert tracks.ids.tolist() == [1] and tracks.detections.tolist() == [0]  # the empty box is ignored
    assert len(tracker.update([], [], [])) == 0
    with pytest.raises(ValueError, match=r"boxes \(1\), scores \(2\) and labels \(1\)"):
        tracker.update([box(1, 1)], [0.5, 0.5], [0])
    with pytest.raises(ValueError, match="missing"):
        Tracker().update({"boxes": []})
    with pytest.raises(ValueError, match="low_score <= high_score <= new_track_score"):
        TrackerConfig(high_score=0.7)
    with pytest.raises(ValueError, match=r"unknown tracker 'sort'; choose from \['bytetrack'\]"):
        build_tracker("sort")


def test_a_missing_scipy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    _solver.cache_clear()  # an earlier test imported it
    try:
        with pytest.raises(MissingExtraError, match=r"tracking .* pip install 'fcos\[track\]'"):
            Tracker()
    finally:
        _solver.cache_clear()  # a failure is not cached: the next tracker imports scipy again


def test_twenty_objects_on_a_random_walk_keep_their_identities():
    """The density of the shapes video: 20 objects, 200 frames (its per-frame cost is `python -m bench
    tracking`'s, not a timed test's)."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(40, 600, (20, 2))
    tracker = ByteTrack()
    for _ in range(200):
        centres += rng.normal(0, 2, centres.shape)
        boxes = np.concatenate([centres - 15, centres + 15], 1)
        tracks = tracker.update(boxes, rng.uniform(0.3, 1.0, 20), np.arange(20) % 3)
    assert len(tracks) >= 15 and tracker._next_id - 1 <= 22  # hardly any new IDs for 20 objects

"""Offline tracklet linking (``fcos.track.linking``) on hand-made track histories, and through
``track_source`` where a hidden object's track breaks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcos.track import LinkConfig, TrackHistory, link_tracks
from fcos.track.tracker import TrackRecord

pytest.importorskip("scipy")


def _history(*tracks: tuple[int, int, list[int], tuple[float, float], tuple[float, float]]) -> TrackHistory:
    """Tracks (id, label, frames, centre at frame 0, velocity px/frame) of 20 x 20 px boxes."""
    history = TrackHistory()
    for track_id, label, frames, start, velocity in tracks:
        record = history.tracks.setdefault(track_id, TrackRecord(track_id, label))
        for f in frames:
            cx, cy = start[0] + velocity[0] * f, start[1] + velocity[1] * f
            record.frames.append(f)
            record.boxes.append([cx - 10, cy - 10, cx + 10, cy + 10])
            record.scores.append(0.9)
    return history


def _centre_x(record: TrackRecord) -> np.ndarray:
    boxes = np.array(record.boxes)
    return (boxes[:, 0] + boxes[:, 2]) / 2


def test_a_track_broken_by_a_gap_is_joined_when_it_moves_on_and_not_beyond_the_gap():
    history = _history((1, 0, list(range(1, 21)), (0, 50), (2, 0)), (2, 0, list(range(31, 51)), (0, 50), (2, 0)))
    linked = link_tracks(history, LinkConfig(link_gap=50))
    assert list(linked.tracks) == [1]
    record = linked.tracks[1]
    assert record.frames == list(range(1, 21)) + list(range(31, 51)) and record.label == 0
    np.testing.assert_allclose(_centre_x(record), 2.0 * np.array(record.frames))
    # The gap is 31 - 20 = 11 frames: allowed from link_gap 11, not at 10.
    assert len(link_tracks(history, LinkConfig(link_gap=11))) == 1
    assert len(link_tracks(history, LinkConfig(link_gap=10))) == 2


def test_other_class_overlap_in_time_or_other_size_is_never_joined():
    other_class = _history((1, 0, list(range(1, 21)), (0, 50), (2, 0)), (2, 1, list(range(31, 51)), (0, 50), (2, 0)))
    overlapping = _history((1, 0, list(range(1, 21)), (0, 50), (2, 0)), (2, 0, list(range(20, 40)), (0, 50), (2, 0)))
    bigger = _history((1, 0, list(range(1, 21)), (0, 50), (2, 0)), (2, 0, list(range(31, 51)), (0, 50), (2, 0)))
    bigger.tracks[2].boxes = [[b[0] - 15, b[1] - 15, b[2] + 15, b[3] + 15] for b in bigger.tracks[2].boxes]  # 50 px
    for history in (other_class, overlapping, bigger):
        assert len(link_tracks(history, LinkConfig(link_gap=50))) == 2
    assert len(link_tracks(bigger, LinkConfig(link_gap=50, link_size_ratio=2.5))) == 1


def test_the_distance_is_the_mean_miss_of_both_extrapolations_in_box_sizes():
    # The second track runs 15 px beside the first's line: both extrapolations miss by 15 px, boxes are
    # 20 px: distance 0.75 box sizes.
    history = _history((1, 0, list(range(1, 21)), (0, 50), (2, 0)), (2, 0, list(range(31, 51)), (0, 65), (2, 0)))
    assert len(link_tracks(history, LinkConfig(link_gap=50, link_distance=0.8))) == 1
    assert len(link_tracks(history, LinkConfig(link_gap=50, link_distance=0.7))) == 2


def test_crossing_objects_are_joined_by_their_motion_not_by_nearest_ends():
    # A moves right, B left on one line; both tracks break while they cross. A's end (x 40) is nearer to
    # B's restart (x 48) than to its own (x 52), but A carried on at 2 px/frame lands on its own restart.
    history = _history((1, 0, list(range(1, 21)), (0, 100), (2, 0)), (2, 0, list(range(1, 21)), (100, 100), (-2, 0)),
                       (3, 0, list(range(26, 46)), (0, 100), (2, 0)), (4, 0, list(range(26, 46)), (100, 100), (-2, 0)))
    linked = link_tracks(history, LinkConfig(link_gap=50))
    assert sorted(linked.tracks) == [1, 2]
    right, left = linked.tracks[1], linked.tracks[2]
    assert (np.diff(_centre_x(right)) > 0).all() and (np.diff(_centre_x(left)) < 0).all()
    assert right.frames == left.frames == list(range(1, 21)) + list(range(26, 46))


def test_many_broken_objects_are_each_joined_to_their_own_piece():
    # 300 objects on parallel lanes 40 px apart, each broken once for 5-30 frames at its own time: every
    # piece finds its own continuation among many candidates within the gap (the matching runs per group).
    rng = np.random.default_rng(0)
    tracks, expected = [], {}
    for k in range(300):
        start = int(rng.integers(1, 200))
        cut, gap = start + int(rng.integers(10, 40)), int(rng.integers(5, 30))
        speed = float(rng.uniform(1, 3))
        lane = (0.0, 40.0 * k)
        tracks.append((2 * k + 1, 0, list(range(start, cut)), lane, (speed, 0.0)))
        tracks.append((2 * k + 2, 0, list(range(cut + gap, cut + gap + 20)), lane, (speed, 0.0)))
        expected[2 * k + 1] = list(range(start, cut)) + list(range(cut + gap, cut + gap + 20))
    linked = link_tracks(_history(*tracks), LinkConfig(link_gap=50))
    assert len(linked) == 300
    lanes = {int(round(r.boxes[0][1] + 10)) // 40: r for r in linked.tracks.values()}
    for k in range(300):
        record = lanes[k]
        assert record.frames == expected[2 * k + 1]
        assert {round(b[1] + 10) for b in record.boxes} == {40 * k}  # one lane: never another object's piece


def test_ids_are_renumbered_without_gaps_and_link_gap_0_copies():
    history = _history((1, 0, list(range(1, 21)), (0, 50), (2, 0)), (2, 0, list(range(1, 30)), (0, 150), (0, 2)),
                       (3, 0, list(range(31, 51)), (0, 50), (2, 0)), (4, 2, list(range(5, 9)), (200, 200), (0, 0)))
    linked = link_tracks(history, LinkConfig(link_gap=50))
    assert sorted(linked.tracks) == [1, 2, 3]  # 3 joined 1; 4 became 3
    assert linked.tracks[1].frames[-1] == 50 and linked.tracks[3].label == 2 and linked.tracks[3].frames == [5, 6, 7, 8]
    copied = link_tracks(history, LinkConfig(link_gap=0))
    assert {k: (r.frames, r.boxes) for k, r in copied.tracks.items()} == {
        k: (r.frames, r.boxes) for k, r in history.tracks.items()}
    with pytest.raises(ValueError, match=r"^LinkConfig.link_gap must be at least 0, got -1$"):
        LinkConfig(link_gap=-1)


def test_an_exit_and_an_entry_at_the_frame_edge_are_not_joined():
    # One object leaves through the right edge (x 300 of 310), another comes in there 5 frames later,
    # on the line the first was moving on.
    history = _history((1, 0, list(range(1, 21)), (260, 50), (2, 0)), (2, 0, list(range(26, 40)), (260, 50), (2, 0)))
    assert len(link_tracks(history, LinkConfig(link_gap=50))) == 1  # without the frame size: one object
    assert len(link_tracks(history, LinkConfig(link_gap=50), frame_size=(310, 200))) == 2
    assert len(link_tracks(history, LinkConfig(link_gap=50), frame_size=(640, 200))) == 1  # far from the edge


def test_track_source_joins_a_track_broken_by_a_long_miss(tmp_path):
    pytest.importorskip("av")
    pytest.importorskip("trackeval")
    from track_helpers import GroundTruthPredictor

    from fcos.data.mot import read_mot
    from fcos.data.shapes_video import generate_shapes_video
    from fcos.track import evaluate_mot, track_source

    seq = generate_shapes_video(tmp_path / "clip", frames=90, size=128, objects=3, crossings=0, occluders=0,
                                min_object=20, max_object=30, speed=(1.0, 1.5), seed=2, image_format="png")
    gt = read_mot(seq.gt)
    lived = np.bincount(gt.ids)
    target = int(np.argmax(lived))  # the object seen longest (all 90 frames): hidden from the detector for 35
    first = int(gt.frames[gt.ids == target].min())

    class Hiding(GroundTruthPredictor):
        def __call__(self, image, conf=None):
            (det,) = super().__call__(image, conf)
            frame = self.calls[-1]
            if first + 34 <= frame < first + 69:  # mid-life, longer than the lost-track buffer (25 at 25 fps)
                box = gt.boxes[(gt.frames == frame) & (gt.ids == target)]
                keep = ~np.all(np.abs(det["boxes"] - box) <= 1.0 + 1e-4, axis=1) if len(box) else np.ones(len(det["boxes"]), bool)
                det = {k: (np.asarray(v)[keep] if k != "names" else [n for n, m in zip(v, keep) if m]) for k, v in det.items()}
            return [det]

    plain = track_source(Hiding(seq.gt, seq.frames), seq.root, tmp_path / "plain", save_video=False, progress=False,
                         link=None)
    linked = track_source(Hiding(seq.gt, seq.frames), seq.root, tmp_path / "linked", progress=False)  # the default
    assert plain.tracks == 4 and plain.tracks_before_linking is None  # the hidden object came back as a new ID
    assert (linked.tracks, linked.tracks_before_linking) == (3, 4)
    assert evaluate_mot(seq.gt, linked.mot).idf1 > evaluate_mot(seq.gt, plain.mot).idf1
    doc = json.loads(linked.json.read_text())
    mot = read_mot(linked.mot)
    assert doc["link"] == LinkConfig().to_dict() and doc["tracks_before_linking"] == 4
    assert sorted(t["id"] for t in doc["tracks"]) == sorted(set(mot.ids.tolist())) == [1, 2, 3]
    import av

    with av.open(str(linked.video)) as container:  # drawn in a second pass, every frame
        assert container.streams.video[0].frames == 90

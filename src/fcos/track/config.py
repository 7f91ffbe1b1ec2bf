"""Tracker settings and the types trackers exchange: :class:`TrackerConfig` (every default in one place,
ByteTrack's own), :class:`Tracks` (one frame's tracked boxes) and :data:`TRACKERS` (name -> builder, the
choices of ``fcos track --tracker``).

Defaults are ByteTrack's MOT17 settings (Zhang et al. 2022, ``yolox/tracker/byte_tracker.py`` and
``tools/track.py``); each comment names the reference's argument where the name here differs. The
reference states its thresholds as costs (``1 - IoU``); here they are the smallest IoU that matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fcos.utils.flags import FRACTION, NON_NEGATIVE, Bound, SettingError, check_bounds, option

__all__ = ["TRACKERS", "TrackerConfig", "Tracks", "TrackerLike", "build_tracker"]


TRACKER = "tracker (ByteTrack's association)"


def _option(default: Any, help: str, bound: Bound | None = FRACTION) -> Any:
    """A field with its help text, a flag of ``fcos track`` (:func:`fcos.utils.flags.option`); scores and
    overlaps lie in [0, 1]."""
    return option(default, help, group=TRACKER, bound=None if isinstance(default, bool) else bound)


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's association settings. Scores are the detector's; IoUs are between a track's Kalman
    prediction and a detection of the same class (a track never changes class)."""

    # --- which detections do what (the "BYTE" split)
    high_score: float = _option(0.5, "detections scoring at least this are matched first and may start tracks "
                                     "(ByteTrack's track_thresh)")
    low_score: float = _option(0.1, "detections between this and high_score only extend existing tracks, in a "
                                    "second pass; lower ones are ignored (ByteTrack's fixed 0.1)")
    new_track_score: float = _option(0.6, "an unmatched detection starts a track only from this score "
                                          "(ByteTrack's det_thresh = track_thresh + 0.1)")
    # --- matching (Hungarian, with a cost limit as lap.lapjv's cost_limit)
    match_iou: float = _option(0.2, "first pass: the smallest IoU x score that matches a track and a high-score "
                                    "detection (ByteTrack's match_thresh 0.8 = 1 - 0.2)")
    low_match_iou: float = _option(0.5, "second pass: the smallest IoU that matches a still-tracked track and a "
                                        "low-score detection (ByteTrack's fixed 0.5 cost)")
    new_match_iou: float = _option(0.3, "the smallest IoU x score that confirms a track born on the previous "
                                        "frame (ByteTrack's fixed 0.7 cost)")
    fuse_score: bool = _option(True, "weigh IoU by the detection's score in the first pass and for new "
                                     "tracks (ByteTrack on MOT17; off for its crowded MOT20 setting)")
    # --- track life
    track_buffer: int = _option(30, "frames (at 30 fps; scaled by the video's frame rate) a lost track is kept "
                                    "so that it can come back with its ID", NON_NEGATIVE)
    duplicate_iou: float = _option(0.85, "a tracked and a lost track overlapping this much are one object: the "
                                         "younger is dropped (ByteTrack's remove_duplicate_stracks, 0.15 cost)")

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.low_score <= self.high_score <= self.new_track_score:
            raise SettingError("TrackerConfig needs low_score <= high_score <= new_track_score, got "
                               f"{self.low_score}, {self.high_score}, {self.new_track_score}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Tracks:
    """The tracks seen in one frame, K of them, by ascending ID.

    Attributes:
        frame: the frame's 1-based position (every update counts, a skipped frame too).
        ids: [K] int64 track IDs, from 1, each kept for the object's whole life.
        boxes: [K, 4] float32 xyxy: the detection each track matched in this frame.
        scores: [K] float32: that detection's score.
        labels: [K] int64: the track's class (that of the detection that started it; it never changes).
        detections: [K] int64: the index of that detection in this frame's input.
    """

    frame: int
    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    detections: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, frame: int) -> Tracks:
        return cls(frame, np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), np.zeros(0, np.int64))


class TrackerLike(Protocol):
    """What a tracking algorithm offers (:class:`fcos.track.bytetrack.ByteTrack`)."""

    frame: int

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> Tracks: ...

    def reset(self) -> None: ...


def _bytetrack(config: TrackerConfig, frame_rate: float) -> TrackerLike:
    from fcos.track.bytetrack import ByteTrack  # imported on use: the names here need no scipy

    return ByteTrack(config, frame_rate=frame_rate)


# name -> builder(config, frame_rate); `fcos track --tracker` offers these names.
TRACKERS: dict[str, Callable[[TrackerConfig, float], TrackerLike]] = {"bytetrack": _bytetrack}


def build_tracker(name: str = "bytetrack", config: TrackerConfig | None = None, frame_rate: float = 30.0) -> TrackerLike:
    """The tracker registered as ``name`` in :data:`TRACKERS`; ValueError naming the choices otherwise."""
    if name not in TRACKERS:
        raise SettingError(f"unknown tracker {name!r}; choose from {sorted(TRACKERS)}")
    if not frame_rate > 0:
        raise SettingError(f"frame_rate must be > 0, got {frame_rate}")
    return TRACKERS[name](config or TrackerConfig(), float(frame_rate))

"""Tracking in your own loop: :class:`Tracker` takes each frame's detections (a
:class:`fcos.predict.Predictor` result or your own arrays) and returns the tracked boxes with IDs;
:class:`TrackHistory` keeps each track's class, first and last frame and boxes.

    predictor = Predictor("runs/demo/best.pt")
    tracker, history = Tracker(), TrackHistory()
    for image in frames:
        (det,) = predictor(image, conf=tracker.config.low_score)  # low scores too: ByteTrack uses them
        tracks = tracker.update(det)        # tracks.ids [K], .boxes [K, 4] xyxy, .scores, .labels
        history.add(tracks)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fcos.track.config import TrackerConfig, Tracks, build_tracker

__all__ = ["TrackHistory", "TrackRecord", "Tracker"]


class Tracker:
    """Multi-object tracking by detection, one :meth:`update` per frame.

    Args:
        config: association settings (:class:`TrackerConfig`, ByteTrack's defaults).
        method: a name of :data:`fcos.track.config.TRACKERS` ("bytetrack").
        frame_rate: the video's frames per second: the lost-track buffer is ``config.track_buffer`` frames
            at 30 fps, so it keeps a lost track for the same time at any rate.
    """

    def __init__(self, config: TrackerConfig | None = None, *, method: str = "bytetrack",
                 frame_rate: float = 30.0) -> None:
        self.config = config or TrackerConfig()
        self.method = method
        self._tracker = build_tracker(method, self.config, frame_rate)

    @property
    def frame(self) -> int:
        """Frames seen so far (updates and skips)."""
        return self._tracker.frame

    def update(self, detections: Mapping[str, Any] | None) -> Tracks:
        """One frame's detections, a mapping with ``boxes`` [N, 4] xyxy, ``scores`` [N] and ``labels`` [N]
        (numpy, lists or tensors; a Predictor result is one), or None for a frame without any."""
        if detections is None:
            return self._tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
        missing = [key for key in ("boxes", "scores", "labels") if key not in detections]
        if missing:
            raise ValueError(f"detections need boxes, scores and labels; missing {missing}")
        return self._tracker.update(detections["boxes"], detections["scores"], detections["labels"])

    def skip(self) -> Tracks:
        """A frame that could not be read: time passes, tracks coast on their motion (and become lost,
        within the buffer, until a detection finds them again)."""
        return self.update(None)

    def reset(self) -> None:
        """Forget every track; IDs start from 1 again (a new video)."""
        self._tracker.reset()


@dataclass
class TrackRecord:
    """One track's life: ``frames`` [F] 1-based, ``boxes`` [F] xyxy lists, ``scores`` [F]."""

    id: int
    label: int
    frames: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        """``{id, class, label, first_frame, last_frame, frames, boxes: [[frame, x1, y1, x2, y2, score]]}``."""
        name = class_names[self.label] if 0 <= self.label < len(class_names) else str(self.label)
        return {"id": self.id, "class": name, "label": self.label, "first_frame": self.frames[0],
                "last_frame": self.frames[-1], "frames": len(self.frames),
                "boxes": [[f, *(round(v, 2) for v in b), round(s, 4)]
                          for f, b, s in zip(self.frames, self.boxes, self.scores)]}


class TrackHistory:
    """Every track seen so far, by ID (:meth:`add` each frame's :class:`Tracks`)."""

    def __init__(self) -> None:
        self.tracks: dict[int, TrackRecord] = {}

    def add(self, tracks: Tracks) -> None:
        for track_id, box, score, label in zip(tracks.ids.tolist(), tracks.boxes.tolist(), tracks.scores.tolist(),
                                               tracks.labels.tolist()):
            record = self.tracks.setdefault(track_id, TrackRecord(track_id, label))
            record.frames.append(tracks.frame)
            record.boxes.append(box)
            record.scores.append(score)

    def __len__(self) -> int:
        return len(self.tracks)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All boxes as MOT rows: frames [N], ids [N], boxes [N, 4] xyxy, scores [N]."""
        records = list(self.tracks.values())
        frames = np.array([f for r in records for f in r.frames], np.int64)
        ids = np.array([r.id for r in records for _ in r.frames], np.int64)
        boxes = np.array([b for r in records for b in r.boxes], np.float64).reshape(-1, 4)
        scores = np.array([s for r in records for s in r.scores], np.float64)
        return frames, ids, boxes, scores

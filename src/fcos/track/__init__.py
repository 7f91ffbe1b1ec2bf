"""Multi-object tracking by detection: ByteTrack over any fcos predictor, MOTChallenge outputs and metrics.

- :class:`Tracker` (``tracker.update(detections)`` per frame -> :class:`Tracks` with stable IDs) and
  :class:`TrackHistory` for your own loop; :class:`TrackerConfig` holds ByteTrack's settings;
- :func:`track_source`: ``fcos track``, a predictor and a tracker over a video, a folder of frames, a
  pattern or a MOTChallenge sequence, writing an annotated video, MOT results and a JSON of tracks;
- :func:`link_tracks` (:class:`LinkConfig`): broken tracks of one object joined after the whole video;
- :func:`evaluate_mot`: MOTA, IDF1, ID switches and HOTA (TrackEval) of MOT results against ground truth.

The MOT text format itself is :mod:`fcos.data.mot`; the synthetic sequence :mod:`fcos.data.shapes_video`.
Needs the ``track`` extra (scipy for the matching, trackeval for the metrics). docs/tracking.md has the rest.
"""

from fcos.track.config import TRACKERS, TrackerConfig, Tracks, build_tracker
from fcos.track.linking import LinkConfig, link_tracks
from fcos.track.metrics import TrackMetrics, evaluate_mot
from fcos.track.run import TrackInputError, TrackSummary, track_source
from fcos.track.tracker import Tracker, TrackHistory, TrackRecord

__all__ = [
    "TRACKERS",
    "LinkConfig",
    "TrackHistory",
    "TrackInputError",
    "TrackMetrics",
    "TrackRecord",
    "TrackSummary",
    "Tracker",
    "TrackerConfig",
    "Tracks",
    "build_tracker",
    "evaluate_mot",
    "link_tracks",
    "track_source",
]

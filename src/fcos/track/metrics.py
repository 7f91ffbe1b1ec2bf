"""Tracking metrics of MOT results against MOT ground truth, computed by TrackEval (Luiten et al.; the
MOTChallenge benchmark's own evaluation code, MIT; ``pip install 'fcos[track]'``): its HOTA, CLEAR
and Identity metrics, run on one sequence prepared here as its MOTChallenge reader prepares one.

- MOTA = 1 - (FN + FP + IDSW) / GT boxes (CLEAR MOT; a match needs IoU >= 0.5), with MOTP, the ID
  switches (IDSW), fragmentations and mostly tracked / lost trajectories;
- IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN): the share of boxes given the right identity under the best
  one-to-one mapping of ground-truth and tracker IDs over the whole sequence;
- HOTA = sqrt(DetA x AssA), averaged over IoU thresholds 0.05 .. 0.95 (Luiten et al., IJCV 2021).

Preparation, as TrackEval's MOTChallenge reader does for its distractor classes: ground-truth rows with
mark 0 are "ignore" boxes (the shapes video marks objects less than a quarter visible): a tracker box
matched to one (IoU >= 0.5, Hungarian) is removed, then the ignore boxes, so they count neither as
misses nor as false positives. Evaluation is class-agnostic, as on MOTChallenge (the results format has
no class column); ``classes`` keeps the ground truth of some classes only.

py-motmetrics (1.4.0, its latest release) has no HOTA, hence TrackEval. PyPI's ``trackeval`` names
``opencv-python`` as a dependency, used only by its segmentation metrics (J&F), never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcos.data.mot import MOTBoxes, read_mot
from fcos.track.bytetrack import box_iou, linear_assignment
from fcos.utils.optional import require

__all__ = ["TrackMetrics", "evaluate_mot"]


@dataclass(frozen=True)
class TrackMetrics:
    """One sequence's tracking metrics (module doc); ratios in [0, 1] (MOTA can be negative)."""

    mota: float
    idf1: float
    hota: float
    deta: float  # HOTA's detection accuracy
    assa: float  # HOTA's association accuracy
    motp: float  # mean IoU of CLEAR's matches
    id_switches: int
    fragmentations: int
    mostly_tracked: int  # ground-truth tracks matched in > 80% of their frames
    mostly_lost: int  # ... in < 20%
    matches: int  # CLEAR's true positives
    misses: int  # false negatives
    false_positives: int
    gt_boxes: int
    gt_tracks: int
    tracker_boxes: int
    tracker_tracks: int
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def summary(self) -> str:
        """One line: ``MOTA 0.912  IDF1 0.874  HOTA 0.801  IDSW 3  (FP 12, FN 40, GT 1627 boxes / 10 tracks)``."""
        return (f"MOTA {self.mota:.3f}  IDF1 {self.idf1:.3f}  HOTA {self.hota:.3f}  IDSW {self.id_switches}  "
                f"(FP {self.false_positives}, FN {self.misses}, GT {self.gt_boxes} boxes / {self.gt_tracks} tracks, "
                f"{self.tracker_tracks} tracker IDs)")


def evaluate_mot(gt: str | Path | MOTBoxes, results: str | Path | MOTBoxes, *, frames: int | None = None,
                 classes: Sequence[int] | None = None, iou: float = 0.5) -> TrackMetrics:
    """MOTA, IDF1, HOTA and the rest for one sequence.

    Args:
        gt: a MOT ground-truth file (or its :class:`MOTBoxes`); rows with mark 0 are ignore boxes.
        results: a MOT results file (or boxes), e.g. ``fcos track``'s ``<name>.txt``.
        frames: the sequence's length (default: the last frame either file names; frames without any
            box only matter for MOTChallenge's per-frame counts).
        classes: 1-based classes of the ground truth to evaluate (default all).
        iou: the IoU a match needs for CLEAR and Identity (MOTChallenge: 0.5); HOTA sweeps its own.
    """
    trackeval = require("trackeval", "tracking metrics (MOTA, IDF1, HOTA)")
    gt = gt if isinstance(gt, MOTBoxes) else read_mot(gt)
    results = results if isinstance(results, MOTBoxes) else read_mot(results)
    if classes is not None:
        gt = gt.select(np.isin(gt.classes, list(classes)))
    data = _sequence(gt, results, frames)
    quiet = {"THRESHOLD": iou, "PRINT_CONFIG": False}
    hota = trackeval.metrics.HOTA().eval_sequence(data)
    clear = trackeval.metrics.CLEAR(quiet).eval_sequence(data)
    identity = trackeval.metrics.Identity(quiet).eval_sequence(data)
    return TrackMetrics(
        mota=float(clear["MOTA"]), idf1=float(identity["IDF1"]), hota=float(np.mean(hota["HOTA"])),
        deta=float(np.mean(hota["DetA"])), assa=float(np.mean(hota["AssA"])), motp=float(clear["MOTP"]),
        id_switches=int(clear["IDSW"]), fragmentations=int(clear["Frag"]), mostly_tracked=int(clear["MT"]),
        mostly_lost=int(clear["ML"]), matches=int(clear["CLR_TP"]), misses=int(clear["CLR_FN"]),
        false_positives=int(clear["CLR_FP"]), gt_boxes=data["num_gt_dets"], gt_tracks=data["num_gt_ids"],
        tracker_boxes=data["num_tracker_dets"], tracker_tracks=data["num_tracker_ids"], frames=data["num_timesteps"])


def _sequence(gt: MOTBoxes, results: MOTBoxes, frames: int | None) -> dict[str, Any]:
    """TrackEval's per-sequence data: per frame the (contiguous) gt and tracker ids and their IoUs, ignore
    boxes and the tracker boxes on them removed."""
    last = max(int(gt.frames.max(initial=0)), int(results.frames.max(initial=0)))
    frames = last if frames is None else frames
    if frames < last:
        raise ValueError(f"frames={frames}, but the files have boxes up to frame {last}")
    gt_ids: list[np.ndarray] = []
    tracker_ids: list[np.ndarray] = []
    similarity: list[np.ndarray] = []
    gt_rows, result_rows = _by_frame(gt.frames, frames), _by_frame(results.frames, frames)
    for t in range(1, frames + 1):
        g, r = gt_rows[t], result_rows[t]
        iou = box_iou(gt.boxes[g], results.boxes[r])
        ignore = gt.conf[g] == 0
        if ignore.any() and len(r):
            rows, cols = linear_assignment(1.0 - np.where(iou >= 0.5, iou, 0.0), 0.5)
            drop = cols[ignore[rows]]
            r, iou = np.delete(r, drop), np.delete(iou, drop, axis=1)
        gt_ids.append(gt.ids[g][~ignore])
        tracker_ids.append(results.ids[r])
        similarity.append(iou[~ignore])
    gt_map = {v: i for i, v in enumerate(np.unique(np.concatenate([np.zeros(0, np.int64), *gt_ids])))}
    tracker_map = {v: i for i, v in enumerate(np.unique(np.concatenate([np.zeros(0, np.int64), *tracker_ids])))}
    return {
        "num_timesteps": frames,
        "num_gt_ids": len(gt_map), "num_tracker_ids": len(tracker_map),
        "num_gt_dets": int(sum(len(ids) for ids in gt_ids)), "num_tracker_dets": int(sum(len(ids) for ids in tracker_ids)),
        "gt_ids": [np.array([gt_map[v] for v in ids], np.int64) for ids in gt_ids],
        "tracker_ids": [np.array([tracker_map[v] for v in ids], np.int64) for ids in tracker_ids],
        "similarity_scores": similarity,
    }


def _by_frame(frames: np.ndarray, count: int) -> list[np.ndarray]:
    """Row indices [k] of each frame 0..count (frame 0 unused), in file order."""
    order = np.argsort(frames, kind="stable")
    bounds = np.searchsorted(frames[order], np.arange(count + 2))
    return [order[bounds[t]: bounds[t + 1]] for t in range(count + 1)]

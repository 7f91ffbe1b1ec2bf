"""ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV
2022), class-aware, written after the reference ``yolox/tracker/byte_tracker.py``.

One update per frame, with T tracks (Kalman state per track) and N detections:

1. Every tracked or lost track moves by its Kalman prediction (constant velocity on centre, aspect and
   height: DeepSORT's filter, as the reference's ``kalman_filter.py``; a lost track's height stops changing).
2. First pass: high-score detections (>= ``high_score``) are matched to tracked and lost tracks on
   IoU x score (Hungarian with a cost limit). A lost track that matches comes back with its ID.
3. Second pass: low-score detections (``low_score`` .. ``high_score``) are matched on IoU to the tracks
   still tracked but unmatched; this is what keeps a track through a partial occlusion. A low-score
   detection never starts a track. Tracks unmatched after both passes become lost.
4. Tracks born on the previous frame are confirmed by a remaining high-score detection, or removed.
5. Remaining detections scoring >= ``new_track_score`` start tracks (confirmed at once on the first frame).
6. Lost tracks unseen for more than the buffer are removed; a tracked and a lost track on the same object
   (IoU >= ``duplicate_iou``) keep the older one.

Differences from the reference, each deliberate: matching is class-aware (a detection only matches tracks
of its class, so an ID never changes class); IDs are given when a track is confirmed, so they count
1, 2, 3 without gaps (the reference numbers every birth, confirmed or not); a track reports the detection it
matched (box, score, index), not its Kalman state, so boxes are what the detector saw.

Tracks are stored as arrays (struct of arrays) and every step is vectorised: an update of 20 tracks and
20 detections takes a fraction of a millisecond (docs/tracking.md has the measurement).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from fcos.track.config import TrackerConfig, Tracks
from fcos.utils.optional import require

__all__ = ["ByteTrack", "box_iou", "linear_assignment"]

NEW, TRACKED, LOST = 0, 1, 2  # track states (the reference's unconfirmed / Tracked / Lost)
# DeepSORT's noise model: standard deviations proportional to the box height.
STD_POSITION, STD_VELOCITY = 1.0 / 20, 1.0 / 160
_F = np.eye(8) + np.eye(8, k=4)  # constant velocity: x' = x + v
_BIG = 1e6  # a forbidden pair's cost in the assignment


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy x [M, 4] xyxy -> [N, M] IoU (0 where either box is empty)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def linear_assignment(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching of rows and columns of ``cost`` [N, M] where a pair costing more than
    ``limit`` may not match and leaving a row and a column unmatched costs ``limit``: lap.lapjv's
    ``cost_limit``, which the reference calls. Plain Hungarian-then-threshold would sometimes trade one
    good match for two poor ones. Returns the matched (rows, cols), each [K] int64."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    extended = np.full((n + m, m + n), _BIG)
    extended[:n, :m] = np.where(cost <= limit, cost, _BIG)
    extended[np.arange(n), m + np.arange(n)] = limit / 2  # row i left unmatched
    extended[n + np.arange(m), np.arange(m)] = limit / 2  # column j left unmatched
    extended[n:, m:] = 0.0
    rows, cols = _solver()(extended)
    keep = (rows < n) & (cols < m)
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


@cache
def _solver() -> Any:
    """scipy's linear_sum_assignment, or MissingExtraError naming the ``track`` extra."""
    return require("scipy.optimize", "tracking (ByteTrack's matching)").linear_sum_assignment


def _xyah(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy -> [N, 4] (centre x, centre y, width / height, height)."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh[:, :1] / wh[:, 1:], wh[:, 1:]], 1)


def _xyxy(xyah: np.ndarray) -> np.ndarray:
    """[N, 4+] (centre x, centre y, aspect, height, ...) -> [N, 4] xyxy."""
    h = xyah[:, 3:4]
    wh = np.concatenate([xyah[:, 2:3] * h, h], 1)
    return np.concatenate([xyah[:, :2] - wh / 2, xyah[:, :2] + wh / 2], 1)


def _as_array(values: Any, dtype: Any, tail: tuple[int, ...] = ()) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch.Tensor, without importing torch
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(-1, *tail)


class ByteTrack:
    """Online tracking, one :meth:`update` per frame (module doc). ``frame_rate`` scales the lost-track
    buffer (``track_buffer`` frames at 30 fps), as the reference does."""

    def __init__(self, config: TrackerConfig | None = None, *, frame_rate: float = 30.0) -> None:
        self.config = config or TrackerConfig()
        self.max_lost = int(frame_rate / 30.0 * self.config.track_buffer)  # the reference's buffer_size
        _solver()  # a missing extra stops here, not mid-video
        self.reset()

    def reset(self) -> None:
        """Forget every track and start IDs from 1 again (a new video)."""
        self.frame = 0
        self._next_id = 1
        # T tracks: Kalman mean [T, 8] and covariance [T, 8, 8] over (cx, cy, a, h) and their velocities.
        self.mean, self.cov = np.zeros((0, 8)), np.zeros((0, 8, 8))
        self.label, self.id = np.zeros(0, np.int64), np.zeros(0, np.int64)  # id 0: not confirmed yet
        self.state, self.start, self.last = np.zeros(0, np.int8), np.zeros(0, np.int64), np.zeros(0, np.int64)

    def update(self, boxes: Any, scores: Any, labels: Any) -> Tracks:
        """One frame's detections (``boxes`` [N, 4] xyxy, ``scores`` [N], ``labels`` [N]; numpy, lists or
        tensors) -> the confirmed tracks they continue or start. Detections without area are ignored.
        Call it with no detections for a frame that could not be read: tracks then coast on their motion."""
        boxes, scores = _as_array(boxes, np.float64, (4,)), _as_array(scores, np.float64)
        labels = _as_array(labels, np.int64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"boxes ({len(boxes)}), scores ({len(scores)}) and labels ({len(labels)}) differ in length")
        cfg = self.config
        self.frame += 1
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores >= cfg.low_score)
        high = np.flatnonzero(valid & (scores >= cfg.high_score))
        low = np.flatnonzero(valid & (scores < cfg.high_score))
        self._predict()
        matched = np.full(len(self.id), -1, np.int64)  # each track's detection this frame

        # First pass: high-score detections, tracked and lost tracks.
        pool = np.flatnonzero(self.state != NEW)
        rows, cols = self._match(pool, boxes, scores, labels, high, cfg.match_iou, cfg.fuse_score)
        matched[pool[rows]] = high[cols]
        high_left = np.delete(high, cols)
        # Second pass: low-score detections, tracks still tracked but unmatched (not the lost ones).
        rest = pool[(matched[pool] < 0) & (self.state[pool] == TRACKED)]
        rows, cols = self._match(rest, boxes, scores, labels, low, cfg.low_match_iou, False)
        matched[rest[rows]] = low[cols]
        # Tracks born on the previous frame: confirmed by a remaining high-score detection, else removed.
        new = np.flatnonzero(self.state == NEW)
        rows, cols = self._match(new, boxes, scores, labels, high_left, cfg.new_match_iou, cfg.fuse_score)
        matched[new[rows]] = high_left[cols]
        high_left = np.delete(high_left, cols)

        hit = matched >= 0
        if hit.any():
            self._correct(np.flatnonzero(hit), _xyah(boxes[matched[hit]]))
        self.state[~hit & (self.state == TRACKED)] = LOST
        self.state[hit], self.last[hit] = TRACKED, self.frame
        keep = hit | ((self.state == LOST) & (self.frame - self.last <= self.max_lost))
        self._keep(keep)
        born = high_left[scores[high_left] >= cfg.new_track_score]
        self._birth(boxes[born], labels[born])
        matched = np.concatenate([matched[keep], born])
        matched = matched[~self._drop_duplicates()]
        confirmed = (self.state == TRACKED) & (self.id == 0)  # IDs last, so that they count without gaps
        self.id[confirmed] = np.arange(self._next_id, self._next_id + confirmed.sum())
        self._next_id += int(confirmed.sum())

        out = np.flatnonzero((matched >= 0) & (self.state == TRACKED))
        out = out[np.argsort(self.id[out], kind="stable")]
        det = matched[out]
        return Tracks(self.frame, self.id[out].copy(), boxes[det].astype(np.float32), scores[det].astype(np.float32),
                      self.label[out].copy(), det)

    def _match(self, tracks: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
               dets: np.ndarray, min_iou: float, fuse: bool) -> tuple[np.ndarray, np.ndarray]:
        """Hungarian matching of ``tracks`` [A] (indices) and ``dets`` [B] (indices) on 1 - IoU (x score
        with ``fuse``), pairs of different classes forbidden -> positions into (tracks, dets)."""
        if not len(tracks) or not len(dets):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        iou = box_iou(_xyxy(self.mean[tracks]), boxes[dets])
        iou = np.where(self.label[tracks][:, None] == labels[dets][None, :], iou, 0.0)
        similarity = iou * scores[dets][None, :] if fuse else iou
        return linear_assignment(1.0 - similarity, 1.0 - min_iou)

    def _predict(self) -> None:
        """Kalman prediction of the tracked and lost tracks (the reference's STrack.multi_predict)."""
        moving = np.flatnonzero(self.state != NEW)
        if not len(moving):
            return
        mean = self.mean[moving]
        mean[self.state[moving] != TRACKED, 7] = 0.0  # a lost track's height stops changing
        h = mean[:, 3]
        std = np.stack([STD_POSITION * h, STD_POSITION * h, np.full_like(h, 1e-2), STD_POSITION * h,
                        STD_VELOCITY * h, STD_VELOCITY * h, np.full_like(h, 1e-5), STD_VELOCITY * h], 1)
        self.mean[moving] = mean @ _F.T
        self.cov[moving] = _F @ self.cov[moving] @ _F.T + std[:, :, None] ** 2 * np.eye(8)

    def _correct(self, tracks: np.ndarray, xyah: np.ndarray) -> None:
        """Kalman update of ``tracks`` [K] with measurements ``xyah`` [K, 4] (the reference's update)."""
        mean, cov = self.mean[tracks], self.cov[tracks]
        h = mean[:, 3]
        std = np.stack([STD_POSITION * h, STD_POSITION * h, np.full_like(h, 1e-1), STD_POSITION * h], 1)
        innovation_cov = cov[:, :4, :4] + std[:, :, None] ** 2 * np.eye(4)  # [K, 4, 4]
        gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)  # [K, 8, 4]
        self.mean[tracks] = mean + (gain @ (xyah - mean[:, :4])[:, :, None])[:, :, 0]
        self.cov[tracks] = cov - gain @ cov[:, :4, :]

    def _birth(self, boxes: np.ndarray, labels: np.ndarray) -> None:
        """New tracks at ``boxes`` [K, 4]: confirmed at once on the first frame, else unconfirmed."""
        k = len(boxes)
        if not k:
            return
        xyah = _xyah(boxes)
        h = xyah[:, 3]
        std = np.stack([2 * STD_POSITION * h, 2 * STD_POSITION * h, np.full_like(h, 1e-2), 2 * STD_POSITION * h,
                        10 * STD_VELOCITY * h, 10 * STD_VELOCITY * h, np.full_like(h, 1e-5), 10 * STD_VELOCITY * h], 1)
        self.mean = np.concatenate([self.mean, np.concatenate([xyah, np.zeros((k, 4))], 1)])
        self.cov = np.concatenate([self.cov, std[:, :, None] ** 2 * np.eye(8)])
        self.label = np.concatenate([self.label, labels])
        self.id = np.concatenate([self.id, np.zeros(k, np.int64)])
        self.state = np.concatenate([self.state, np.full(k, TRACKED if self.frame == 1 else NEW, np.int8)])
        self.start = np.concatenate([self.start, np.full(k, self.frame)])
        self.last = np.concatenate([self.last, np.full(k, self.frame)])

    def _drop_duplicates(self) -> np.ndarray:
        """Remove one of each tracked/lost pair on the same object (same class, IoU >= duplicate_iou):
        the younger, by frames from birth to last match (the reference's remove_duplicate_stracks).
        Returns the mask [T] of removed tracks, T counted before the removal."""
        removed = np.zeros(len(self.id), bool)
        active, lost = np.flatnonzero(self.state != LOST), np.flatnonzero(self.state == LOST)
        if len(active) and len(lost):
            boxes = _xyxy(self.mean)
            iou = box_iou(boxes[active], boxes[lost])
            same = (self.label[active][:, None] == self.label[lost][None, :]) & (iou >= self.config.duplicate_iou)
            age = self.last - self.start
            for p, q in zip(*np.nonzero(same)):
                a, b = active[p], lost[q]
                removed[b if age[a] > age[b] else a] = True
        if removed.any():
            self._keep(~removed)
        return removed

    def _keep(self, keep: np.ndarray) -> None:
        self.mean, self.cov, self.label, self.id = self.mean[keep], self.cov[keep], self.label[keep], self.id[keep]
        self.state, self.start, self.last = self.state[keep], self.start[keep], self.last[keep]

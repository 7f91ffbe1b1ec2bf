"""Offline tracklet linking: after the whole video, join a track that ended to one that started a little
later where both are the same object moving on, so that one object keeps one ID through a longer
occlusion or a crossing that broke its track (StrongSORT's "AFLink" step does this with a learned model;
here the rule is motion alone, stated up front):

- a pair (i, j): track j starts 1 to ``link_gap`` frames after track i's last frame, both of one class,
  their boxes (mean of the last / first ``FIT_FRAMES``) within ``link_size_ratio`` in width and height;
- each end is extrapolated at constant velocity (a line fitted to its last / first ``FIT_FRAMES``
  centres) over the gap: i forward to j's first frame, j backward to i's last frame; the pair's distance
  is the mean miss of the two, in box sizes (the mean of the two boxes' (w + h) / 2);
- pairs within ``link_distance`` are matched one to one by least total distance (Hungarian, a track has
  at most one successor and one predecessor); chains of matched pairs become one track;
- given the frame size, a track that ends touching the frame's edge left the view and one that starts
  there came in: neither is joined at that end, so an object leaving is not merged with another entering
  near the same place.

Online tracking cannot do this (it needs the frames after the gap), so it is a step of ``fcos track``
(on by default; ``--link-gap 0`` turns it off) and a function on a finished
:class:`~fcos.track.tracker.TrackHistory`, not part of :class:`~fcos.track.tracker.Tracker`.
docs/tracking.md has the measurements behind the defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from fcos.track.bytetrack import linear_assignment
from fcos.track.tracker import TrackHistory, TrackRecord
from fcos.utils.flags import AT_LEAST_1, NON_NEGATIVE, POSITIVE, check_bounds, option

__all__ = ["FIT_FRAMES", "LINKING", "LinkConfig", "link_tracks"]

LINKING = "offline linking (after the whole video)"
FIT_FRAMES = 10  # frames at each end of a track that its velocity and size are taken from


@dataclass(frozen=True)
class LinkConfig:
    """When :func:`link_tracks` joins two tracks (module doc). ``link_gap`` 0 turns linking off."""

    link_gap: int = option(50, "join a track to one starting up to this many frames after it ends where both are "
                               "one object moving on (0: off)", group=LINKING, bound=NON_NEGATIVE)
    link_distance: float = option(1.0, "how far, in box sizes, each track's constant-velocity extrapolation may "
                                       "land from the other's end", group=LINKING, bound=POSITIVE)
    link_size_ratio: float = option(2.0, "the most two joined tracks' widths and heights may differ, as a ratio",
                                    group=LINKING, bound=AT_LEAST_1)

    def __post_init__(self) -> None:
        check_bounds(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def link_tracks(history: TrackHistory, config: LinkConfig, frame_size: tuple[int, int] | None = None) -> TrackHistory:
    """``history`` with chains of joined tracks merged (module doc), as a new history: each chain keeps
    its first track's class, and IDs are renumbered 1, 2, 3 ... in the order of the chains' first IDs, so
    they stay without gaps. ``frame_size`` (width, height) keeps exits and entries at the frame's edges
    apart. With ``config.link_gap`` 0 the tracks are only copied."""
    records = sorted(history.tracks.values(), key=lambda r: r.id)
    successor = _successors(records, config, frame_size) if config.link_gap > 0 and len(records) > 1 else {}
    has_predecessor = set(successor.values())
    linked = TrackHistory()
    for k in range(len(records)):
        if k in has_predecessor:
            continue  # reached from the head of its chain
        chain = [k]
        while chain[-1] in successor:
            chain.append(successor[chain[-1]])
        new = TrackRecord(len(linked) + 1, records[k].label)
        for member in chain:
            new.frames += records[member].frames
            new.boxes += records[member].boxes
            new.scores += records[member].scores
        linked.tracks[new.id] = new
    return linked


def _successors(records: list[TrackRecord], config: LinkConfig, frame_size: tuple[int, int] | None) -> dict[int, int]:
    """Positions in ``records``: {i: j} for each track i joined to a later track j. Only pairs within the
    gap are scored, and the matching runs on each connected group of candidate pairs, so memory follows
    the candidates, not tracks^2 (a long crowded video has thousands of tracks)."""
    ends = [_end(r.frames[-FIT_FRAMES:], r.boxes[-FIT_FRAMES:], -1) for r in records]
    starts = [_end(r.frames[:FIT_FRAMES], r.boxes[:FIT_FRAMES], 0) for r in records]
    c_end, v_end, wh_end = (np.stack([e[k] for e in ends]) for k in range(3))  # [T, 2] each
    c_start, v_start, wh_start = (np.stack([s[k] for s in starts]) for k in range(3))
    last = np.array([r.frames[-1] for r in records])
    first = np.array([r.frames[0] for r in records])
    label = np.array([r.label for r in records])

    # Candidate pairs (i, j): j starts 1..link_gap frames after i ends.
    order = np.argsort(first, kind="stable")
    lo = np.searchsorted(first[order], last + 1, side="left")
    hi = np.searchsorted(first[order], last + config.link_gap, side="right")
    i = np.repeat(np.arange(len(records)), hi - lo)
    j = order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])] if len(i) else np.zeros(0, np.int64)
    gap = (first[j] - last[i]).astype(np.float64)
    ratio = np.maximum(wh_end[i] / wh_start[j], wh_start[j] / wh_end[i]).max(1)
    keep = (label[i] == label[j]) & (ratio <= config.link_size_ratio)
    if frame_size is not None:
        keep &= ~_at_edge(np.array([r.boxes[-1] for r in records]), frame_size)[i]
        keep &= ~_at_edge(np.array([r.boxes[0] for r in records]), frame_size)[j]
    forward = c_end[i] + v_end[i] * gap[:, None]  # i carried to j's first frame
    backward = c_start[j] - v_start[j] * gap[:, None]  # j carried back to i's last frame
    miss = (np.linalg.norm(forward - c_start[j], axis=1) + np.linalg.norm(backward - c_end[i], axis=1)) / 2
    distance = miss / np.maximum((wh_end[i].mean(1) + wh_start[j].mean(1)) / 2, 1e-6)
    keep &= distance <= config.link_distance
    i, j, distance = i[keep], j[keep], distance[keep]
    if not len(i):
        return {}
    # One assignment per connected group of pairs (ends as nodes 0..T-1, starts as T..2T-1).
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = len(records)
    _, group = connected_components(coo_matrix((np.ones(len(i)), (i, t + j)), shape=(2 * t, 2 * t)), directed=False)
    successor: dict[int, int] = {}
    for g in np.unique(group[i]):
        pairs = group[i] == g
        rows, row_of = np.unique(i[pairs], return_inverse=True)
        cols, col_of = np.unique(j[pairs], return_inverse=True)
        cost = np.full((len(rows), len(cols)), np.inf)
        cost[row_of, col_of] = distance[pairs]
        a, b = linear_assignment(cost, config.link_distance)
        successor.update(zip(rows[a].tolist(), cols[b].tolist()))
    return successor


def _at_edge(boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """[T, 4] xyxy -> [T] bool: the box touches the frame's border (within 1% of its shorter side, 2 px
    at least)."""
    width, height = frame_size
    margin = max(2.0, 0.01 * min(width, height))
    return ((boxes[:, 0] <= margin) | (boxes[:, 1] <= margin) | (boxes[:, 2] >= width - margin)
            | (boxes[:, 3] >= height - margin))


def _end(frames: list[int], boxes: list[list[float]], outer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One end of a track, from its frames there (``outer``: the index of the end's outermost one, -1 for
    the last frames, 0 for the first): centre at that frame on a line fitted to the centres [2] (the
    detection's own for a single frame), velocity in px per frame [2] (0 for a single frame) and mean
    box size (w, h) [2]."""
    f = np.asarray(frames, np.float64)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres = (b[:, :2] + b[:, 2:]) / 2
    wh = np.maximum(b[:, 2:] - b[:, :2], 1e-6).mean(0)
    if len(f) < 2:
        return centres[0], np.zeros(2), wh
    slope, intercept = np.polyfit(f - f.mean(), centres, 1)
    return intercept + slope * (f[outer] - f.mean()), slope, wh

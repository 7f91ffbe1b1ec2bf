"""``fcos track``: a predictor and a tracker over the frames of a video, a folder of frames, a glob
pattern or a MOTChallenge sequence folder, and what it writes into the output folder:

==========================  ========================================================================
``<name>.mp4``              the frames with each track's box, "ID class" tag and trail, one colour per
                            ID (H.264, :mod:`fcos.video`); broken frames are left out
``<name>.txt``              MOTChallenge results: ``frame, id, x, y, w, h, score, -1, -1, -1``, 1-based
                            frames (:mod:`fcos.data.mot`), for TrackEval, py-motmetrics, ``fcos track --eval``
``<name>_tracks.json``      each track: id, class, first and last frame, its boxes; the run's settings,
                            skipped frames and timings
==========================  ========================================================================

``<name>``: the video's stem, the sequence's name, or the folder's name. Frames are numbered by their
position from 1: a video's in decoding order, a folder's or pattern's files in name order (MOTChallenge's
``000001.jpg`` ... are their own numbers), so ground truth lines up. A frame that cannot be decoded is
named in a warning, listed in the JSON and skipped; the tracker still counts it (:meth:`Tracker.skip`),
so tracks coast over it and keep their IDs. A video without detections gives an empty results file, a
JSON without tracks and the video undrawn. Offline linking (``link``, ``--link-gap``; on by default)
joins broken tracks of one object after the last frame (:mod:`fcos.track.linking`); the video is then
drawn in a second pass over the frames, so that it shows the IDs the files hold.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from fcos.data.images import ImageError, read_image
from fcos.data.mot import read_sequence, write_mot
from fcos.predict.predictor import Predictor
from fcos.predict.sources import list_sources
from fcos.predict.video import (
    DEFAULT_FPS,
    BrokenFrame,
    VideoError,
    VideoWriter,
    read_frames,
    require_av,
    video_info,
)
from fcos.track.config import TrackerConfig, Tracks
from fcos.track.linking import LinkConfig, link_tracks
from fcos.track.tracker import Tracker, TrackHistory
from fcos.utils.draw import class_color, draw_detections
from fcos.utils.files import write_json

__all__ = ["TrackInputError", "TrackSummary", "track_source"]


class TrackInputError(ValueError):
    """What ``track_source`` was asked to follow cannot be followed: a source with no frames, or several
    videos, or videos and frames mixed; classes the model does not have; an ``out_dir`` the outputs would
    overwrite the source in. Raised before any work, so the CLI prints it as one line."""


@dataclass(frozen=True)
class TrackSummary:
    """What :func:`track_source` did: ``frames`` counted (read or skipped: the last frame's number), of them
    ``skipped``; tracks and tracked boxes; median milliseconds per frame of detection (the predictor call)
    and of tracking (the tracker's update alone); the frame rate used; the files written (``video`` None
    without one); and the ground truth of a MOTChallenge sequence source (``gt/gt.txt``), if any."""

    name: str
    frames: int
    skipped: int
    tracks: int
    boxes: int
    detect_ms: float
    track_ms: float
    fps: float
    video: Path | None
    mot: Path
    json: Path
    gt: Path | None
    tracks_before_linking: int | None = None


@dataclass(frozen=True)
class _Source:
    name: str
    fps: float | None
    length: int | None
    frames: Iterator[tuple[int, Image.Image | str]]  # (1-based frame, image or "file: why it cannot be read")
    path: Path  # what warnings name
    gt: Path | None = None


def track_source(
    predictor: Predictor,
    source: str | Path,
    out_dir: str | Path,
    *,
    config: TrackerConfig | None = None,
    tracker: str = "bytetrack",
    conf: float | None = None,
    classes: Sequence[str] | None = None,
    fps: float | None = None,
    save_video: bool = True,
    trail: int = 30,
    line_width: int | None = None,
    show_conf: bool = False,
    progress: bool = True,
    link: LinkConfig | None = LinkConfig(),
) -> TrackSummary:
    """Track what ``source`` shows and write the files of the module doc to ``out_dir``.

    Args:
        predictor: a :class:`fcos.predict.Predictor` (checkpoint, exported model or pretrained name, any
            device) or anything called the same way with ``class_names``.
        source: a video file; a folder of frames; a glob pattern of frames; or a MOTChallenge sequence
            folder (``img1/``, ``seqinfo.ini``: its frame rate and ``gt/gt.txt`` are used).
        config: the tracker's settings; tracker: a name of :data:`fcos.track.config.TRACKERS`.
        conf: the predictor's score threshold (default ``config.low_score``: ByteTrack's second pass needs
            the low-score detections; a higher value turns it off).
        classes: names of the predictor's classes to track (default all), e.g. ``["person"]`` for a COCO
            model on MOTChallenge; detections of other classes are dropped before tracking.
        fps: frame rate where the source states none (a folder or pattern; default 25); a video's or a
            sequence's own wins. It scales the lost-track buffer and is the annotated video's.
        save_video: write ``<name>.mp4`` (needs PyAV, the ``video`` extra).
        trail: frames of centre path drawn behind each track (0: none).
        line_width, show_conf: drawing, as ``fcos predict``'s.
        link: join broken tracks of one object after the whole video (:mod:`fcos.track.linking`; its
            defaults; None or ``link_gap`` 0: no).

    Raises:
        FileNotFoundError: the source does not exist. TrackInputError (a ValueError): nothing to track, a
        folder of videos, unknown classes, or outputs that would overwrite the source.
        VideoError: a video that cannot be opened, or no frame could be decoded.
        WriteError: an output that could not be written (:mod:`fcos.writes`).
    """
    config = config or TrackerConfig()
    out_dir = Path(out_dir)
    wanted = _class_indices(classes, predictor.class_names)
    src = _open(source, out_dir)
    rate = float(src.fps or fps or DEFAULT_FPS)
    if save_video:
        require_av()  # a missing extra stops here, before any work
    outputs = {"video": out_dir / f"{src.name}.mp4", "mot": out_dir / f"{src.name}.txt",
               "json": out_dir / f"{src.name}_tracks.json"}
    for target in outputs.values():
        if target.resolve() == src.path.resolve():
            raise TrackInputError(f"out_dir {out_dir} holds the source: {target.name} would overwrite {src.path}")
    tracking = Tracker(config, method=tracker, frame_rate=rate)
    history = TrackHistory()
    conf = config.low_score if conf is None else conf
    drawing = _Drawing(predictor.class_names, trail, line_width, show_conf)
    detect_ms: list[float] = []
    track_ms: list[float] = []
    skipped: list[dict[str, Any]] = []
    size: tuple[int, int] | None = None
    linking = link is not None and link.link_gap > 0
    draw_now = save_video and not linking  # linked IDs are known only after the last frame: drawn then
    with VideoWriter(outputs["video"], rate) if draw_now else _NoVideo() as writer:
        bar = tqdm(src.frames, total=src.length, desc=src.name, unit="frame", disable=not progress, dynamic_ncols=True)
        for frame, image in bar:
            while tracking.frame < frame - 1:  # a gap in the numbering: frames that are not there
                tracking.skip()
            if isinstance(image, str):
                warnings.warn(f"skipping frame {frame}: {image}", stacklevel=2)
                skipped.append({"frame": frame, "problem": image})
                tracking.skip()
                continue
            size = size or image.size
            start = time.perf_counter()
            (det,) = predictor(image, conf=conf)
            detect_ms.append(1000 * (time.perf_counter() - start))
            if wanted is not None:
                keep = np.isin(np.asarray(det["labels"]), wanted)
                det = {key: np.asarray(det[key])[keep] for key in ("boxes", "scores", "labels")}
            start = time.perf_counter()
            tracks = tracking.update(det)
            track_ms.append(1000 * (time.perf_counter() - start))
            history.add(tracks)
            if draw_now:
                writer.write(drawing(image, tracks))
        if not detect_ms:
            raise VideoError(src.path, f"no frame could be decoded ({len(skipped)} broken)" if skipped
                             else "the video holds no frame")
    unlinked = len(history)
    if linking:
        assert link is not None
        history = link_tracks(history, link, size)
        if save_video:
            _draw_again(_open(source, out_dir), history, drawing, outputs["video"], rate, progress)
    write_mot(outputs["mot"], *history.rows())
    summary = TrackSummary(src.name, tracking.frame, len(skipped), len(history), sum(len(r.frames) for r in
                           history.tracks.values()), statistics.median(detect_ms), statistics.median(track_ms), rate,
                           outputs["video"] if save_video else None, outputs["mot"], outputs["json"], src.gt,
                           unlinked if linking else None)
    write_json(outputs["json"], {
        "source": str(source), "name": src.name, "tracker": tracker, "config": config.to_dict(), "conf": conf,
        "classes": list(classes) if classes is not None else None, "fps": rate, "width": size and size[0],
        "height": size and size[1], "frames": tracking.frame, "class_names": list(predictor.class_names),
        "video": summary.video and summary.video.name, "mot": summary.mot.name,
        "box_format": "boxes: [frame, x1, y1, x2, y2, score], pixels, frames from 1",
        "link": link.to_dict() if linking else None, "tracks_before_linking": unlinked,
        "tracks": [r.to_json(predictor.class_names) for r in history.tracks.values()], "skipped_frames": skipped,
        "timing": {"detect_ms_median": round(summary.detect_ms, 3), "track_ms_median": round(summary.track_ms, 4)}})
    return summary


def _draw_again(src: _Source, history: TrackHistory, drawing: _Drawing, path: Path, rate: float,
                progress: bool) -> None:
    """The annotated video from a finished (linked) history: the source's frames read again, each drawn
    with the tracks the history holds for it; frames that cannot be decoded were named in the first pass
    and are left out again."""
    by_frame: dict[int, list[tuple[int, int, list[float], float]]] = {}
    for record in history.tracks.values():
        for frame, box, score in zip(record.frames, record.boxes, record.scores):
            by_frame.setdefault(frame, []).append((record.id, record.label, box, score))
    with VideoWriter(path, rate) as writer:
        for frame, image in tqdm(src.frames, total=src.length, desc=f"{src.name} (drawing)", unit="frame",
                                 disable=not progress, dynamic_ncols=True):
            if isinstance(image, str):
                continue
            rows = sorted(by_frame.get(frame, []))
            tracks = Tracks(frame, np.array([r[0] for r in rows], np.int64),
                            np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
                            np.array([r[3] for r in rows], np.float32), np.array([r[1] for r in rows], np.int64),
                            np.full(len(rows), -1, np.int64))
            writer.write(drawing(image, tracks))


def _class_indices(classes: Sequence[str] | None, class_names: Sequence[str]) -> np.ndarray | None:
    """The indices of ``classes`` in ``class_names``, exact or else the one name equal ignoring case
    (``Car`` for ``car``); TrackInputError naming any unknown name and the choices."""
    if classes is None:
        return None
    names = list(class_names)

    def index(name: str) -> int:
        if name in names:
            return names.index(name)
        same = [i for i, known in enumerate(names) if known.casefold() == name.casefold()]
        return same[0] if len(same) == 1 else -1  # ambiguous (Car and car both classes): unknown

    indices = [index(c) for c in classes]
    unknown = [c for c, i in zip(classes, indices, strict=True) if i < 0]
    if unknown:
        raise TrackInputError(f"unknown classes {unknown}; the model has {names}")
    return np.array(indices, np.int64)


def _open(source: str | Path, out_dir: Path) -> _Source:
    """The frames ``source`` names (track_source's doc), checked before anything is written."""
    path = Path(source)
    sequence = read_sequence(path) if path.is_dir() else None
    if sequence is not None:
        files = [f for f in list_sources(sequence.frames) if not f.video]
        if not files:
            raise TrackInputError(f"no frames in {sequence.frames}")
        return _Source(sequence.name, sequence.fps, len(files), _images(files), sequence.frames, sequence.gt)
    files = list_sources(source, exclude=out_dir)
    images = [f for f in files if not f.video]
    videos = [f for f in files if f.video]
    if images and videos or len(videos) > 1:
        what = f"{len(videos)} video{'s' if len(videos) > 1 else ''}{' and images' if images else ''}"
        raise TrackInputError(f"{source} holds {what}: track one video, or one folder or pattern of frames, at a time")
    if videos:
        info = video_info(videos[0].path)
        return _Source(videos[0].path.stem, info["fps"], info["frames"], _video(videos[0].path), videos[0].path)
    if not images:
        raise TrackInputError(f"no frames or video in {source}")
    name = path.resolve().name if path.is_dir() else images[0].path.parent.resolve().name
    return _Source(name, None, len(images), _images(images), path)


def _video(path: Path) -> Iterator[tuple[int, Image.Image | str]]:
    for frame in read_frames(path):
        yield frame.index + 1, f"{path}: {frame.problem}" if isinstance(frame, BrokenFrame) else frame.image


def _images(files: list) -> Iterator[tuple[int, Image.Image | str]]:
    for k, item in enumerate(files, 1):
        try:
            yield k, read_image(item.path)
        except ImageError as exc:
            yield k, str(exc)  # "<file>: <problem>"


class _NoVideo:
    """VideoWriter's interface, writing nothing (``save_video=False``)."""

    def __enter__(self) -> _NoVideo:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def write(self, image: Image.Image) -> None:
        return None


class _Drawing:
    """Each frame's tracks drawn: boxes and "ID class" tags by :func:`fcos.viz.draw_detections` (one
    colour per ID: the tag colour table indexed by ID), then each visible track's recent centres."""

    def __init__(self, class_names: list[str], trail: int, line_width: int | None, show_conf: bool) -> None:
        self.class_names, self.trail, self.line_width, self.show_conf = class_names, trail, line_width, show_conf
        self.tags: list[str] = []
        self.paths: dict[int, deque[tuple[float, float]]] = {}

    def __call__(self, image: Image.Image, tracks: Tracks) -> Image.Image:
        for track_id, label in zip(tracks.ids.tolist(), tracks.labels.tolist()):
            while len(self.tags) <= track_id:
                self.tags.append("")
            if not self.tags[track_id]:
                name = self.class_names[label] if 0 <= label < len(self.class_names) else str(label)
                self.tags[track_id] = f"{track_id} {name}"
        canvas = draw_detections(image, tracks.boxes, tracks.ids, tracks.scores, self.tags, line_width=self.line_width,
                                 show_conf=self.show_conf)
        if self.trail:
            self._trails(canvas, tracks)
        return canvas

    def _trails(self, canvas: Image.Image, tracks: Tracks) -> None:
        draw = ImageDraw.Draw(canvas)
        width = max(1, (self.line_width or max(2, round(min(canvas.size) / 300))) // 2 + 1)
        for track_id, box in zip(tracks.ids.tolist(), tracks.boxes.tolist()):
            path = self.paths.setdefault(track_id, deque(maxlen=self.trail))
            path.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
            if len(path) > 1:
                draw.line(list(path), fill=class_color(track_id), width=width, joint="curve")

"""MOTChallenge text files and sequence folders (MOT16/17/20's layout, which TrackEval and
py-motmetrics read): tracker results, ground truth, and ``fcos data shapes-video``'s output.

One box per line, comma-separated (spaces around the commas allowed), frames counted from 1, boxes as
top-left corner, width and height in pixels:

============  ===================================================================================
results       ``frame, id, x, y, w, h, score, -1, -1, -1`` (the last three: world coordinates, unused)
ground truth  ``frame, id, x, y, w, h, mark, class, visibility``: mark 0 = ignore the box in
              evaluation; class 1-based; visibility in [0, 1], the share of the object that is seen
============  ===================================================================================

Both are read by :func:`read_mot` (6 to 10 columns; a missing 7th is 1, a missing class or visibility
-1). A sequence folder holds ``img1/`` (frames ``000001.jpg``, ...), ``gt/gt.txt`` and ``seqinfo.ini``
(name, frame rate, length, size). This module sits in ``fcos.data`` beside the other annotation
formats, so that the data generator and the tracker share it (the data layer may not import the tracker).
Errors are :class:`~fcos.data.errors.DatasetError` naming the file and the line.
"""

from __future__ import annotations

import configparser
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcos.data.errors import DatasetError
from fcos.utils.files import write_text

__all__ = ["MOTBoxes", "MOTSequence", "read_mot", "read_sequence", "write_mot", "write_mot_gt", "write_seqinfo"]


@dataclass(frozen=True)
class MOTBoxes:
    """The N boxes of a MOT file, in file order.

    Attributes:
        frames: [N] int64, 1-based.
        ids: [N] int64 (-1 in detection files).
        boxes: [N, 4] float64 xyxy pixels (converted from the file's x, y, w, h).
        conf: [N] float64: the score (results) or the mark (ground truth: 0 = ignore).
        classes: [N] int64: 1-based class (ground truth), -1 where the file has none.
        visibility: [N] float64 in [0, 1] (ground truth), -1 where the file has none.
    """

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    conf: np.ndarray
    classes: np.ndarray
    visibility: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, keep: np.ndarray) -> MOTBoxes:
        """The boxes where ``keep`` [N] bool (or indices) selects."""
        return MOTBoxes(self.frames[keep], self.ids[keep], self.boxes[keep], self.conf[keep], self.classes[keep],
                        self.visibility[keep])


def read_mot(path: str | Path) -> MOTBoxes:
    """Every box of a MOT results, ground-truth or detection file (module doc); an empty file has none.

    Raises:
        DatasetError: naming the file and line of a malformed row (not 6 to 10 numbers, a fractional or
            non-positive frame, a fractional id, a negative width or height, a value that is not finite) or of
            a track id given twice in one frame.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"cannot read the MOT file ({getattr(exc, 'strerror', None) or exc})") from None
    rows: list[list[float]] = []
    lines: list[int] = []
    seen: dict[tuple[int, int], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = _parse(line, path, number)
        frame, track = int(row[0]), int(row[1])
        if track >= 0:
            if (frame, track) in seen:
                raise DatasetError(path, f"frame {frame} has id {track} twice (also line {seen[frame, track]})",
                                   line=number)
            seen[frame, track] = number
        rows.append(row)
        lines.append(number)
    table = np.array(rows, np.float64).reshape(-1, 10)
    xywh = table[:, 2:6]
    return MOTBoxes(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64),
                    np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), table[:, 6],
                    table[:, 7].astype(np.int64), table[:, 8])


def _parse(line: str, path: Path, number: int) -> list[float]:
    """One row as 10 floats (missing columns filled: mark/score 1, class -1, visibility -1, -1)."""
    fields = [f.strip() for f in line.split(",")]
    if not 6 <= len(fields) <= 10:
        raise DatasetError(path, f"expected 6 to 10 comma-separated numbers, got {len(fields)}: {line.strip()!r}",
                           line=number)
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise DatasetError(path, f"not a number in {line.strip()!r}", line=number) from None
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(path, f"a value is not finite in {line.strip()!r}", line=number)
    frame, track, _, _, w, h = values[:6]
    if frame != int(frame) or frame < 1:
        raise DatasetError(path, f"the frame must be a whole number from 1, got {fields[0]}", line=number)
    if track != int(track):
        raise DatasetError(path, f"the id must be a whole number, got {fields[1]}", line=number)
    if w < 0 or h < 0:
        raise DatasetError(path, f"width and height must not be negative, got {fields[4]}, {fields[5]}", line=number)
    return values + [1.0, -1.0, -1.0, -1.0][len(values) - 6:]


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)


def _order(frames: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.lexsort((ids, frames))  # by frame, then id: the order MOT files are written in


def write_mot(path: str | Path, frames: np.ndarray, ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> Path:
    """Write tracker results (``frames`` [N] 1-based, ``ids`` [N], ``boxes`` [N, 4] xyxy, ``scores`` [N]) as a
    MOT results file, sorted by frame then id, atomically; no boxes give an empty file."""
    frames, ids = np.asarray(frames, np.int64).reshape(-1), np.asarray(ids, np.int64).reshape(-1)
    xywh, scores = _xywh(boxes), np.asarray(scores, np.float64).reshape(-1)
    lines = [f"{frames[i]},{ids[i]},{xywh[i, 0]:.2f},{xywh[i, 1]:.2f},{xywh[i, 2]:.2f},{xywh[i, 3]:.2f},"
             f"{scores[i]:.4f},-1,-1,-1\n" for i in _order(frames, ids)]
    return write_text(path, "".join(lines))


def write_mot_gt(path: str | Path, frames: np.ndarray, ids: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                 visibility: np.ndarray, marks: np.ndarray) -> Path:
    """Write ground truth (``classes`` [N] 1-based, ``visibility`` [N] in [0, 1], ``marks`` [N] 0 = ignore;
    the rest as :func:`write_mot`) as a MOT ``gt.txt``, sorted by frame then id, atomically."""
    frames, ids = np.asarray(frames, np.int64).reshape(-1), np.asarray(ids, np.int64).reshape(-1)
    xywh = _xywh(boxes)
    lines = [f"{frames[i]},{ids[i]},{xywh[i, 0]:.2f},{xywh[i, 1]:.2f},{xywh[i, 2]:.2f},{xywh[i, 3]:.2f},"
             f"{int(marks[i])},{int(classes[i])},{float(visibility[i]):.3f}\n" for i in _order(frames, ids)]
    return write_text(path, "".join(lines))


@dataclass(frozen=True)
class MOTSequence:
    """A MOTChallenge sequence folder: ``frames`` (its ``img1/``), ``gt`` (``gt/gt.txt`` or None) and what
    ``seqinfo.ini`` says (None where there is no file or no entry)."""

    root: Path
    name: str
    frames: Path
    gt: Path | None
    fps: float | None
    length: int | None
    width: int | None
    height: int | None


def read_sequence(path: str | Path) -> MOTSequence | None:
    """The sequence at ``path`` (a folder with ``img1/`` or ``seqinfo.ini``), else None.

    Raises:
        DatasetError: an unreadable ``seqinfo.ini`` or a value in it that is not a number.
    """
    root = Path(path)
    info_file = root / "seqinfo.ini"
    if not root.is_dir() or not (info_file.is_file() or (root / "img1").is_dir()):
        return None
    info: dict[str, str] = {}
    if info_file.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read_string(info_file.read_text())
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise DatasetError(info_file, f"cannot read the sequence info ({exc})") from None
        info = dict(parser["Sequence"]) if parser.has_section("Sequence") else {}

    def number(key: str, kind: type) -> float | int | None:
        if key.lower() not in info:
            return None
        try:
            return kind(info[key.lower()])
        except ValueError:
            raise DatasetError(info_file, f"{key} must be a number, got {info[key.lower()]!r}") from None

    gt = root / "gt" / "gt.txt"
    return MOTSequence(root, info.get("name", root.resolve().name), root / info.get("imdir", "img1"),
                       gt if gt.is_file() else None, number("frameRate", float), number("seqLength", int),
                       number("imWidth", int), number("imHeight", int))


def write_seqinfo(root: str | Path, *, name: str, fps: float, length: int, width: int, height: int,
                  extension: str = ".jpg") -> Path:
    """Write ``root/seqinfo.ini`` as MOTChallenge sequences have it."""
    text = (f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={length}\nimWidth={width}\n"
            f"imHeight={height}\nimExt={extension}\n")
    return write_text(Path(root) / "seqinfo.ini", text)

"""A deterministic synthetic tracking sequence ("shapes video"): the shapes dataset's objects moving over
one textured background, with ground-truth identities, in MOTChallenge layout, for tests, docs and
``make track-demo``.

What a tracker meets in it, each by construction:

- motion: straight lines and arcs at 1-3 px per frame (``speed``), every object a different pace;
- crossings: ``crossings`` pairs of objects pass through (nearly) the same point at the same frame, so
  for a few frames one partly hides the other (drawing order fixed per object);
- occlusion: ``occluders`` static textured bands (full width or height, like a post or a fence rail)
  are drawn over the objects, which pass behind them;
- entries and exits: every object enters or leaves through an edge (or is there at the first or last
  frame); once gone it does not come back, so each ground-truth ID is one unbroken appearance.

Classes, colours and sizes are those of :mod:`fcos.data.shapes` (its drawing code, its classes, the
same saturated colours on muted textures), sides from ``min_object`` to ``max_object`` px, so a model
trained on ``data/shapes`` detects them. Frame ``t`` depends only on ``(seed, t)`` and the sequence:
the same seed gives byte-identical files.

Written (``out_dir``)::

    img1/000001.jpg ...       the frames (JPEG quality 95, or PNG with image_format="png")
    gt/gt.txt                 MOT ground truth: frame, id, x, y, w, h, mark, class, visibility
    seqinfo.ini               name, frame rate, length, size (MOTChallenge's)
    <name>.mp4                with ``video_writer`` (e.g. fcos.video.VideoWriter; needs PyAV)

Ground-truth boxes are the object's full extent clipped to the frame, also where another object or an
occluder hides part of it; ``visibility`` is the share of the object's pixels seen (off-frame parts
count as hidden) and ``mark`` is 0 (ignored by evaluation: neither a miss nor, when tracked, a false
positive) where less than ``min_visibility`` is seen. The data layer does not import :mod:`fcos.video`,
hence the writer as an argument.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fcos.data.mot import write_mot_gt, write_seqinfo
from fcos.data.shapes import CLASSES, _background, _hsv, _mask
from fcos.utils.files import save_image
from fcos.utils.flags import SettingError

__all__ = ["ShapesVideo", "generate_shapes_video"]

_CROSS_ANGLES = (math.radians(60), math.radians(170))  # the second object's heading off the first's


@dataclass(frozen=True)
class ShapesVideo:
    """What :func:`generate_shapes_video` wrote: the sequence folder, its frames folder, ground truth
    and video (None without a writer), and counts."""

    root: Path
    frames: Path
    gt: Path
    video: Path | None
    length: int
    fps: float
    size: int
    objects: int
    boxes: int


@dataclass
class _Mover:
    label: int  # index into CLASSES
    mask: np.ndarray  # [h, w] bool, tight
    colour: np.ndarray  # [3] float32
    anchor: np.ndarray  # [2] centre (x, y) at frame `when`
    when: float
    heading: float  # radians at `when`
    speed: float  # px per frame
    turn: float  # radians per frame (0: a straight line)

    def centre(self, t: np.ndarray) -> np.ndarray:
        """[T] frames -> [T, 2] centres: a line, or an arc of constant turn."""
        dt = np.asarray(t, np.float64) - self.when
        if abs(self.turn) < 1e-9:
            step = self.speed * dt[:, None]
            return self.anchor + step * np.array([math.cos(self.heading), math.sin(self.heading)])
        angle = self.heading + self.turn * dt
        radius = self.speed / self.turn
        return self.anchor + radius * np.stack(
            [np.sin(angle) - math.sin(self.heading), math.cos(self.heading) - np.cos(angle)], 1)


def generate_shapes_video(
    out_dir: str | Path,
    *,
    frames: int = 300,
    size: int = 256,
    objects: int = 10,
    seed: int = 0,
    fps: float = 25.0,
    crossings: int = 3,
    occluders: int = 1,
    min_object: int = 24,
    max_object: int = 64,
    speed: tuple[float, float] = (1.0, 3.0),
    min_visibility: float = 0.25,
    image_format: str = "jpg",
    video_writer: Callable[[Path, float], Any] | None = None,
) -> ShapesVideo:
    """Write the sequence of the module doc to ``out_dir`` and return what was written.

    Args:
        frames: length; size: side of the square frames, pixels.
        objects: objects over the whole sequence (each visible for a stretch of it).
        crossings: pairs among them made to cross (at most objects // 2).
        occluders: static bands drawn over the objects.
        min_object, max_object: box sides, pixels (12 to ~200 at 256 px is what the shapes model saw).
        speed: (slowest, fastest) px per frame.
        min_visibility: ground truth seen less than this is marked 0 (ignored by evaluation).
        image_format: "jpg" or "png".
        video_writer: ``writer(path, fps)``, a context manager with ``write(image)``; the frames are
            also written as ``<name>.mp4``, name = ``out_dir``'s.
    """
    if frames < 1 or objects < 0 or occluders < 0 or not 0 <= crossings <= objects // 2:
        raise SettingError(f"need frames >= 1, objects >= 0, occluders >= 0 and 0 <= crossings <= objects // 2, got "
                           f"{frames}, {objects}, {occluders}, {crossings}")
    if not 12 <= min_object <= max_object <= size // 2:
        raise SettingError(f"need 12 <= min_object <= max_object <= size / 2, got {min_object}, {max_object}, {size}")
    if image_format not in ("jpg", "png") or not 0 < speed[0] <= speed[1]:
        raise SettingError(f"image_format must be 'jpg' or 'png' and 0 < speed[0] <= speed[1], got {image_format!r}, "
                           f"{speed}")
    root = Path(out_dir)
    rng = np.random.default_rng([seed, 1])
    background = _background(rng, size)
    movers = _movers(rng, background, frames, size, objects, crossings, min_object, max_object, speed)
    cover = _occluders(rng, size, occluders)  # [size, size] bool, and its pixels
    cover_pixels = _background(rng, size)
    noise = float(rng.uniform(0.01, 0.03))
    lives = [_life(m, frames, size) for m in movers]
    gt: list[tuple[int, int, np.ndarray, int, float, int]] = []  # frame, id, box, class, visibility, mark
    name = root.resolve().name
    video = root / f"{name}.mp4" if video_writer is not None else None
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(video_writer(video, fps)) if video is not None else None
        for t in range(1, frames + 1):
            canvas, rows = _render(background, movers, lives, t, cover, cover_pixels)
            canvas += np.random.default_rng([seed, 2, t]).standard_normal(canvas.shape, dtype=np.float32) * noise
            image = Image.fromarray((canvas.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
            params = {"quality": 95} if image_format == "jpg" else {}
            save_image(image, root / "img1" / f"{t:06d}.{image_format}", **params)
            if writer is not None:
                writer.write(image)
            gt += [(t, k + 1, box, movers[k].label + 1, seen, int(seen >= min_visibility)) for k, box, seen in rows]
    table = list(zip(*gt)) if gt else [[]] * 6
    write_mot_gt(root / "gt" / "gt.txt", np.array(table[0], np.int64), np.array(table[1], np.int64),
                 np.array(table[2], np.float64).reshape(-1, 4), np.array(table[3]), np.array(table[4]),
                 np.array(table[5]))
    write_seqinfo(root, name=name, fps=fps, length=frames, width=size, height=size, extension=f".{image_format}")
    return ShapesVideo(root, root / "img1", root / "gt" / "gt.txt", video, frames, fps, size, objects, len(gt))


def _movers(rng: np.random.Generator, background: np.ndarray, frames: int, size: int, count: int, crossings: int,
            min_object: int, max_object: int, speed: tuple[float, float]) -> list[_Mover]:
    """``count`` objects; objects 2k and 2k + 1 (k < crossings) meet near one point at one frame."""
    movers: list[_Mover] = []
    labels = rng.permutation(np.arange(count) % len(CLASSES))  # every class about as often
    for k in range(count):
        label = int(labels[k])
        side = math.exp(rng.uniform(math.log(min_object), math.log(max_object)))
        aspect = math.exp(rng.uniform(-math.log(1.6), math.log(1.6)))
        w = int(np.clip(round(side * math.sqrt(aspect)), min_object, max_object))
        h = int(np.clip(round(side / math.sqrt(aspect)), min_object, max_object))
        mask = _mask(label, h, w, rng)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        mask = mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]  # tight, as in the shapes dataset
        colour = _colour(rng, background, [m.colour for m in movers])
        pace = float(rng.uniform(*speed))
        if k % 2 == 1 and k // 2 < crossings:  # cross the previous object where it is at a frame of its life
            other = movers[k - 1]
            first, last = _life(other, frames, size)
            when = float(first + rng.uniform(0.3, 0.7) * (last - first))
            point = other.centre(np.array([when]))[0]
            heading = _heading(other, when) + float(rng.choice([-1, 1]) * rng.uniform(*_CROSS_ANGLES))
            offset = rng.uniform(-0.3, 0.3) * (w + h) / 2  # sideways, so one hides part of the other
            point = point + offset * np.array([-math.sin(heading), math.cos(heading)])
            movers.append(_Mover(label, mask, colour, point, when, heading, pace, 0.0))
            continue
        anchor = rng.uniform(0.25 * size, 0.75 * size, 2)
        turn = float(rng.choice([-1, 1]) * rng.uniform(0.002, 0.006)) if rng.uniform() < 0.5 else 0.0
        movers.append(_Mover(label, mask, colour, anchor, float(rng.uniform(0.1, 0.9) * frames),
                             float(rng.uniform(0, 2 * math.pi)), pace, turn))
    return movers


def _heading(mover: _Mover, when: float) -> float:
    return mover.heading + mover.turn * (when - mover.when)


def _colour(rng: np.random.Generator, background: np.ndarray, taken: list[np.ndarray]) -> np.ndarray:
    """A saturated colour far from the background's mean and the other objects' colours."""
    others = [background.reshape(-1, 3).mean(0), *taken]
    best, best_distance = None, -1.0
    for _ in range(12):
        colour = _hsv(rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
        distance = min(float(np.linalg.norm(colour - other)) for other in others)
        if distance > best_distance:
            best, best_distance = colour, distance
    assert best is not None
    return best


def _occluders(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """[size, size] bool: ``count`` bands 14-24 px wide across the middle of the frame."""
    cover = np.zeros((size, size), bool)
    for _ in range(count):
        start = int(rng.uniform(0.3, 0.7) * size)
        width = int(rng.integers(14, 25))
        if rng.uniform() < 0.5:
            cover[:, start: start + width] = True
        else:
            cover[start: start + width, :] = True
    return cover


def _life(mover: _Mover, frames: int, size: int) -> tuple[int, int]:
    """The frames (first, last) of the one unbroken stretch around the anchor in which the object is at
    least partly in the frame (an arc could bring it back later: it is then not drawn)."""
    t = np.arange(1, frames + 1)
    centre = mover.centre(t)
    h, w = mover.mask.shape
    inside = ((centre[:, 0] + w / 2 > 0) & (centre[:, 0] - w / 2 < size) &
              (centre[:, 1] + h / 2 > 0) & (centre[:, 1] - h / 2 < size))
    anchor = int(np.clip(round(mover.when), 1, frames)) - 1
    if not inside[anchor]:  # a crossing anchored where the other object had left: the nearest stretch
        if not inside.any():
            return 0, -1
        anchor = int(np.flatnonzero(inside)[np.argmin(np.abs(np.flatnonzero(inside) - anchor))])
    first = anchor
    while first > 0 and inside[first - 1]:
        first -= 1
    last = anchor
    while last < frames - 1 and inside[last + 1]:
        last += 1
    return first + 1, last + 1


def _render(background: np.ndarray, movers: list[_Mover], lives: list[tuple[int, int]], t: int, cover: np.ndarray,
            cover_pixels: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray, float]]]:
    """Frame ``t``: pixels [S, S, 3] float32 and (object index, box [4] xyxy clipped, visibility) of each
    object in it. Objects are drawn in index order (later ones in front), the occluders over all."""
    canvas = background.copy()
    size = canvas.shape[0]
    owner = np.full((size, size), -1, np.int32)
    placed = []
    for k, mover in enumerate(movers):
        first, last = lives[k]
        if not first <= t <= last:
            continue
        h, w = mover.mask.shape
        cx, cy = mover.centre(np.array([t]))[0]
        x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + w, size), min(y0 + h, size)
        if ax0 >= ax1 or ay0 >= ay1:
            continue
        part = mover.mask[ay0 - y0: ay1 - y0, ax0 - x0: ax1 - x0]
        canvas[ay0:ay1, ax0:ax1][part] = mover.colour
        owner[ay0:ay1, ax0:ax1][part] = k
        placed.append((k, np.array([ax0, ay0, ax1, ay1], np.float64)))
    canvas[cover] = cover_pixels[cover]
    owner[cover] = -1
    seen = np.bincount(owner[owner >= 0], minlength=len(movers))
    rows = [(k, box, float(seen[k] / movers[k].mask.sum())) for k, box in placed]
    return canvas, rows

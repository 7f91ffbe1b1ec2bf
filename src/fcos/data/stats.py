"""``fcos data stats``: what a dataset holds (boxes per class, box sizes and shapes, objects per image,
image sizes) as PNGs and ``stats.json``, and the settings it suggests.

Object size is ``sqrt(w * h)`` of a training box (COCO's size measure: small < 32 px, large > 96 px);
aspect ratio is ``w / h``. Crowd / difficult boxes are counted apart and left out of the histograms.

Suggestions (training split, the first one):

- **input size**: the smallest ``--img-size`` S (multiples of 32 from 128 to 1333, the official largest
  side) at which the median object, resized as the model resizes (:func:`fcos.ops.sizing.resized_shape`
  with min_size = max_size = S: the longer side becomes S), keeps at least 16 px. FCOS's smallest
  stride is 8 px; an object under ~2 cells of P3 has few points inside it and is the first one missed.
- **tiles**: advised when the median object is under 16 px at the input size training would use (the
  given ``img_size``, else 640) and the images are larger than that input: training on tiles of that size
  at native resolution (``fcos train --tile S``; predict with ``--slice auto``) shows every object at its
  own size instead of shrunk with the whole image (docs/small-objects.md: +0.08 AP50 on an aerial set).
  Objects under 16 px even natively gain from an upsampling ``--tile-scale``, which the note names.
- **rare classes and --repeat-threshold**: a class is rare when it is in fewer than a quarter of the
  images the median class is in (``f_c < f_median / 4``: repeat factor >= 2 with the threshold below); the
  suggested threshold is ``f_median`` (2 significant digits): classes rarer than the typical one are
  repeated by ``sqrt(f_median / f_c)`` (:func:`fcos.data.sampling.repeat_factors`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcos.data.layouts import load_splits
from fcos.data.records import DetectionData, ImageRecord
from fcos.ops.sizing import resized_shape
from fcos.utils.figures import pyplot, save_figure
from fcos.utils.files import write_text

__all__ = ["DatasetStats", "Histogram", "SplitStats", "Suggestions", "compute_stats", "dataset_stats", "object_sizes"]

SIZE_EDGES = (0.0, 8.0, 16.0, 32.0, 64.0, 96.0, 128.0, 256.0, 512.0, 1024.0, math.inf)  # px, sqrt(w * h)
ASPECT_EDGES = (0.0, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 3 / 2, 2.0, 3.0, 4.0, math.inf)  # w / h; [2/3, 3/2): squarish
MIN_OBJECT = 16.0  # px the median object should keep after resizing
DEFAULT_INPUT = 640  # px: the input size tiling is judged at when none is given
SIZES = (*range(128, 1333, 32), 1333)  # candidate --img-size values (1333: the official max_size)
TILE_STEP = 32  # px: tile sides are multiples of it
RARE_RATIO = 4.0  # rare: in fewer than 1/RARE_RATIO of the images the median class is in


@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` values in ``[edges[i], edges[i + 1])``; ``median`` of the values (None without any)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    median: float | None

    @classmethod
    def of(cls, values: np.ndarray, edges: Sequence[float]) -> Histogram:
        counts = np.histogram(values, bins=np.asarray(edges))[0] if len(values) else np.zeros(len(edges) - 1)
        return cls(tuple(edges), tuple(int(c) for c in counts), float(np.median(values)) if len(values) else None)

    def labels(self) -> list[str]:
        return [f"{_num(a)}-{_num(b)}" if math.isfinite(b) else f">= {_num(a)}"
                for a, b in zip(self.edges, self.edges[1:], strict=False)]


@dataclass(frozen=True)
class SplitStats:
    """One split's counts and distributions."""

    images: int
    empty_images: int  # without a training box
    boxes_per_class: dict[str, int]
    images_per_class: dict[str, int]  # images holding at least one box of the class
    crowd: int  # crowd / difficult boxes (not in the histograms)
    objects_per_image: dict[int, int]  # boxes in an image -> images
    object_size: Histogram  # sqrt(w * h), px, on the image as stored
    aspect_ratio: Histogram  # w / h
    image_sizes: dict[str, int]  # "WxH" -> images, most common first


@dataclass(frozen=True)
class Suggestions:
    """What the training split suggests (module docstring); None where nothing is advised."""

    img_size: int | None  # smallest --img-size keeping the median object >= MIN_OBJECT px
    input_size: int | None  # the size tiling was judged at: the given img_size, else DEFAULT_INPUT
    median_object: float | None  # px, native
    median_object_resized: float | None  # px at input_size
    tile: int | None  # advised tile side, px of the original images
    rare_classes: list[str] = field(default_factory=list)
    repeat_threshold: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class DatasetStats:
    source: str
    class_names: list[str]
    splits: dict[str, SplitStats]
    suggestions: Suggestions
    files: list[Path] = field(default_factory=list)  # written by dataset_stats

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (the last histogram edge, infinity, as null)."""
        doc = asdict(self)
        doc["files"] = [str(f) for f in self.files]
        return _json_safe(doc)

    def summary(self) -> str:
        """Multi-line text, as :meth:`fcos.data.records.LoadReport.summary`."""
        lines = [f"dataset stats: {self.source}"]
        for name, s in self.splits.items():
            per_class = ", ".join(f"{c} {n}" for c, n in s.boxes_per_class.items())
            size, aspect = s.object_size, s.aspect_ratio
            lines += [f"  {name}: {s.images} images ({s.empty_images} without objects), "
                      f"{sum(s.boxes_per_class.values())} boxes ({per_class}), {s.crowd} crowd",
                      f"    objects per image: {_spread(s.objects_per_image)}",
                      f"    object size sqrt(w*h): median {_px(size.median)}; aspect w/h: median "
                      f"{'-' if aspect.median is None else f'{aspect.median:.2f}'}",
                      f"    image sizes: {len(s.image_sizes)} distinct, most common "
                      f"{', '.join(f'{k} ({n})' for k, n in list(s.image_sizes.items())[:3])}"]
        g = self.suggestions
        lines.append(f"  suggestions ({next(iter(self.splits))} split):")
        if g.img_size is not None:
            lines.append(f"    --img-size {g.img_size} or more: the median object ({_px(g.median_object)} natively) "
                         f"keeps >= {MIN_OBJECT:g} px")
        if g.tile is not None:
            lines.append(f"    --tile {g.tile}: at --img-size {g.input_size} the median object shrinks to "
                         f"{_px(g.median_object_resized)}; {g.tile} px tiles at native resolution keep its "
                         f"{_px(g.median_object)} (train with --tile {g.tile}, predict with --slice auto)")
        elif g.input_size is not None:
            lines.append(f"    tiles: not needed (median object {_px(g.median_object_resized)} at "
                         f"--img-size {g.input_size})")
        if g.rare_classes:
            lines.append(f"    rare classes: {len(g.rare_classes)} ({', '.join(g.rare_classes)}); "
                         f"--repeat-threshold {g.repeat_threshold:g}")
        else:
            lines.append("    rare classes: none (no --repeat-threshold needed)")
        lines.extend(f"    note: {note}" for note in g.notes)
        if self.files:
            lines.append(f"  wrote {', '.join(str(f) for f in self.files)}")
        return "\n".join(lines)


def dataset_stats(
    data: str | Path,
    out: str | Path | None = None,
    *,
    splits: Sequence[str] | None = None,
    img_size: int | None = None,
) -> DatasetStats:
    """Statistics of every split of ``data`` (or ``splits``); with ``out``, written there as ``stats.json``
    and PNGs (``boxes_per_class``, ``object_sizes``, ``aspect_ratios``, ``objects_per_image``,
    ``image_sizes``). Reads annotations only (sizes from them or image headers: no pixel is decoded).

    Args:
        img_size: the ``--img-size`` training will use, to judge tiling at; default ``DEFAULT_INPUT`` (640).

    Raises:
        DatasetError: a problem in ``data`` (naming the file). WriteError: ``out`` cannot be written.
    """
    stats = compute_stats(load_splits(data, splits), img_size=img_size, source=str(data))
    if out is not None:
        out = Path(out)
        stats.files = [*_plots(stats, out), out / "stats.json"]
        write_text(out / "stats.json", json.dumps(stats.as_dict(), indent=1, allow_nan=False))
    return stats


def compute_stats(splits: Mapping[str, DetectionData], *, img_size: int | None = None, source: str = "") -> DatasetStats:
    """:class:`DatasetStats` of loaded splits (the same classes in each); suggestions from the first."""
    first = next(iter(splits.values()))
    stats = {name: _split_stats(part) for name, part in splits.items()}
    return DatasetStats(source, list(first.class_names), stats, suggest(first, img_size))


def object_sizes(records: Sequence[ImageRecord], img_size: int | None = None) -> np.ndarray:
    """[M] ``sqrt(w * h)`` of every training box, px; at ``img_size``: after the model's resize
    (longer side to ``img_size``, :func:`fcos.ops.sizing.resized_shape`)."""
    sizes = []
    for r in records:
        w, h = r.boxes[:, 2] - r.boxes[:, 0], r.boxes[:, 3] - r.boxes[:, 1]
        if img_size is not None:
            new_h, new_w = resized_shape(r.height, r.width, img_size, img_size)
            w, h = w * (new_w / r.width), h * (new_h / r.height)
        sizes.append(np.sqrt(w.astype(np.float64) * h))
    return np.concatenate(sizes) if sizes else np.zeros(0)


def suggest(data: DetectionData, img_size: int | None = None) -> Suggestions:
    """The suggestions of the module docstring, from one (training) split."""
    native = object_sizes(data.records)
    notes: list[str] = []
    if not len(native):
        return Suggestions(None, img_size, None, None, None, notes=["no boxes: no size to suggest"])
    median = float(np.median(native))
    best = next((s for s in SIZES if np.median(object_sizes(data.records, s)) >= MIN_OBJECT), None)
    if best is None:
        best = SIZES[-1]
        notes.append(f"even --img-size {best} leaves the median object under {MIN_OBJECT:g} px")
    longest = float(np.median([max(r.width, r.height) for r in data.records]))
    if best > longest:
        notes.append(f"--img-size {best} enlarges the median image ({longest:g} px on its longer side)")
    size = img_size or DEFAULT_INPUT
    resized = float(np.median(object_sizes(data.records, size)))
    tile = None
    if resized < MIN_OBJECT and size < 0.8 * longest:  # the whole image shrinks its objects: tiles keep them
        tile = max(4 * TILE_STEP, size // TILE_STEP * TILE_STEP)
        if median < MIN_OBJECT:
            scale = math.ceil(MIN_OBJECT / median * 4) / 4
            notes.append(f"the median object has {median:.1f} px even in the original images: --tile-scale "
                         f"{scale:g} would enlarge it to {MIN_OBJECT:g} px (at {scale * scale:.2g}x the pixels per image)")
    elif resized < MIN_OBJECT:
        notes.append(f"the median object has {median:.1f} px in images no larger than the input: only a larger "
                     "--img-size (upsampling) enlarges it")
    rare, threshold = rare_classes(data)
    # the median as the size line prints it (.1f): rounded twice (to 2, then 1 decimal) 64.949 read 65.0 there
    return Suggestions(best, size, round(median, 1), round(resized, 2), tile, rare, threshold, notes)


def rare_classes(data: DetectionData) -> tuple[list[str], float | None]:
    """(rare class names, suggested --repeat-threshold or None): module docstring."""
    holding = np.zeros(data.num_classes, np.int64)
    for r in data.records:
        holding[np.unique(r.labels)] += 1
    fraction = holding / max(len(data.records), 1)
    typical = float(np.median(fraction))
    rare = [name for name, f in zip(data.class_names, fraction, strict=True) if f < typical / RARE_RATIO]
    return rare, (float(f"{typical:.2g}") if rare and typical > 0 else None)


def _split_stats(data: DetectionData) -> SplitStats:
    names = data.class_names
    boxes = np.zeros(len(names), np.int64)
    holding = np.zeros(len(names), np.int64)
    aspects = []
    for r in data.records:
        boxes += np.bincount(r.labels, minlength=len(names))
        holding[np.unique(r.labels)] += 1
        aspects.append((r.boxes[:, 2] - r.boxes[:, 0]) / (r.boxes[:, 3] - r.boxes[:, 1]))
    per_image = Counter(len(r.boxes) for r in data.records)
    sizes = Counter(f"{r.width}x{r.height}" for r in data.records)
    return SplitStats(
        images=len(data.records),
        empty_images=per_image.get(0, 0),
        boxes_per_class=dict(zip(names, boxes.tolist(), strict=True)),
        images_per_class=dict(zip(names, holding.tolist(), strict=True)),
        crowd=sum(len(r.crowd) for r in data.records),
        objects_per_image=dict(sorted(per_image.items())),
        object_size=Histogram.of(object_sizes(data.records), SIZE_EDGES),
        aspect_ratio=Histogram.of(np.concatenate(aspects) if aspects else np.zeros(0), ASPECT_EDGES),
        image_sizes=dict(sizes.most_common()),
    )


def _plots(stats: DatasetStats, out: Path) -> list[Path]:
    """The PNGs, one per distribution, splits side by side."""
    splits = stats.splits
    first = next(iter(splits.values()))
    objects = sorted({k for s in splits.values() for k in s.objects_per_image})
    written = [
        _bars(out / "boxes_per_class.png", "boxes per class", "class", stats.class_names,
              {n: list(s.boxes_per_class.values()) for n, s in splits.items()}),
        _bars(out / "object_sizes.png", "object size sqrt(w*h), px of the stored images", "px",
              first.object_size.labels(), {n: list(s.object_size.counts) for n, s in splits.items()}),
        _bars(out / "aspect_ratios.png", "box aspect ratio w/h", "w / h", first.aspect_ratio.labels(),
              {n: list(s.aspect_ratio.counts) for n, s in splits.items()}),
        _bars(out / "objects_per_image.png", "objects per image", "boxes in the image", [str(k) for k in objects],
              {n: [s.objects_per_image.get(k, 0) for k in objects] for n, s in splits.items()}),
        _image_sizes(out / "image_sizes.png", splits),
    ]
    return written


def _bars(path: Path, title: str, xlabel: str, labels: list[str], series: dict[str, list[int]]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(labels) * len(series) + 2), 4), dpi=100)
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for k, (name, counts) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, counts, width, label=name)
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _image_sizes(path: Path, splits: Mapping[str, SplitStats]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    for name, s in splits.items():
        sides = np.array([[int(v) for v in k.split("x")] for k in s.image_sizes], np.float64).reshape(-1, 2)
        ax.scatter(sides[:, 0], sides[:, 1], s=10 + 4 * np.sqrt(list(s.image_sizes.values())), alpha=0.6, label=name)
    ax.set_xlabel("width, px")
    ax.set_ylabel("height, px")
    ax.set_title("image sizes (marker area ~ images)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(value: float) -> str:
    return f"{value:.2g}" if value < 1 else f"{value:g}"


def _px(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} px"


def _spread(counts: dict[int, int]) -> str:
    values = np.repeat(list(counts), list(counts.values()))
    if not len(values):
        return "-"
    return f"median {np.median(values):g}, mean {values.mean():.2f}, max {values.max()}"

"""``fcos data split``: one image set divided into train and val, stratified by class, written as a dataset.

Images are assigned whole (an image's boxes never straddle the splits). The rule (:func:`stratify`):

1. val gets ``round(fraction * N)`` images (at least 1 and at most N - 1);
2. each image is grouped under its rarest class (fewest images; ties: the lower class index), images
   without boxes form a last group. Group g of m images gets ``fraction * m`` val images, rounded by
   largest remainder so that the total is exact, within bounds: a group whose class has >= 2 images
   keeps at least one image on each side, a class with a single image keeps it in train (a class only
   seen in val cannot be learned). The bounds win over the exact total when they conflict;
3. inside a group the val images are the first of a permutation seeded by ``seed``: the same seed gives
   the same split;
4. a class with >= 2 images that still misses a side (its images were grouped under rarer classes that
   all went one way) gets one of its images swapped with an image of the other side (the count stays),
   else moved alone, where that takes no class that is on both sides off one.

Grouping by the rarest class is the usual single-label reduction of multi-label stratification (the
rarest label decides, as in Sechidis et al. 2011's iterative stratification, which starts from it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcos.data.convert import write_dataset
from fcos.data.errors import DatasetError
from fcos.data.layouts import find_splits, layout_named, layout_of, load_annotations
from fcos.data.records import DetectionData, LoadReport
from fcos.data.writing import WriteReport, check_output_folder

__all__ = ["SplitReport", "load_image_set", "split_dataset", "stratify"]


@dataclass
class SplitReport:
    """Images and per-class images on each side, the classes kept in train only, and the written dataset."""

    fraction: float
    seed: int
    images: dict[str, int]  # "train" / "val" -> images
    images_per_class: dict[str, dict[str, int]]  # "train" / "val" -> class name -> images holding it
    train_only: list[str] = field(default_factory=list)  # classes with a single image (kept in train)
    one_side: list[str] = field(default_factory=list)  # classes with >= 2 images that could not be on both
    written: WriteReport | None = None

    def summary(self) -> str:
        total = sum(self.images.values())
        lines = [f"split {total} images: train {self.images['train']}, val {self.images['val']} "
                 f"({self.images['val'] / max(total, 1):.3f} of them; asked {self.fraction:g}, seed {self.seed})"]
        for name in self.images_per_class["train"]:
            lines.append(f"  {name}: images train {self.images_per_class['train'][name]}, "
                         f"val {self.images_per_class['val'][name]}")
        if self.train_only:
            lines.append(f"  in one image only, kept in train: {', '.join(self.train_only)}")
        if self.one_side:
            lines.append(f"  could not be put in both splits: {', '.join(self.one_side)}")
        if self.written is not None:
            lines.append(self.written.summary())
        return "\n".join(lines)


def split_dataset(
    src: str | Path,
    out: str | Path,
    *,
    val: float = 0.2,
    seed: int = 0,
    split: str | None = None,
    fmt: str | None = None,
    link: bool = True,
) -> SplitReport:
    """Divide an image set into ``train`` and ``val`` (:func:`stratify`) and write them into ``out``.

    Args:
        src: a dataset (any layout; ``split`` picks which split, default its only one), a COCO ``.json``,
            a YOLO folder with ``images/`` + ``labels/`` and no split folders, or a VOC folder without
            ``ImageSets`` (every ``Annotations/*.xml``).
        out: a new or empty folder.
        val: fraction of the images for validation, in (0, 1).
        seed: which of the equally stratified divisions.
        fmt: ``coco``, ``voc`` or ``yolo``; default the source's format.
        link: hard-link the images (copy where the file system cannot); False: copy.

    Raises:
        DatasetError: ``val`` outside (0, 1), an unknown ``fmt``, an ``out`` that exists and is not empty,
            fewer than 2 images, or a problem in ``src`` (naming the file).
    """
    if not (isinstance(val, int | float) and 0.0 < val < 1.0):
        raise DatasetError(src, f"the validation fraction must lie in (0, 1), got {val!r}")
    if fmt is not None:
        layout_named(fmt, out)  # an unknown format stops here, before any work
    check_output_folder(out)
    data = load_image_set(src, split)
    if len(data.records) < 2:
        raise DatasetError(data.source, f"{len(data.records)} image(s): a split needs at least 2")
    in_val = stratify([r.labels for r in data.records], data.num_classes, val, seed)
    parts = {"train": _subset(data, ~in_val, "train"), "val": _subset(data, in_val, "val")}
    report = _report(data, parts, val, seed)
    report.written = write_dataset(parts, fmt or data.format, out, link=link)
    return report


def load_image_set(src: str | Path, split: str | None = None) -> DetectionData:
    """The images to divide: ``split`` of ``src``; without ``split``, its only split, or the whole folder
    where it has none (YOLO ``images/`` + ``labels/``, VOC ``Annotations/`` without ``ImageSets``)."""
    path = Path(src)
    if split is not None:
        return load_annotations(path, split)
    try:
        found = find_splits(path)
    except DatasetError:  # no splits: the whole folder, where its layout reads one (fcos.data.layouts)
        return layout_of(path).read(path, None, None)
    if len(found) > 1:
        raise DatasetError(path, f"has the splits {', '.join(found)}: name the one to divide (split=, --split)")
    return load_annotations(path, found[0])


def stratify(labels: list[np.ndarray], num_classes: int, fraction: float, seed: int) -> np.ndarray:
    """Which images go to val: [N] bool (the rule in the module docstring).

    Args:
        labels: per image, [M_i] int64 class indices of its boxes.
    """
    n = len(labels)
    present = [np.unique(x) for x in labels]
    counts = np.zeros(num_classes, np.int64)  # images holding each class
    for classes in present:
        counts[classes] += 1
    # group key: the image's rarest class, or num_classes for an image without boxes (last)
    rarity = counts * (num_classes + 1) + np.arange(num_classes)  # fewest images first, then lower index
    key = np.array([c[np.argmin(rarity[c])] if len(c) else num_classes for c in present], np.int64)
    groups = sorted(set(key.tolist()), key=lambda g: (counts[g] if g < num_classes else n + 1, g))
    order = np.random.default_rng(seed).permutation(n)
    members: dict[int, list[int]] = {g: [] for g in groups}
    for i in order.tolist():
        members[int(key[i])].append(i)
    want = min(max(math.floor(fraction * n + 0.5), 1), n - 1)
    quota = _quotas([len(members[g]) for g in groups],
                    [counts[g] if g < num_classes else 0 for g in groups], fraction, want)
    in_val = np.zeros(n, bool)
    for g, q in zip(groups, quota, strict=True):
        in_val[members[g][:q]] = True
    _repair(present, counts, in_val, order)
    return in_val


def _quotas(sizes: list[int], class_images: list[int], fraction: float, want: int) -> list[int]:
    """Val images per group: ``fraction * size`` by largest remainder, summing to ``want`` where the bounds
    (both sides for classes of >= 2 images, train for single-image classes) allow."""
    bounds = []
    for m, c in zip(sizes, class_images, strict=True):
        if c == 1:  # the class's only image: train
            bounds.append((0, 0))
        elif c >= 2 and m >= 2:  # the group can show the class on both sides
            bounds.append((1, m - 1))
        else:  # images without boxes, or a class whose other images sit in rarer groups
            bounds.append((0, m))
    low, high = [lo for lo, _ in bounds], [hi for _, hi in bounds]
    ideal = [fraction * m for m in sizes]
    quota = [min(max(math.floor(x), lo), hi) for x, lo, hi in zip(ideal, low, high, strict=True)]
    groups = range(len(sizes))
    while sum(quota) < want:
        room = [g for g in groups if quota[g] < high[g]]
        if not room:
            break
        g = max(room, key=lambda g: (ideal[g] - quota[g], -g))  # largest remainder; rarer first on ties
        quota[g] += 1
    while sum(quota) > want:
        room = [g for g in groups if quota[g] > low[g]]
        if not room:
            break
        g = min(room, key=lambda g: (ideal[g] - quota[g], -g))  # smallest remainder; commoner first on ties
        quota[g] -= 1
    return quota


def _repair(present: list[np.ndarray], counts: np.ndarray, in_val: np.ndarray, order: np.ndarray) -> None:
    """For each class with >= 2 images all on one side (rarest first), in place: swap one of its images with
    an image of the other side, or else move it alone, such that no class on both sides loses one."""
    on_side = np.zeros((2, len(counts)), np.int64)  # [train / val, C] images holding each class
    for classes, side in zip(present, in_val.tolist(), strict=True):
        on_side[int(side), classes] += 1

    def moved(images: list[int]) -> np.ndarray | None:  # on_side after moving `images`, or None if harmful
        after = on_side.copy()
        for i in images:
            side = int(in_val[i])
            after[side, present[i]] -= 1
            after[1 - side, present[i]] += 1
        touched = np.unique(np.concatenate([present[i] for i in images]))
        both = on_side[:, touched].min(0) > 0
        return after if (after[:, touched[both]] > 0).all() else None

    for c in np.argsort(counts * (len(counts) + 1) + np.arange(len(counts)), kind="stable").tolist():
        if counts[c] < 2 or on_side[:, c].min() > 0:
            continue
        side = bool(on_side[1, c])  # where all of class c's images are
        holders = [i for i in order.tolist() if c in present[i]]
        others = [j for j in order.tolist() if bool(in_val[j]) != side]
        plans = itertools.chain(([i, j] for i in holders for j in others), ([i] for i in holders))  # swaps first
        for plan in plans:
            after = moved(plan)
            if after is not None:
                on_side[:] = after
                in_val[plan] = ~in_val[plan]
                break


def _subset(data: DetectionData, keep: np.ndarray, split: str) -> DetectionData:
    records = [r for r, k in zip(data.records, keep.tolist(), strict=True) if k]
    report = LoadReport(title=f"{data.format} {data.source} ({split} of the split)")
    report.tally(records, data.class_names)
    return dataclasses.replace(data, records=records, report=report)


def _report(data: DetectionData, parts: dict[str, DetectionData], fraction: float, seed: int) -> SplitReport:
    per_class: dict[str, dict[str, int]] = {}
    for side, part in parts.items():
        images = np.zeros(data.num_classes, np.int64)
        for record in part.records:
            images[np.unique(record.labels)] += 1
        per_class[side] = dict(zip(data.class_names, images.tolist(), strict=True))
    total = {name: per_class["train"][name] + per_class["val"][name] for name in data.class_names}
    return SplitReport(
        fraction, seed, {side: len(part.records) for side, part in parts.items()}, per_class,
        train_only=[name for name in data.class_names if total[name] == 1],
        one_side=[name for name in data.class_names if total[name] >= 2
                  and min(per_class["train"][name], per_class["val"][name]) == 0])


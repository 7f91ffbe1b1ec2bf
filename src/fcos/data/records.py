"""In-memory form of a detection dataset, independent of the file format it came from.

Conventions (shared by every reader):
- boxes are ``xyxy`` float32 in pixels of the image as stored on disk (no EXIF rotation, no "+1");
- labels are contiguous class indices ``0 .. C-1`` into ``DetectionData.class_names``;
- ``category_ids[i]`` is the dataset's own id for class index ``i`` (COCO ids; ``i + 1`` for VOC/YOLO);
- ``crowd`` boxes (COCO ``iscrowd=1``, VOC ``difficult=1``) are not training targets; they are kept so that
  evaluation can ignore detections on them instead of counting them as false positives.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcos.data.errors import DatasetError

__all__ = ["DetectionData", "ImageRecord", "LoadReport", "left_out_missing", "remap_classes", "to_coco"]

SHOWN_SKIPPED = 20  # skipped images named one per line in the summary; the rest are counted


def _boxes(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32).reshape(-1, 4)


def _labels(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.int64).reshape(-1)


@dataclass
class ImageRecord:
    """One image and its annotations.

    Attributes:
        path: image file.
        image_id: unique within the dataset (the COCO id, or 1..N in reading order for VOC/YOLO).
        width, height: declared size in pixels (checked against the real file when the image is opened).
        boxes: [N, 4] float32 xyxy pixels, training targets.
        labels: [N] int64 class indices 0..C-1.
        crowd: [K, 4] float32 xyxy pixels, ignored regions (COCO iscrowd=1, VOC difficult=1).
        crowd_labels: [K] int64 class index of each crowd box (COCO evaluation ignores per class).
    """

    path: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    crowd_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes, self.labels = _boxes(self.boxes), _labels(self.labels)
        self.crowd, self.crowd_labels = _boxes(self.crowd), _labels(self.crowd_labels)
        if len(self.boxes) != len(self.labels) or len(self.crowd) != len(self.crowd_labels):
            raise ValueError(
                f"{self.path}: {len(self.boxes)} boxes / {len(self.labels)} labels, "
                f"{len(self.crowd)} crowd boxes / {len(self.crowd_labels)} crowd labels"
            )


@dataclass
class LoadReport:
    """What a reader kept, changed and threw away. Counters map a reason (in words) to a count."""

    title: str = ""
    images: int = 0
    boxes_per_class: dict[str, int] = field(default_factory=dict)
    empty_images: int = 0  # images without any training box (kept: they are negatives)
    ignored: Counter[str] = field(
        default_factory=Counter
    )  # boxes kept for evaluation only (crowd, difficult)
    clipped: Counter[str] = field(default_factory=Counter)  # boxes changed to fit the image
    dropped: Counter[str] = field(default_factory=Counter)  # boxes removed
    notes: Counter[str] = field(default_factory=Counter)  # anything else worth knowing (missing label files)
    skipped_images: list[str] = field(default_factory=list)  # "path: problem" of images left out (--skip-bad-images)

    @property
    def boxes(self) -> int:
        return sum(self.boxes_per_class.values())

    def tally(self, records: list[ImageRecord], class_names: list[str]) -> None:
        """Fill the image and per-class box counts from the final records."""
        counts = np.zeros(len(class_names), np.int64)
        for record in records:
            counts += np.bincount(record.labels, minlength=len(class_names))
        self.images = len(records)
        self.boxes_per_class = {name: int(n) for name, n in zip(class_names, counts, strict=True)}
        self.empty_images = sum(1 for record in records if len(record.boxes) == 0)

    def summary(self) -> str:
        """Multi-line human-readable text, e.g. for ``fcos data check``."""
        per_class = ", ".join(f"{name} {n}" for name, n in self.boxes_per_class.items())
        lines = [
            self.title or "dataset",
            f"  images: {self.images} ({self.empty_images} without objects)",
            f"  boxes: {self.boxes} in {len(self.boxes_per_class)} classes ({per_class})",
        ]
        for label, counter in (
            ("ignored (evaluation only)", self.ignored),
            ("clipped to the image", self.clipped),
            ("dropped", self.dropped),
            ("notes", self.notes),
        ):
            if counter:
                lines.append(f"  {label}: {sum(counter.values())}")
                lines.extend(f"    {reason}: {n}" for reason, n in sorted(counter.items()))
            elif label != "notes":
                lines.append(f"  {label}: 0")
        if self.skipped_images:
            lines.append(f"  unreadable images skipped (--skip-bad-images): {len(self.skipped_images)}")
            lines.extend(f"    {problem}" for problem in self.skipped_images[:SHOWN_SKIPPED])
            if len(self.skipped_images) > SHOWN_SKIPPED:
                lines.append(f"    ... and {len(self.skipped_images) - SHOWN_SKIPPED} more")
        return "\n".join(lines)


@dataclass
class DetectionData:
    """A loaded split: records plus class naming, the load report and where it came from."""

    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int]  # dataset id per class index (COCO ids; 1..C for VOC/YOLO)
    report: LoadReport
    source: Path  # annotation file, split file or data.yaml
    format: str  # "coco" | "voc" | "yolo"

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.records)


def to_coco(data: DetectionData) -> dict[str, Any]:
    """COCO ground-truth dict (images, annotations, categories) for pycocotools, from any format.

    Training boxes become ``iscrowd=0`` annotations, crowd/difficult boxes ``iscrowd=1`` (pycocotools then
    ignores detections matched to them). Category ids are ``data.category_ids``; annotation ids are 1..M;
    ``file_name`` is relative to the images' common folder; ``area`` is the box area.
    """
    parents = [str(r.path.parent) for r in data.records]
    root = os.path.commonpath(parents) if parents else ""
    images, annotations = [], []
    for record in data.records:
        images.append(
            {
                "id": int(record.image_id),
                "file_name": os.path.relpath(record.path, root) if root else record.path.name,
                "width": int(record.width),
                "height": int(record.height),
            }
        )
        for boxes, labels, crowd in (
            (record.boxes, record.labels, 0),
            (record.crowd, record.crowd_labels, 1),
        ):
            for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
                x1, y1, x2, y2 = box
                w, h = x2 - x1, y2 - y1
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": int(record.image_id),
                        "category_id": int(data.category_ids[label]),
                        "bbox": [x1, y1, w, h],
                        "area": w * h,
                        "iscrowd": crowd,
                    }
                )
    categories = [{"id": int(i), "name": n} for i, n in zip(data.category_ids, data.class_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def left_out_missing(records: list[ImageRecord], report: LoadReport, source: Path) -> list[ImageRecord]:
    """``records`` less those whose image file is not there, each named in ``report.skipped_images``
    (a reader's ``skip_missing``); a DatasetError naming ``source`` when none is left."""
    there = [r.path.is_file() for r in records]
    kept = [r for r, found in zip(records, there, strict=True) if found]
    report.skipped_images.extend(f"{r.path}: image file not found" for r, found in zip(records, there, strict=True)
                                 if not found)
    if records and not kept:
        raise DatasetError(source, f"none of the {len(records)} images it names is there ({records[0].path}, ...)")
    return kept


def remap_classes(data: DetectionData, class_names: list[str]) -> DetectionData:
    """Re-index ``data`` to the class order ``class_names`` (e.g. the training split's), matching by name.

    Every class of ``data`` must appear in ``class_names``; extra names are fine (they get no boxes).
    COCO keeps its category ids for known names; other formats use 1..C.
    """
    names = list(class_names)
    if names == data.class_names:
        return data
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise DatasetError(data.source, f"the given class_names {names} contain duplicates")
    missing = [name for name in data.class_names if name not in index]
    if missing:
        raise DatasetError(data.source, f"classes {missing} are not in the given class_names {names}")
    lut = np.array([index[name] for name in data.class_names], np.int64).reshape(-1)
    records = [
        ImageRecord(
            r.path, r.image_id, r.width, r.height, r.boxes, lut[r.labels], r.crowd, lut[r.crowd_labels]
        )
        for r in data.records
    ]
    if data.format == "coco":
        known = dict(zip(data.class_names, data.category_ids, strict=True))
        free = iter(range(max(data.category_ids, default=0) + 1, 1 << 31))
        category_ids = [known[name] if name in known else next(free) for name in names]
    else:
        category_ids = list(range(1, len(names) + 1))
    report = dataclasses.replace(data.report)  # a copy: the input keeps its own counts
    report.tally(records, names)
    return DetectionData(records, names, category_ids, report, data.source, data.format)

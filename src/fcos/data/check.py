"""``fcos data check``: load a split exactly as training would and decode every image; and the scan that
``--skip-bad-images`` runs before training."""

from __future__ import annotations

import dataclasses
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from fcos.data.dataset import decode_image
from fcos.data.errors import DatasetError
from fcos.data.layouts import find_splits, load_annotations
from fcos.data.records import DetectionData, ImageRecord

__all__ = ["check_dataset", "check_splits", "scan_images"]


def _problem(record: ImageRecord) -> DatasetError | None:
    try:
        decode_image(record.path, record.width, record.height).close()
    except DatasetError as e:
        return e
    return None


def scan_images(
    data: DetectionData, *, skip_bad_images: bool = False, progress: bool = True, workers: int | None = None
) -> DetectionData:
    """Open and fully decode every image of ``data``, checking its declared size.

    Without ``skip_bad_images`` the first unusable image (in record order) raises its DatasetError.
    With it, unusable images are left out and named in ``report.skipped_images`` (the load summary counts
    them); a DatasetError only if no image is left. Decoding runs in ``workers`` threads (Pillow decodes
    without the GIL; default: up to 8, one per CPU).
    """
    pool = ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1), thread_name_prefix="fcos-check")
    kept: list[ImageRecord] = []
    skipped: list[str] = []
    problems = tqdm(pool.map(_problem, data.records), total=len(data.records), desc="checking images",
                    unit="img", disable=not progress, file=sys.stderr)
    try:
        for record, problem in zip(data.records, problems, strict=True):
            if problem is None:
                kept.append(record)
            elif skip_bad_images:
                skipped.append(str(problem))
            else:
                raise problem
    finally:
        problems.close()  # an error message then starts on its own line
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, the images not yet started are not decoded
    if not skipped:
        return data
    if not kept:
        raise DatasetError(data.source, f"none of the {len(data.records)} images could be read: {skipped[0]}, ...")
    report = dataclasses.replace(data.report, skipped_images=data.report.skipped_images + skipped)
    report.tally(kept, data.class_names)
    return dataclasses.replace(data, records=kept, report=report)


def check_dataset(
    data: str | Path,
    split: str = "train",
    class_names: list[str] | None = None,
    *,
    skip_bad_images: bool = False,
    progress: bool = True,
    out: TextIO | None = None,
) -> DetectionData:
    """Read the annotations, then open and fully decode every image, checking its declared size.

    Prints the load report's summary to ``out`` (default stdout) and returns the data (without the
    skipped images, when ``skip_bad_images``).

    Raises:
        DatasetError: the first problem found, naming the file.
    """
    annotations = load_annotations(data, split, class_names, skip_missing=skip_bad_images)
    loaded = scan_images(annotations, skip_bad_images=skip_bad_images, progress=progress)
    out = out or sys.stdout
    print(loaded.report.summary(), file=out)
    print(f"  all {len(loaded.records)} images decode at their declared size", file=out)
    return loaded


def check_splits(
    data: str | Path,
    splits: list[str] | None = None,
    *,
    skip_bad_images: bool = False,
    progress: bool = True,
    out: TextIO | None = None,
) -> dict[str, DetectionData]:
    """:func:`check_dataset` for each of ``splits`` (default: every split the dataset has, train first), the
    later ones with the first one's class order, as training loads its validation split.

    Raises:
        DatasetError: the first problem found, naming the file (a broken val split before training starts).
    """
    checked: dict[str, DetectionData] = {}
    class_names = None
    for split in splits or find_splits(data):
        checked[split] = check_dataset(data, split, class_names, skip_bad_images=skip_bad_images, progress=progress,
                                       out=out)
        class_names = class_names or checked[split].class_names
    return checked

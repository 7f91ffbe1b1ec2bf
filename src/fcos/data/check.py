"""``fcos data check``: load a split exactly as training would and decode every image."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from fcos.data.dataset import decode_image
from fcos.data.detect import load_annotations
from fcos.data.records import DetectionData

__all__ = ["check_dataset"]


def check_dataset(
    data: str | Path,
    split: str = "train",
    class_names: list[str] | None = None,
    *,
    progress: bool = True,
    out: TextIO | None = None,
) -> DetectionData:
    """Read the annotations, then open and fully decode every image, checking its declared size.

    Prints the load report's summary to ``out`` (default stdout) and returns the data.

    Raises:
        DatasetError: the first problem found, naming the file.
    """
    loaded = load_annotations(data, split, class_names)
    records = tqdm(
        loaded.records, desc=f"checking {split} images", unit="img", disable=not progress, file=sys.stderr
    )
    for record in records:
        decode_image(record.path, record.width, record.height).close()
    print(loaded.report.summary(), file=out or sys.stdout)
    print(f"  all {len(loaded.records)} images decode at their declared size", file=out or sys.stdout)
    return loaded

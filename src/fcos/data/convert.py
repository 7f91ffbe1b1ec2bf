"""``fcos data convert``: a dataset in any layout the readers know, rewritten in another one.

Every split is read as training reads it (the first with its own classes, the others indexed by the
first's), then one writer writes them all (the target layout's, :data:`fcos.data.layouts.LAYOUTS`:
:func:`fcos.data.coco.write_coco`, ``voc.write_voc``, ``yolo.write_yolo``). What the target format cannot hold is not written and is counted in the
returned report (YOLO: crowd boxes; VOC and YOLO: category and image ids); everything else comes back
the same when the result is read: images (hard-linked, byte for byte), sizes, classes, boxes (within
1e-3 px; in practice float rounding) and crowd / difficult flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fcos.data.layouts import layout_named, load_splits
from fcos.data.records import DetectionData
from fcos.data.writing import WriteReport, check_output_folder

__all__ = ["convert_dataset", "write_dataset"]


def convert_dataset(
    src: str | Path, fmt: str, out: str | Path, *, splits: Sequence[str] | None = None, link: bool = True
) -> WriteReport:
    """Read every split of ``src`` (or ``splits``) and write them as ``fmt`` into ``out``.

    Args:
        src: a dataset folder (COCO, VOC or YOLO layout), a COCO ``.json`` or a YOLO ``.yaml``.
        fmt: ``coco``, ``voc`` or ``yolo``.
        out: a new or empty folder; it holds the whole dataset or, after an error, nothing new.
        link: hard-link the images (copy where the file system cannot); False: copy.

    Raises:
        DatasetError: an unknown ``fmt``, an ``out`` that exists and is not empty, or a problem in ``src``
            (naming the file).
    """
    writer = layout_named(fmt, out).write
    check_output_folder(out)  # before reading a large dataset
    return writer(load_splits(src, splits), out, link=link)


def write_dataset(
    data: DetectionData | Mapping[str, DetectionData], fmt: str, out: str | Path, *, link: bool = True
) -> WriteReport:
    """``data`` (one split or ``{split: data}``) written as ``fmt`` into ``out``."""
    return layout_named(fmt, out).write(data, out, link=link)

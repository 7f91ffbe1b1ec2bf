"""``fcos data convert``: a dataset in any layout the readers know, rewritten in another one.

Every split is read as training reads it (the first with its own classes, the others indexed by the
first's), then one writer writes them all (:func:`fcos.data.coco.write_coco`, ``voc.write_voc``,
``yolo.write_yolo``). What the target format cannot hold is not written and is counted in the
returned report (YOLO: crowd boxes; VOC and YOLO: category and image ids); everything else comes back
the same when the result is read: images (hard-linked, byte for byte), sizes, classes, boxes (within
1e-3 px; in practice float rounding) and crowd / difficult flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fcos.data.coco import write_coco
from fcos.data.detect import find_splits, load_annotations
from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData
from fcos.data.voc import write_voc
from fcos.data.writing import WriteReport, check_output_folder
from fcos.data.yolo import write_yolo

__all__ = ["WRITERS", "convert_dataset", "load_splits", "write_dataset", "writer_for"]

Writer = Callable[..., WriteReport]
# format -> writer(data | {split: data}, out, *, link) (the readers' side: fcos.data.detect)
WRITERS: dict[str, Writer] = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}


def writer_for(fmt: str, out: str | Path) -> Writer:
    """The writer of ``fmt``; a DatasetError naming ``out`` for an unknown format."""
    if fmt not in WRITERS:
        raise DatasetError(out, f"unknown format {fmt!r} to write: expected one of {', '.join(WRITERS)}")
    return WRITERS[fmt]


def load_splits(src: str | Path, splits: Sequence[str] | None = None) -> dict[str, DetectionData]:
    """``{split: data}`` of ``splits`` (default: every split :func:`find_splits` finds), read as training
    reads them: the first with its own classes, the others indexed by the first's."""
    loaded: dict[str, DetectionData] = {}
    class_names = None
    for split in splits or find_splits(src):
        loaded[split] = load_annotations(src, split, class_names)
        class_names = class_names or loaded[split].class_names
    return loaded


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
    writer = writer_for(fmt, out)
    check_output_folder(out)  # before reading a large dataset
    return writer(load_splits(src, splits), out, link=link)


def write_dataset(
    data: DetectionData | Mapping[str, DetectionData], fmt: str, out: str | Path, *, link: bool = True
) -> WriteReport:
    """``data`` (one split or ``{split: data}``) written as ``fmt`` into ``out``."""
    return writer_for(fmt, out)(data, out, link=link)

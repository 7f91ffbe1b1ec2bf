"""What the three dataset writers share (``write_coco``, ``write_voc``, ``write_yolo``, each beside its reader).

- The output folder must not exist or be empty: nothing is ever overwritten. The dataset is built in a
  hidden sibling folder and renamed into place at the end, so a failed write (a bad record, a full disk)
  leaves no half dataset behind.
- Images are hard-linked, or copied with ``link=False`` (and where the file system cannot link: another
  device, no link support). Never re-encoded: pixels, EXIF and file format stay byte for byte. A hard link
  costs no space and, unlike a symbolic link, survives moving or deleting the source; the one catch is
  that an image edited in place (not replaced) changes in both datasets.
- File names stay the source's, relative to the split's image folder, and are made unique where two
  sources would collide (``a.jpg``, ``a_2.jpg``, ...). VOC and YOLO need flat, unique stems (an
  annotation or label file per stem): there ``sub/a b.jpg`` becomes ``sub_a_b.jpg``.
- :class:`WriteReport` says what was written and what the format could not hold.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData, ImageRecord, remap_classes
from fcos.utils.files import WriteError

__all__ = ["WriteReport", "check_output_folder", "image_names", "named_splits", "place_image", "renumbered", "staged_folder", "write_file"]

# A link that fails with these falls back to a copy (another device, a file system without hard links,
# too many links to one file, links refused by the file system's permissions).
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, getattr(errno, "ENOTSUP", -1),
            getattr(errno, "EOPNOTSUPP", -1)}
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class WriteReport:
    """What a writer wrote, and what the format could not hold (``lost``: reason -> count)."""

    out: Path
    format: str
    images: dict[str, int] = field(default_factory=dict)  # split -> images
    boxes: dict[str, int] = field(default_factory=dict)  # split -> training boxes written
    crowd: dict[str, int] = field(default_factory=dict)  # split -> crowd / difficult boxes written
    linked: int = 0  # image files hard-linked
    copied: int = 0  # image files copied
    lost: Counter[str] = field(default_factory=Counter)  # data the format cannot hold, dropped
    notes: list[str] = field(default_factory=list)  # what changed without loss (ids, order, names)

    def summary(self) -> str:
        lines = [f"wrote {self.format} dataset {self.out}"]
        for split, count in self.images.items():
            lines.append(f"  {split}: {count} images, {self.boxes[split]} boxes, {self.crowd[split]} crowd boxes")
        lines.append(f"  image files: {self.linked} hard-linked, {self.copied} copied")
        lines.append(f"  not written (the {self.format} format cannot hold it): {sum(self.lost.values())}")
        lines.extend(f"    {reason}: {n}" for reason, n in sorted(self.lost.items()))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def named_splits(data: DetectionData | Mapping[str, DetectionData]) -> dict[str, DetectionData]:
    """``{split: data}`` (a lone split is ``train``), every split indexed by the first one's classes.

    Raises:
        DatasetError: a split without images (nothing to write), or classes the first split lacks.
        ValueError: a split name that is not a plain file name (letters, digits, ``_ . -``).
    """
    splits = {"train": data} if isinstance(data, DetectionData) else dict(data)
    if not splits:
        raise ValueError("no split to write")
    first = next(iter(splits.values()))
    for name, split in splits.items():
        if not _SPLIT_NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"split name {name!r} must be a plain file name (letters, digits, '_', '.', '-')")
        if not split.records:
            raise DatasetError(split.source, f"split {name!r} has no images: nothing to write")
    return {name: remap_classes(split, first.class_names) for name, split in splits.items()}


def check_output_folder(out: str | Path) -> Path:
    """``out``, which must not exist or be an empty folder (writers never overwrite)."""
    out = Path(out)
    if out.is_file() or (out.is_symlink() and not out.is_dir()):  # a file, or a link to nothing
        raise DatasetError(out, "exists and is a file: the output must be a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(out, "exists and is not empty: write into a new or empty folder (nothing is overwritten)")
    return out


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """``with staged_folder(out) as root:`` write the dataset under ``root``; on success it becomes ``out``,
    on any error it is removed (and ``out`` left as it was)."""
    out = check_output_folder(out)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(stage, ignore_errors=True)  # a leftover of a killed run of this process id
        stage.mkdir(parents=True)
    except OSError as e:
        raise WriteError.from_error(stage, e) from None
    try:
        yield stage
        if out.is_dir():
            out.rmdir()  # empty (checked above); rename needs the name free or an empty folder
        os.replace(stage, out)
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError | DatasetError):
            raise WriteError.from_error(out, e) from None
        raise


def place_image(source: Path, target: Path, *, link: bool = True) -> bool:
    """Hard-link (``link``) or copy ``source`` to ``target``; True when linked. A symbolic link as
    ``source`` is followed: the target gets the image itself.

    Raises:
        DatasetError: the source is missing or unreadable. WriteError: the target cannot be written.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError.from_error(target.parent, e) from None
    if not source.is_file():
        raise DatasetError(source, "image file not found")
    if link:
        try:
            os.link(os.path.realpath(source), target)  # link() itself would link a symbolic link, not its file
            return True
        except OSError as e:
            if e.errno not in _NO_LINK:
                raise WriteError.from_error(target, e) from None
    try:
        shutil.copy2(source, target)
    except PermissionError as e:
        raise DatasetError(source, f"cannot read the image: {e.strerror or e}") from None
    except OSError as e:
        raise WriteError.from_error(target, e) from None
    return False


def write_file(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) into a staged folder: the folder, not each file, is what is atomic, so no
    fsync per file (thousands of label files)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise WriteError.from_error(path, e) from None


def renumbered(data: DetectionData) -> bool:
    """Whether the split's image ids differ from 1..N in record order (VOC and YOLO keep no ids)."""
    return [r.image_id for r in data.records] != list(range(1, len(data.records) + 1))


def image_names(
    records: Sequence[ImageRecord], taken: dict[str, str] | None = None, *, flat: bool = False
) -> list[str]:
    """Where each record's image goes: a relative POSIX path, unique among ``taken``.

    Args:
        records: one split's images; names are their paths relative to the images' common folder.
        taken: name (or, ``flat``, lower-case stem) -> resolved source file, shared across calls so that
            splits that share a folder get distinct names; the same source file keeps one name.
        flat: no sub-folders and no white space (``sub/a b.jpg`` -> ``sub_a_b.jpg``) and stems unique
            regardless of suffix and case: VOC and YOLO keep one annotation or label file per stem.
    """
    taken = {} if taken is None else taken
    parents = [str(r.path.parent) for r in records]
    root = os.path.commonpath(parents) if parents else ""
    names = []
    for record in records:
        source = os.path.realpath(record.path)
        name = PurePosixPath(Path(os.path.relpath(record.path, root)).as_posix())
        if flat:
            name = PurePosixPath(re.sub(r"\s+", "_", "_".join(name.parts)))
        base, number = name, 1
        while taken.setdefault(_key(name, flat), source) != source:
            number += 1
            name = base.with_name(f"{base.stem}_{number}{base.suffix}")
        names.append(str(name))
    return names


def _key(name: PurePosixPath, flat: bool) -> str:
    # A flat layout names its annotation files by stem: a.jpg and a.png (or A.jpg on a case-insensitive
    # disk) would share one.
    return name.stem.lower() if flat else str(name)

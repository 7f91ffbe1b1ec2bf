"""The dataset layouts, one table that everything reads: how each is recognised, which splits it has, its
reader and its writer. :func:`load_annotations` and :func:`find_splits` (``fcos data check``, training)
look a path up in :data:`LAYOUTS`, ``fcos data convert`` and ``split`` write through it (:func:`layout_named`);
adding a format is its module (reader and writer) and one :class:`Layout` line here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fcos.data.coco import read_coco, write_coco
from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData
from fcos.data.voc import read_voc, write_voc
from fcos.data.yolo import read_yolo, write_yolo

__all__ = ["LAYOUTS", "SPLITS", "Layout", "find_splits", "layout_named", "layout_of", "load_annotations", "load_splits"]

SPLITS = ("train", "val", "test")  # the splits find_splits looks for, in this order


@dataclass(frozen=True)
class Layout:
    """One dataset format.

    ``matches(path)``: ``path`` (a folder, or a file: a COCO ``.json``, a YOLO ``.yaml``) is in this layout;
    ``has_split(path, split)``: it holds that split; ``read(path, split, class_names, **options)``: the
    split as :class:`~fcos.data.records.DetectionData` (``options``: ``image_dir`` for COCO; ``split``
    None: a folder without splits, read whole, where the layout has such a thing: VOC ``Annotations/``
    without ``ImageSets``, YOLO ``images/`` + ``labels/``);
    ``write(data | {split: data}, out, *, link) -> WriteReport``: the splits written in this layout into
    a new folder (:mod:`fcos.data.writing`).
    """

    name: str
    describe: str  # the line of the "expected one of these layouts" message
    matches: Callable[[Path], bool]
    has_split: Callable[[Path, str], bool]
    read: Callable[..., DetectionData]
    write: Callable[..., Any]


# ---------------------------------------------------------------------------------------- COCO
def _coco_matches(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".json"
    return (path / "annotations").is_dir() and any((path / "annotations").glob("*.json"))


def _coco_has_split(path: Path, split: str) -> bool:
    if path.is_file():  # a lone .json is one split, reported as train
        return split == "train"
    try:
        _coco_split(path / "annotations", split)
    except DatasetError:
        return False
    return True


def _coco_read(path: Path, split: str | None, class_names: list[str] | None, image_dir: str | Path | None = None,
               skip_missing: bool = False, **_: Any) -> DetectionData:
    if path.is_file():
        return read_coco(path, image_dir or _coco_images(path), class_names=class_names, skip_missing=skip_missing)
    if split is None:
        raise DatasetError(path / "annotations", "a COCO folder's annotations are per split: name the split")
    json_file = _coco_split(path / "annotations", split)
    return read_coco(json_file, image_dir or _coco_split_images(path, json_file), class_names=class_names,
                     skip_missing=skip_missing)


def _coco_split_images(path: Path, json_file: Path) -> Path:
    """``DIR/images``; for the official zip's ``instances_val2017.json`` its folder ``val2017`` in
    ``DIR/images`` or ``DIR`` where it is one (COCO's own layout, no link needed)."""
    if json_file.name.startswith("instances_"):
        tag = json_file.stem.removeprefix("instances_")
        for candidate in (path / "images" / tag, path / tag):
            if candidate.is_dir():
                return candidate
    return path / "images"


def _coco_images(json_file: Path) -> Path:
    for candidate in (json_file.parent.parent / "images", json_file.parent / "images"):
        if candidate.is_dir():
            return candidate
    return json_file.parent


def _coco_split(annotations: Path, split: str) -> Path:
    """``<split>.json``, else the one file whose name contains the split (``instances_val2017.json``), or
    the one of those named ``instances_*`` (the official zip holds captions_ and person_keypoints_ beside)."""
    exact = annotations / f"{split}.json"
    if exact.is_file():
        return exact
    # image_info_test-dev2017.json: COCO's list of unlabelled test images, not a split to train or evaluate on
    matches = sorted(m for m in annotations.glob(f"*{split}*.json") if not m.name.startswith("image_info_"))
    for candidates in (matches, [m for m in matches if m.name.startswith("instances_")]):
        if len(candidates) == 1:
            return candidates[0]
    available = ", ".join(sorted(p.name for p in annotations.glob("*.json")))
    raise DatasetError(exact, f"no annotation file for split {split!r} (found: {available})")


# ---------------------------------------------------------------------------------------- VOC
def _voc_matches(path: Path) -> bool:
    return path.is_dir() and (path / "Annotations").is_dir()


def _voc_has_split(path: Path, split: str) -> bool:
    return (path / "ImageSets" / "Main" / f"{split}.txt").is_file()


def _voc_read(path: Path, split: str | None, class_names: list[str] | None, skip_missing: bool = False,
              **_: Any) -> DetectionData:
    return read_voc(path, split, class_names=class_names, skip_missing=skip_missing)  # split None: every xml


# ---------------------------------------------------------------------------------------- YOLO
def _yolo_matches(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in (".yaml", ".yml")
    return (path / "data.yaml").is_file() or (path / "labels").is_dir()


def _yolo_has_split(path: Path, split: str) -> bool:
    """A ``data.yaml`` key names the split, or ``images/<split>/`` exists."""
    yaml_file, root = (path, path.parent) if path.is_file() else (path / "data.yaml", path)
    if (root / "images" / split).is_dir():
        return True
    if not yaml_file.is_file():
        return False
    try:
        config = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return split == "train"  # unreadable: let load_annotations report it, once
    return isinstance(config, dict) and config.get(split) not in (None, "")


def _yolo_read(path: Path, split: str | None, class_names: list[str] | None, **_: Any) -> DetectionData:
    return read_yolo(path, split or "", class_names=class_names)  # split None: images/ + labels/ themselves


# Looked up in this order: the first layout whose `matches` accepts a path reads it.
LAYOUTS: tuple[Layout, ...] = (
    Layout("coco", "COCO: DIR/images/ + DIR/annotations/<split>.json (or the .json file itself)",
           _coco_matches, _coco_has_split, _coco_read, write_coco),
    Layout("voc", "VOC:  DIR/Annotations/*.xml + DIR/ImageSets/Main/<split>.txt + DIR/JPEGImages/",
           _voc_matches, _voc_has_split, _voc_read, write_voc),
    Layout("yolo", "YOLO: DIR/data.yaml (or the .yaml file itself) + DIR/images/<split>/ + DIR/labels/<split>/*.txt",
           _yolo_matches, _yolo_has_split, _yolo_read, write_yolo),
)


def _expected() -> str:
    return "expected one of these layouts:\n" + "\n".join(f"  {layout.describe}" for layout in LAYOUTS)


def layout_named(name: str, path: str | Path = "") -> Layout:
    """The layout called ``name`` (``coco``, ``voc``, ``yolo``); a DatasetError naming ``path`` otherwise."""
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise DatasetError(path, f"unknown format {name!r}: expected one of {', '.join(layout.name for layout in LAYOUTS)}")


def layout_of(data: str | Path) -> Layout:
    """The layout of a dataset folder or file; :class:`DatasetError` naming the path otherwise."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(path, "does not exist")
    for layout in LAYOUTS:
        if layout.matches(path):
            return layout
    what = "not a .json (COCO) or .yaml (YOLO) file" if path.is_file() else "unknown dataset layout"
    raise DatasetError(path, f"{what}; {_expected()}")


def load_annotations(
    data: str | Path,
    split: str = "train",
    class_names: list[str] | None = None,
    *,
    image_dir: str | Path | None = None,
    skip_missing: bool = False,
) -> DetectionData:
    """Read a dataset split in whichever layout ``data`` has (:data:`LAYOUTS`).

    Args:
        data: a dataset folder (COCO, VOC or YOLO layout), a COCO ``.json`` or a YOLO ``.yaml`` file.
        split: ``train``, ``val``, ... (ignored for a .json file, which is one split).
        class_names: optional class order, e.g. ``train.class_names`` when loading ``val``.
        image_dir: images folder for a COCO .json (default: ``../images`` beside its folder, else ``images/``
            beside the file).
        skip_missing: leave out the images the annotations name but that are not there, listed in
            ``report.skipped_images`` (``--skip-bad-images``), instead of a DatasetError naming the first.
    """
    return layout_of(data).read(Path(data), split, class_names, image_dir=image_dir, skip_missing=skip_missing)


def find_splits(data: str | Path) -> list[str]:
    """The splits of ``SPLITS`` that ``data`` has, in that order (a lone COCO ``.json`` is one split,
    reported as ``train``): those :func:`load_annotations` would find a file for."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(path, "does not exist")
    layout = next((layout for layout in LAYOUTS if layout.matches(path)), None)
    found = [split for split in SPLITS if layout is not None and layout.has_split(path, split)]
    if not found:
        raise DatasetError(path, f"no {', '.join(SPLITS)} split found; {_expected()}")
    return found


def load_splits(data: str | Path, splits: Sequence[str] | None = None) -> dict[str, DetectionData]:
    """``{split: data}`` of ``splits`` (default: every split :func:`find_splits` finds), read as training
    reads them: the first with its own classes, the others indexed by the first's."""
    loaded: dict[str, DetectionData] = {}
    class_names = None
    for split in splits or find_splits(data):
        loaded[split] = load_annotations(data, split, class_names)
        class_names = class_names or loaded[split].class_names
    return loaded

"""One entry point for every format: look at a path, pick the reader."""

from __future__ import annotations

from pathlib import Path

import yaml

from fcos.data.coco import read_coco
from fcos.data.errors import DatasetError
from fcos.data.records import DetectionData
from fcos.data.voc import read_voc
from fcos.data.yolo import read_yolo

__all__ = ["LAYOUTS", "SPLITS", "find_splits", "load_annotations"]

LAYOUTS = """\
expected one of these layouts:
  COCO: DIR/images/ + DIR/annotations/<split>.json (or the .json file itself)
  VOC:  DIR/Annotations/*.xml + DIR/ImageSets/Main/<split>.txt + DIR/JPEGImages/
  YOLO: DIR/data.yaml (or the .yaml file itself) + DIR/images/<split>/ + DIR/labels/<split>/*.txt"""


def load_annotations(
    data: str | Path,
    split: str = "train",
    class_names: list[str] | None = None,
    *,
    image_dir: str | Path | None = None,
) -> DetectionData:
    """Read a dataset split in whichever layout ``data`` has.

    Args:
        data: a dataset folder (COCO, VOC or YOLO layout), a COCO ``.json`` or a YOLO ``.yaml`` file.
        split: ``train``, ``val``, ... (ignored for a .json file, which is one split).
        class_names: optional class order, e.g. ``train.class_names`` when loading ``val``.
        image_dir: images folder for a COCO .json (default: ``../images`` beside its folder, else ``images/``
            beside the file).
    """
    path = Path(data)
    if not path.exists():
        raise DatasetError(path, "does not exist")
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            return read_yolo(path, split, class_names=class_names)
        if path.suffix.lower() == ".json":
            return read_coco(path, image_dir or _coco_images(path), class_names=class_names)
        raise DatasetError(path, f"not a .json (COCO) or .yaml (YOLO) file; {LAYOUTS}")
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        return read_coco(
            _coco_split(path / "annotations", split), image_dir or path / "images", class_names=class_names
        )
    if (path / "Annotations").is_dir():
        return read_voc(path, split, class_names=class_names)
    if (path / "data.yaml").is_file() or (path / "labels").is_dir():
        return read_yolo(path, split, class_names=class_names)
    raise DatasetError(path, f"unknown dataset layout; {LAYOUTS}")


SPLITS = ("train", "val", "test")  # the splits find_splits looks for, in this order


def find_splits(data: str | Path) -> list[str]:
    """The splits of ``SPLITS`` that ``data`` has, in that order (a COCO ``.json`` or YOLO ``.yaml``
    file's own splits likewise; a lone ``.json`` is one split, reported as ``train``).

    A split exists if :func:`load_annotations` would find its file: COCO ``annotations/<split>.json`` (or
    the one file naming it), VOC ``ImageSets/Main/<split>.txt``, YOLO a ``data.yaml`` key or ``images/<split>/``.
    """
    path = Path(data)
    if not path.exists():
        raise DatasetError(path, "does not exist")
    if path.is_file() and path.suffix.lower() == ".json":
        return ["train"]
    found = [split for split in SPLITS if _has_split(path, split)]
    if not found:
        raise DatasetError(path, f"no {', '.join(SPLITS)} split found; {LAYOUTS}")
    return found


def _has_split(path: Path, split: str) -> bool:
    if path.is_file():  # a YOLO .yaml
        return _yolo_has_split(path, path.parent, split)
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        try:
            _coco_split(path / "annotations", split)
        except DatasetError:
            return False
        return True
    if (path / "Annotations").is_dir():
        return (path / "ImageSets" / "Main" / f"{split}.txt").is_file()
    if (path / "data.yaml").is_file():
        return _yolo_has_split(path / "data.yaml", path, split)
    return (path / "images" / split).is_dir()


def _yolo_has_split(yaml_file: Path, root: Path, split: str) -> bool:
    try:
        config = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return split == "train"  # unreadable: let load_annotations report it, once
    return (isinstance(config, dict) and config.get(split) is not None) or (root / "images" / split).is_dir()


def _coco_images(json_file: Path) -> Path:
    for candidate in (json_file.parent.parent / "images", json_file.parent / "images"):
        if candidate.is_dir():
            return candidate
    return json_file.parent


def _coco_split(annotations: Path, split: str) -> Path:
    """``<split>.json``, else the one file whose name contains the split (``instances_val2017.json``)."""
    exact = annotations / f"{split}.json"
    if exact.is_file():
        return exact
    matches = sorted(annotations.glob(f"*{split}*.json"))
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(sorted(p.name for p in annotations.glob("*.json")))
    raise DatasetError(exact, f"no annotation file for split {split!r} (found: {available})")

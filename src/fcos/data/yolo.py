"""Ultralytics YOLO reader: ``images/<split>/*``, ``labels/<split>/*.txt``, class names from ``data.yaml``.

A label line is ``class cx cy w h``, normalised to 0-1 by the image size, which is read from the image
header (Pillow opens lazily, so no pixels are decoded). That size is the one after the image's EXIF
rotation, as ultralytics reads it (``exif_size``) and trains on it: a phone photo's labels describe it
upright. An image without a label file has no objects:
that is YOLO's convention for negatives, so it is kept and counted in the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from fcos.data.errors import DatasetError
from fcos.data.geometry import fit_box
from fcos.data.images import ImageError, is_image_file, open_image, oriented_size
from fcos.data.records import DetectionData, ImageRecord, LoadReport, remap_classes

__all__ = ["label_path", "read_yolo"]

NO_LABEL_FILE = "image without a label file (no objects)"
ORPHAN_LABEL = "label file without an image (not used)"


def read_yolo(
    root_or_yaml: str | Path, split: str = "train", *, class_names: list[str] | None = None
) -> DetectionData:
    """Read one split of a YOLO dataset.

    Args:
        root_or_yaml: a ``data.yaml`` file, or a folder with ``images/<split>/`` and ``labels/<split>/``
            (and normally a ``data.yaml``). In the yaml, ``path`` (default: the yaml's folder; relative
            paths are relative to the yaml's folder) is the root and ``<split>`` names an image folder,
            a .txt list of images, or a list of those (default ``images/<split>``).
        class_names: class order; without a data.yaml it is required. With one, classes are mapped by name.

    Image ids are 1..N in sorted file order.
    """
    given = Path(root_or_yaml)
    if not given.exists():
        raise DatasetError(given, "does not exist")
    yaml_file = given if given.is_file() else given / "data.yaml"
    source = yaml_file
    if yaml_file.is_file():
        config = _load_yaml(yaml_file)
        names = _names(config, yaml_file)
        sources = _split_sources(config, split, _root(config, yaml_file), yaml_file)
    elif class_names is not None:
        names, source = list(class_names), given
        sources = [given / "images" / split]
    else:
        raise DatasetError(
            given, "no data.yaml here to name the classes: add one ('names: [a, b]') or pass class_names"
        )
    report = LoadReport(title=f"yolo {source} ({split})")
    images = [image for src in sources for image in _list_images(src)]
    if not images:
        raise DatasetError(sources[0], f"no images found for split {split!r}")
    records = [_record(image, image_id, len(names), report) for image_id, image in enumerate(images, start=1)]
    _count_orphan_labels(sources, images, report)
    report.tally(records, names)
    data = DetectionData(records, names, list(range(1, len(names) + 1)), report, source, "yolo")
    return remap_classes(data, class_names) if class_names is not None and yaml_file.is_file() else data


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read the file: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DatasetError(path, f"invalid YAML: {getattr(e, 'problem', None) or e}", line=line) from None
    if not isinstance(config, dict):
        raise DatasetError(path, "a YOLO data yaml must be a mapping with at least 'names'")
    return config


def _names(config: dict[str, Any], path: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        keys = list(names)
        if not all(type(k) is int for k in keys) or sorted(keys) != list(range(len(keys))):
            raise DatasetError(
                path,
                f"'names' keys must be the class indices 0..{len(names) - 1}, got {sorted(names, key=str)}",
            )
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DatasetError(
            path, f"'names' must be a non-empty list or {{index: name}} mapping, got {names!r}"
        )
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise DatasetError(path, f"'names' contains duplicates: {names}")
    if "nc" in config and config["nc"] != len(names):
        raise DatasetError(path, f"'nc' is {config['nc']!r} but 'names' has {len(names)} entries")
    return names


def _root(config: dict[str, Any], path: Path) -> Path:
    value = config.get("path")
    if value is None:
        return path.parent
    if not isinstance(value, str):
        raise DatasetError(path, f"'path' must be a string, got {value!r}")
    root = Path(value)
    return root if root.is_absolute() else path.parent / root


def _split_sources(config: dict[str, Any], split: str, root: Path, path: Path) -> list[Path]:
    value = config.get(split)
    if value is None:
        default = root / "images" / split
        if default.is_dir():
            return [default]
        raise DatasetError(path, f"no '{split}' key and no {default} folder")
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise DatasetError(path, f"'{split}' must be a path or a list of paths, got {value!r}")
    return [root / v for v in values]


def _list_images(source: Path) -> list[Path]:
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if is_image_file(p))
    if source.suffix == ".txt" and source.is_file():
        try:
            lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(source, f"cannot read the image list: {e}") from None
        images = [source.parent / line for line in lines if line]
        for number, image in enumerate(images, start=1):
            if not image.is_file():
                raise DatasetError(source, f"image {image} not found", line=number)
        return images
    raise DatasetError(source, "image folder (or .txt image list) not found")


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    if "images" not in parts[:-1]:
        raise DatasetError(image, "YOLO images must sit under an 'images' folder (labels go in 'labels')")
    i = len(parts) - 2 - parts[-2::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _image_size(image: Path) -> tuple[int, int]:
    """(width, height) after the EXIF rotation, from the header."""
    try:
        with open_image(image) as im:
            return oriented_size(im)
    except ImageError as e:
        raise DatasetError(image, e.problem) from None


def _record(image: Path, image_id: int, num_classes: int, report: LoadReport) -> ImageRecord:
    width, height = _image_size(image)
    label = label_path(image)
    boxes, labels = [], []
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        report.notes[NO_LABEL_FILE] += 1
        lines = []
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(label, f"cannot read the label file: {e}") from None
    for number, text in enumerate(lines, start=1):
        fields = text.split()
        if not fields:
            continue
        cls, cx, cy, w, h = _parse_line(fields, num_classes, label, number)
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        box = fit_box(
            box, width, height, report, label, line=number, shown=f"box 'cx cy w h' = {' '.join(fields[1:])}"
        )
        if box is not None:
            boxes.append(box)
            labels.append(cls)
    return ImageRecord(image, image_id, width, height, boxes, labels)


def _parse_line(
    fields: list[str], num_classes: int, label: Path, number: int
) -> tuple[int, float, float, float, float]:
    if len(fields) != 5:
        extra = " (polygon/segment labels are not supported)" if len(fields) > 5 else ""
        raise DatasetError(
            label, f"expected 5 fields 'class cx cy w h', got {len(fields)}{extra}", line=number
        )
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise DatasetError(label, f"non-numeric field in {' '.join(fields)!r}", line=number) from None
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(label, f"NaN or infinite value in {' '.join(fields)!r}", line=number)
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < num_classes:
        raise DatasetError(label, f"class {fields[0]} is out of range 0..{num_classes - 1}", line=number)
    return int(cls), values[1], values[2], values[3], values[4]


def _count_orphan_labels(sources: list[Path], images: list[Path], report: LoadReport) -> None:
    expected = {label_path(image) for image in images}
    for source in sources:
        if not source.is_dir():
            continue
        labels_dir = label_path(source / "x").parent
        if labels_dir.is_dir():
            report.notes[ORPHAN_LABEL] += sum(1 for p in labels_dir.rglob("*.txt") if p not in expected)
    if report.notes[ORPHAN_LABEL] == 0:
        del report.notes[ORPHAN_LABEL]

"""Ultralytics YOLO reader and writer: ``images/<split>/*``, ``labels/<split>/*.txt``, class names from ``data.yaml``.

A label line is ``class cx cy w h``, normalised to 0-1 by the image size, which is read from the image
header (Pillow opens lazily, so no pixels are decoded). That size is the one after the image's EXIF
rotation, as ultralytics reads it (``exif_size``) and trains on it: a phone photo's labels describe it
upright. An image without a label file has no objects:
that is YOLO's convention for negatives, so it is kept and counted in the report.

What YOLO cannot hold (:func:`write_yolo` reports each): crowd / difficult boxes (no such flag: they are
not written), category ids (classes are 0..C-1, read back as ids 1..C), image ids (1..N in file-name
order), image sizes (read from the files). Normalised coordinates are written with Python's shortest
exact repr, so boxes come back within float rounding (~1e-13 px), never past the image border.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from fcos.data.errors import DatasetError
from fcos.data.geometry import fit_box
from fcos.data.images import IMAGE_SUFFIXES, ImageError, is_image_file, open_image, oriented_size
from fcos.data.records import DetectionData, ImageRecord, LoadReport, remap_classes
from fcos.data.writing import (
    WriteReport,
    image_names,
    named_splits,
    place_image,
    renumbered,
    staged_folder,
    write_file,
)
from fcos.utils.files import write_text

__all__ = ["label_path", "read_yolo", "write_yolo"]

NO_LABEL_FILE = "image without a label file (no objects)"
POLYGON = "polygon (segment) label read as its bounding box"
ORPHAN_LABEL = "label file without an image (not used)"
CROWD_NOT_WRITTEN = "crowd / difficult boxes (YOLO has no crowd flag)"
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}


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


def write_yolo(
    data: DetectionData | Mapping[str, DetectionData], out: str | Path, *, link: bool = True
) -> WriteReport:
    """Write splits as ``out/images/<split>/<file>``, ``out/labels/<split>/<stem>.txt`` (``class cx cy w h``,
    normalised; an empty file for an image without boxes) and ``out/data.yaml`` (``names``, ``nc`` and a
    key per split), the layout :func:`read_yolo` and ultralytics read back.

    Args:
        data: one split (written as ``train``) or ``{split: data}``; later splits are indexed by the first
            one's classes.
        out: a new or empty folder (:mod:`fcos.data.writing`: written aside, renamed into place).
        link: hard-link the images (a copy where that is impossible); False: always copy.

    Raises:
        DatasetError: an image whose EXIF orientation turns it sideways while its annotations describe the
            stored pixels (YOLO labels describe the image as shown), or whose size is not the declared one.
    """
    splits = named_splits(data)
    first = next(iter(splits.values()))
    report = WriteReport(Path(out), "yolo")
    with staged_folder(out) as root:
        for split, part in splits.items():
            names = image_names(part.records, {}, flat=True)
            for record, name in zip(part.records, names, strict=True):
                name = _with_image_suffix(record, name, report)
                lines = [_label_line(box, label, record) for box, label in
                         zip(record.boxes.tolist(), record.labels.tolist(), strict=True)]
                write_file(root / "labels" / split / f"{PurePosixPath(name).stem}.txt", "".join(lines))
                linked = place_image(record.path, root / "images" / split / name, link=link)
                report.linked, report.copied = report.linked + linked, report.copied + (not linked)
                if len(record.crowd):
                    report.lost[CROWD_NOT_WRITTEN] += len(record.crowd)
            report.images[split] = len(part.records)
            report.boxes[split] = sum(len(r.boxes) for r in part.records)
            report.crowd[split] = 0
            if renumbered(part) or names != sorted(names):
                report.notes.append(f"{split}: image ids become 1..N in file-name order (YOLO has none)")
        config = {**{split: f"images/{split}" for split in splits}, "nc": first.num_classes,
                  "names": dict(enumerate(first.class_names))}
        write_text(root / "data.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    if first.category_ids != list(range(1, first.num_classes + 1)):
        report.notes.append(f"category ids {first.category_ids} become 1..C (YOLO class index + 1)")
    return report


def _label_line(box: list[float], label: int, record: ImageRecord) -> str:
    """``class cx cy w h`` whose boxes :func:`_record` reads back within float rounding and, for a box on
    the border, exactly on it (a hair past it would count as clipped)."""
    width, height = record.width, record.height
    x1, y1, x2, y2 = box
    values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
    for centre, size, side in ((0, 2, width), (1, 3, height)):
        for _ in range(8):  # a few ulps at most
            low, high = (values[centre] - values[size] / 2) * side, (values[centre] + values[size] / 2) * side
            if low < 0 and high > side:
                values[size] = math.nextafter(values[size], 0.0)
            elif low < 0:
                values[centre] = math.nextafter(values[centre], math.inf)
            elif high > side:
                values[centre] = math.nextafter(values[centre], -math.inf)
            else:
                break
    return f"{label} {' '.join(repr(v) for v in values)}\n"


def _with_image_suffix(record: ImageRecord, name: str, report: WriteReport) -> str:
    """``name``, with the suffix of its format added when it has none the YOLO reader lists; checks that
    the file's size after its EXIF rotation is the declared one (YOLO labels describe the image as shown)."""
    try:
        with open_image(record.path) as image:
            shown, stored, kind = oriented_size(image), image.size, image.format
    except ImageError as e:
        raise DatasetError(record.path, e.problem) from None
    declared = (record.width, record.height)
    if declared != shown:
        if declared == stored:
            raise DatasetError(
                record.path, f"its EXIF orientation shows it as {shown[0]}x{shown[1]}, but the annotations describe "
                f"the stored {stored[0]}x{stored[1]} pixels; YOLO labels describe the image as shown: remove the "
                "EXIF orientation tag or keep this dataset in COCO or VOC")
        raise DatasetError(record.path, f"image is {stored[0]}x{stored[1]} but the annotations declare "
                           f"{declared[0]}x{declared[1]}")
    if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
        return name
    report.notes.append(f"{record.path}: written as {name}{_SUFFIX.get(kind or '', '.jpg')} (YOLO lists images "
                        "by suffix)")
    return name + _SUFFIX.get(kind or "", ".jpg")


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
        # {'0': a} (quoted keys, as some exporters write them) means {0: a}
        names = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in names.items()}
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
    if value is None or value == "":  # 'test: ""' names no split, as in ultralytics
        default = root / "images" / split
        if default.is_dir():
            return [default]
        raise DatasetError(path, f"no '{split}' key and no {default} folder")
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise DatasetError(path, f"'{split}' must be a path or a list of paths, got {value!r}")
    return [_split_path(root, v) for v in values]


def _split_path(root: Path, value: str) -> Path:
    """``root / value``; for Roboflow's exports (``train: ../train/images`` in a data.yaml beside
    ``train/``) the path without its leading ``../`` where only that exists, as ultralytics reads them."""
    path = root / value
    if not path.exists() and value.startswith("../") and (root / value[3:]).exists():
        return root / value[3:]
    return path


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
        lines = label.read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM (Windows editors) is not text
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
        if len(fields) > 5:
            report.notes[POLYGON] += 1
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
    polygon = len(fields) >= 7 and len(fields) % 2 == 1  # class x1 y1 ... xn yn (n >= 3): ultralytics' segments
    if len(fields) != 5 and not polygon:
        raise DatasetError(label, f"expected 5 fields 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 x3 y3 ...'), "
                                  f"got {len(fields)}", line=number)
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise DatasetError(label, f"non-numeric field in {' '.join(fields)!r}", line=number) from None
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(label, f"NaN or infinite value in {' '.join(fields)!r}", line=number)
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < num_classes:
        raise DatasetError(label, f"class {fields[0]} is out of range 0..{num_classes - 1}", line=number)
    if polygon:  # its bounding box, as ultralytics trains a detector on segment labels (segments2boxes)
        xs, ys = values[1::2], values[2::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return int(cls), (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
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

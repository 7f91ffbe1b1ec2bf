"""COCO JSON reader and writer: ``DIR/images/`` + ``DIR/annotations/{split}.json``.

COCO ``bbox`` is ``[x, y, w, h]`` in pixels and becomes ``xyxy = [x, y, x + w, y + h]`` (no +1).
Categories are sorted by id; class index i is the i-th smallest id. ``iscrowd=1`` boxes become crowd boxes.
Images without annotations are kept as negatives.

COCO holds everything a loaded split has: image ids and sizes, category ids and names, crowd boxes
(VOC's difficult ones become ``iscrowd=1``). Annotation ids are 1..M per file (readers keep no ids).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcos.data.errors import DatasetError
from fcos.data.geometry import fit_box
from fcos.data.records import DetectionData, ImageRecord, LoadReport, left_out_missing, remap_classes, to_coco
from fcos.data.writing import WriteReport, image_names, named_splits, place_image, staged_folder
from fcos.utils.files import write_json

__all__ = ["read_coco", "write_coco"]

CROWD = "crowd (iscrowd=1)"
MAX_SIDE = 2**31 - 1  # beyond any real image; keeps sizes exact as floats


def read_coco(
    annotation_json: str | Path, image_dir: str | Path | None = None, *, class_names: list[str] | None = None,
    skip_missing: bool = False,
) -> DetectionData:
    """Read a COCO detection file.

    Args:
        annotation_json: e.g. ``DIR/annotations/train.json``.
        image_dir: folder that ``file_name`` is relative to; default ``DIR/images`` (the json's grandparent).
        class_names: optional class order to map onto (by name), e.g. the training split's.
        skip_missing: images whose file is not there are left out, named in ``report.skipped_images``.

    Raises:
        DatasetError: naming the file (and annotation id) for any structural or geometric problem.
    """
    path = Path(annotation_json)
    image_dir = Path(image_dir) if image_dir is not None else path.parent.parent / "images"
    doc = _load_json(path)
    category_ids, names = _categories(doc["categories"], path)
    images = _images(doc["images"], path, image_dir, skip_missing)
    report = LoadReport(title=f"coco {path}")
    objects = _annotations(doc["annotations"], path, images, category_ids, report)
    records = [
        ImageRecord(image.path, image_id, image.width, image.height, *objects[image_id])
        for image_id, image in images.items()
    ]
    if skip_missing:
        records = left_out_missing(records, report, path)
    report.tally(records, names)
    data = DetectionData(records, names, category_ids, report, path, "coco")
    return remap_classes(data, class_names) if class_names is not None else data


def write_coco(
    data: DetectionData | Mapping[str, DetectionData], out: str | Path, *, link: bool = True
) -> WriteReport:
    """Write splits as ``out/images/<file>`` + ``out/annotations/<split>.json``, the layout :func:`read_coco`
    (and ``load_annotations(out, split)``) reads back.

    Args:
        data: one split (written as ``train``) or ``{split: data}``; later splits are indexed by the first
            one's classes. Category ids and class order are the first split's.
        out: a new or empty folder (:mod:`fcos.data.writing`: written aside, renamed into place).
        link: hard-link the images (a copy where that is impossible); False: always copy.
    """
    splits = named_splits(data)
    first = next(iter(splits.values()))
    report = WriteReport(Path(out), "coco")
    if first.category_ids != sorted(first.category_ids):
        report.notes.append(f"class order {first.class_names} becomes the order of their category ids "
                            f"{first.category_ids} (COCO readers sort categories by id)")
    with staged_folder(out) as root:
        taken: dict[str, str] = {}
        placed: set[str] = set()
        for split, part in splits.items():
            _check_ids(part, split)
            doc = to_coco(part)
            doc["categories"] = [{"id": int(i), "name": n}
                                 for i, n in zip(first.category_ids, first.class_names, strict=True)]
            names = image_names(part.records, taken)
            for image, record, name in zip(doc["images"], part.records, names, strict=True):
                image["file_name"] = name
                if name not in placed:  # an image in several splits is written once
                    placed.add(name)
                    linked = place_image(record.path, root / "images" / name, link=link)
                    report.linked, report.copied = report.linked + linked, report.copied + (not linked)
            write_json(root / "annotations" / f"{split}.json", doc, indent=None)
            report.images[split] = len(part.records)
            report.boxes[split] = sum(len(r.boxes) for r in part.records)
            report.crowd[split] = sum(len(r.crowd) for r in part.records)
    if any(d.format == "voc" and any(len(r.crowd) for r in d.records) for d in splits.values()):
        report.notes.append("VOC difficult boxes are written as iscrowd=1 (both: ignored by evaluation)")
    return report


def _check_ids(data: DetectionData, split: str) -> None:
    seen: set[int] = set()
    for record in data.records:
        if record.image_id in seen:
            raise DatasetError(data.source, f"split {split!r}: image id {record.image_id} repeats ({record.path})")
        seen.add(record.image_id)


def _annotations(
    annotations: list[Any],
    path: Path,
    images: dict[int, ImageRecord],
    category_ids: list[int],
    report: LoadReport,
) -> dict[int, tuple[list, list, list, list]]:
    """image id -> (boxes, labels, crowd boxes, crowd labels), checked and fitted to their image."""
    class_of = {cat_id: i for i, cat_id in enumerate(category_ids)}
    objects: dict[int, tuple[list, list, list, list]] = {image_id: ([], [], [], []) for image_id in images}
    seen: set[int] = set()
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DatasetError(path, f"{where} is not a JSON object")
        ann_id = _int_field(ann, "id", path, where)
        if ann_id in seen:
            raise DatasetError(path, "duplicate annotation id", annotation_id=ann_id)
        seen.add(ann_id)
        image_id = _int_field(ann, "image_id", path, where, ann_id)
        category_id = _int_field(ann, "category_id", path, where, ann_id)
        if image_id not in images:
            raise DatasetError(path, f"image_id {image_id} is not in images", annotation_id=ann_id)
        if category_id not in class_of:
            raise DatasetError(path, f"category_id {category_id} is not in categories", annotation_id=ann_id)
        x, y, w, h = _bbox(ann.get("bbox"), path, ann_id)
        crowd = _crowd_flag(ann.get("iscrowd", 0), path, ann_id)
        image = images[image_id]
        shown = f"bbox {[x, y, w, h]}"
        box = fit_box(
            (x, y, x + w, y + h), image.width, image.height, report, path, annotation_id=ann_id, shown=shown
        )
        if box is None:
            continue
        boxes, labels, crowd_boxes, crowd_labels = objects[image_id]
        if crowd:
            crowd_boxes.append(box)
            crowd_labels.append(class_of[category_id])
            report.ignored[CROWD] += 1
        else:
            boxes.append(box)
            labels.append(class_of[category_id])
    return objects


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(path, "not UTF-8 text (is this really a COCO JSON file?)") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read the file: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(
            path, f"invalid JSON at column {e.colno}: {e.msg} (truncated or corrupt file?)", line=e.lineno
        ) from None
    if not isinstance(doc, dict):
        raise DatasetError(
            path, "the top level must be a JSON object with 'images', 'annotations', 'categories'"
        )
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DatasetError(
                path, f"missing the '{key}' list (a COCO file needs images, annotations, categories)"
            )
        if not isinstance(doc[key], list):
            raise DatasetError(path, f"'{key}' must be a list, got {type(doc[key]).__name__}")
    return doc


def _as_int(value: Any) -> int | None:
    """An int64, or a float with an integral value (some exporters write 640.0); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    value = int(value)
    return value if -(2**63) <= value < 2**63 else None  # ids become int64 tensors


def _int_field(obj: dict[str, Any], key: str, path: Path, where: str, ann_id: int | None = None) -> int:
    if key not in obj:
        raise DatasetError(path, f"{where} has no '{key}'", annotation_id=ann_id)
    value = _as_int(obj[key])
    if value is None:
        shown = repr(obj[key]) if len(repr(obj[key])) < 40 else f"{repr(obj[key])[:40]}..."
        raise DatasetError(
            path, f"{where}: '{key}' must be a 64-bit integer, got {shown}", annotation_id=ann_id
        )
    return value


def _categories(categories: list[Any], path: Path) -> tuple[list[int], list[str]]:
    by_id: dict[int, str] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict):
            raise DatasetError(path, f"categories[{i}] is not a JSON object")
        cat_id = _int_field(cat, "id", path, f"categories[{i}]")
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            raise DatasetError(
                path, f"categories[{i}] (id {cat_id}) needs a non-empty string 'name', got {name!r}"
            )
        if cat_id in by_id:
            raise DatasetError(path, f"duplicate category id {cat_id} ({by_id[cat_id]!r} and {name!r})")
        if name in by_id.values():
            raise DatasetError(path, f"duplicate category name {name!r}")
        by_id[cat_id] = name
    if not by_id:
        raise DatasetError(path, "'categories' is empty: a detection dataset needs at least one class")
    ids = sorted(by_id)
    return ids, [by_id[i] for i in ids]


def _images(images: list[Any], path: Path, image_dir: Path, missing_ok: bool = False) -> dict[int, ImageRecord]:
    """image id -> record without boxes, in file order; checks ids, sizes and that each file exists
    (``missing_ok``: the caller leaves out those that do not)."""
    out: dict[int, ImageRecord] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            raise DatasetError(path, f"images[{i}] is not a JSON object")
        image_id = _int_field(img, "id", path, f"images[{i}]")
        if image_id in out:
            raise DatasetError(path, f"duplicate image id {image_id} (images[{i}])")
        width = _int_field(img, "width", path, f"images[{i}] (id {image_id})")
        height = _int_field(img, "height", path, f"images[{i}] (id {image_id})")
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise DatasetError(path, f"images[{i}] (id {image_id}) has size {width}x{height}")
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(
                path, f"images[{i}] (id {image_id}) needs a string 'file_name', got {file_name!r}"
            )
        file = image_dir / file_name
        if not file.is_file() and not missing_ok:
            raise DatasetError(file, f"image file not found (image id {image_id} in {path})")
        out[image_id] = ImageRecord(file, image_id, width, height)
    return out


def _bbox(bbox: Any, path: Path, ann_id: int) -> tuple[float, float, float, float]:
    numbers = isinstance(bbox, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in bbox
    )
    try:
        if numbers and len(bbox) == 4:
            x, y, w, h = (float(v) for v in bbox)
            return x, y, w, h
    except OverflowError:  # an integer beyond float range
        pass
    shown = repr(bbox) if len(repr(bbox)) < 60 else f"{repr(bbox)[:60]}..."
    raise DatasetError(
        path, f"'bbox' must be a list of 4 numbers [x, y, w, h], got {shown}", annotation_id=ann_id
    )


def _crowd_flag(value: Any, path: Path, ann_id: int) -> bool:
    if value not in (0, 1) or isinstance(value, float):
        raise DatasetError(path, f"'iscrowd' must be 0 or 1, got {value!r}", annotation_id=ann_id)
    return bool(value)

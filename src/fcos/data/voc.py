"""Pascal VOC reader and writer: ``root/Annotations/*.xml``, ``root/ImageSets/Main/<split>.txt``, ``root/JPEGImages/``.

Box coordinates are used as written, as xyxy pixels: no "-1" (the VOC devkit's 1-based convention would
shift every box by one pixel, less than labelling noise, and the other formats do not do it either).
Objects marked ``<difficult>1</difficult>`` become crowd boxes: not trained on, and ignored by COCO-style
evaluation (VOC's own metric also neither rewards nor penalises detections of difficult objects).

What VOC cannot hold (:func:`write_voc` reports each): category ids (classes are 1..C in alphabetical
order when read back), a class without any object, image ids (1..N in split-file order). Coordinates are
written as exact numbers (up to 9 significant digits: a float32 box comes back bit for bit), integers
where the box is; a tool that parses them with ``int()`` needs integral boxes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fcos.data.errors import DatasetError
from fcos.data.geometry import fit_box
from fcos.data.images import IMAGE_SUFFIXES
from fcos.data.records import DetectionData, ImageRecord, LoadReport
from fcos.data.writing import (
    WriteReport,
    image_names,
    named_splits,
    place_image,
    renumbered,
    staged_folder,
    write_file,
)

__all__ = ["read_voc", "write_voc"]

DIFFICULT = "difficult (VOC)"


@dataclass
class _Object:
    name: str
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass
class _Annotation:
    xml: Path
    image: Path
    width: int
    height: int
    objects: list[_Object]


def read_voc(
    root: str | Path, split: str | None = "train", *, class_names: list[str] | None = None, skip_missing: bool = False
) -> DetectionData:
    """Read one split of a VOC-layout dataset.

    Args:
        root: folder holding ``Annotations/``, ``ImageSets/Main/`` and ``JPEGImages/``.
        split: name of the split file ``ImageSets/Main/<split>.txt`` (one image id per line); None: every
            ``Annotations/*.xml`` in name order (a folder not divided into splits yet).
        class_names: class order; default the sorted names found in this split. Pass the training split's
            names when loading validation so that indices agree. Unknown names are then an error.
        skip_missing: images whose file is not there are left out, named in ``report.skipped_images``.

    Image ids are 1..N in split-file order.
    """
    root = Path(root)
    if split is None:
        split_file = root / "Annotations"
        entries = _all_annotations(split_file)
    else:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        entries = _read_split(split_file)
    annotations = [_parse(root, stem, split_file, line, skip_missing) for line, stem in entries]
    missing = []
    if skip_missing:  # without it, _parse raised for the first missing image
        there = [ann.image.is_file() for ann in annotations]
        missing = [f"{a.image}: image file not found (named by {a.xml})" for a, ok in zip(annotations, there) if not ok]
        if annotations and not any(there):
            raise DatasetError(split_file, f"none of the {len(missing)} images it lists is there ({missing[0]}, ...)")
        annotations = [ann for ann, ok in zip(annotations, there, strict=True) if ok]
    found = sorted({obj.name for ann in annotations for obj in ann.objects})
    names = list(class_names) if class_names is not None else found
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise DatasetError(split_file, f"the given class_names {names} contain duplicates")
    if not names:
        raise DatasetError(split_file, "no objects in this split, so no class names: pass class_names")
    report = LoadReport(title=f"voc {split_file}", skipped_images=missing)
    records = []
    for image_id, ann in enumerate(annotations, start=1):
        boxes, labels, crowd, crowd_labels = [], [], [], []
        for k, obj in enumerate(ann.objects, start=1):
            if obj.name not in index:
                raise DatasetError(ann.xml, f"object {k}: class {obj.name!r} is not in class_names {names}")
            shown = f"object {k} ({obj.name}) bndbox [{', '.join(f'{v:g}' for v in obj.box)}]"
            box = fit_box(obj.box, ann.width, ann.height, report, ann.xml, shown=shown)
            if box is None:
                continue
            if obj.difficult:
                crowd.append(box)
                crowd_labels.append(index[obj.name])
                report.ignored[DIFFICULT] += 1
            else:
                boxes.append(box)
                labels.append(index[obj.name])
        records.append(
            ImageRecord(ann.image, image_id, ann.width, ann.height, boxes, labels, crowd, crowd_labels)
        )
    report.tally(records, names)
    return DetectionData(records, names, list(range(1, len(names) + 1)), report, split_file, "voc")


def write_voc(
    data: DetectionData | Mapping[str, DetectionData], out: str | Path, *, link: bool = True
) -> WriteReport:
    """Write splits as ``out/JPEGImages/<file>``, ``out/Annotations/<stem>.xml`` and
    ``out/ImageSets/Main/<split>.txt``, the layout :func:`read_voc` reads back. Crowd boxes become
    ``<difficult>1</difficult>`` objects.

    Args:
        data: one split (written as ``train``) or ``{split: data}``; later splits are indexed by the first
            one's classes.
        out: a new or empty folder (:mod:`fcos.data.writing`: written aside, renamed into place).
        link: hard-link the images (a copy where that is impossible); False: always copy.

    Raises:
        DatasetError: an image in two splits with different boxes (VOC has one annotation file per image).
    """
    splits = named_splits(data)
    first = next(iter(splits.values()))
    report = WriteReport(Path(out), "voc")
    _voc_notes(splits, report)
    with staged_folder(out) as root:
        taken: dict[str, str] = {}
        written: dict[str, str] = {}  # file name -> its XML
        for split, part in splits.items():
            names = image_names(part.records, taken, flat=True)
            for record, name in zip(part.records, names, strict=True):
                xml = _voc_xml(record, name, first.class_names)
                if written.setdefault(name, xml) != xml:
                    raise DatasetError(record.path, f"is in two splits with different boxes (split {split!r}); "
                                       "VOC keeps one annotation file per image")
                if (root / "JPEGImages" / name).exists():
                    continue
                write_file(root / "Annotations" / f"{Path(name).stem}.xml", xml)
                linked = place_image(record.path, root / "JPEGImages" / name, link=link)
                report.linked, report.copied = report.linked + linked, report.copied + (not linked)
            write_file(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{Path(n).stem}\n" for n in names))
            report.images[split] = len(part.records)
            report.boxes[split] = sum(len(r.boxes) for r in part.records)
            report.crowd[split] = sum(len(r.crowd) for r in part.records)
    return report


def _voc_notes(splits: dict[str, DetectionData], report: WriteReport) -> None:
    first = next(iter(splits.values()))
    used = set()
    for part in splits.values():
        for record in part.records:
            used.update(record.labels.tolist(), record.crowd_labels.tolist())
    unused = [name for i, name in enumerate(first.class_names) if i not in used]
    if unused:
        report.lost["classes without objects (VOC records a class only as an object's name)"] = len(unused)
        report.notes.append(f"classes without objects, not written: {unused}")
    if first.class_names != sorted(first.class_names):
        report.notes.append(f"class order {first.class_names} becomes alphabetical (VOC stores names only)")
    if first.category_ids != list(range(1, first.num_classes + 1)):
        report.notes.append(f"category ids {first.category_ids} become 1..C (VOC stores names only)")
    if any(renumbered(part) for part in splits.values()):
        report.notes.append("image ids become 1..N in split-file order (VOC has none)")
    if first.format == "coco" and any(len(r.crowd) for part in splits.values() for r in part.records):
        report.notes.append("COCO crowd boxes (iscrowd=1) are written as difficult objects (both: ignored by "
                            "evaluation)")


def _voc_xml(record: ImageRecord, name: str, class_names: list[str]) -> str:
    top = ET.Element("annotation")
    ET.SubElement(top, "folder").text = "JPEGImages"
    ET.SubElement(top, "filename").text = name
    size = ET.SubElement(top, "size")
    for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(top, "segmented").text = "0"
    for boxes, labels, difficult in ((record.boxes, record.labels, "0"), (record.crowd, record.crowd_labels, "1")):
        for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
            obj = ET.SubElement(top, "object")
            ET.SubElement(obj, "name").text = class_names[label]
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = difficult
            bndbox = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ET.SubElement(bndbox, tag).text = f"{value:.9g}"  # 9 digits: any float32 exactly
    ET.indent(top)
    return ET.tostring(top, encoding="unicode") + "\n"


def _all_annotations(folder: Path) -> list[tuple[int, str]]:
    """(0, stem) of every ``*.xml`` in ``folder``, in name order."""
    stems = sorted(p.stem for p in folder.glob("*.xml"))
    if not stems:
        raise DatasetError(folder, "no .xml annotation files")
    return [(0, stem) for stem in stems]


def _read_split(split_file: Path) -> list[tuple[int, str]]:
    """(line number, image id) for each non-blank line: the line, less the trailing -1/0/1 column of a
    class split file (``aeroplane_train.txt``); an id may hold spaces."""
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(split_file, "split file not found (expected ImageSets/Main/<split>.txt)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(split_file, f"cannot read the split file: {e}") from None
    out, seen = [], {}
    for number, text in enumerate(lines, start=1):
        image_id = text.strip()
        fields = image_id.rsplit(None, 1)
        if len(fields) == 2 and fields[1] in ("-1", "0", "1"):
            image_id = fields[0]
        if not image_id:
            continue
        if image_id in seen:
            raise DatasetError(split_file, f"image id {image_id!r} repeats line {seen[image_id]}", line=number)
        seen[image_id] = number
        out.append((number, image_id))
    if not out:
        raise DatasetError(split_file, "the split file lists no images")
    return out


def _image_of_id(folder: Path, stem: str) -> Path | None:
    """``<stem>.jpg`` (torchvision's VOC rule), else ``<stem>`` with another image suffix, in ``folder``:
    where a <filename> names no file there (no suffix, another case or suffix, a Windows path)."""
    for suffix in (".jpg", *IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _parse(root: Path, stem: str, split_file: Path, line: int, missing_ok: bool = False) -> _Annotation:
    xml = root / "Annotations" / f"{stem}.xml"
    try:
        tree = ET.parse(xml)
    except FileNotFoundError:
        raise DatasetError(xml, f"annotation file not found (listed in {split_file} line {line})") from None
    except ET.ParseError as e:
        raise DatasetError(xml, f"malformed XML: {e}", line=e.position[0]) from None
    except OSError as e:
        raise DatasetError(xml, f"cannot read the file: {e.strerror or e}") from None
    top = tree.getroot()
    size = top.find("size")
    if size is None:
        raise DatasetError(xml, "missing <size> (width and height are needed to check the boxes)")
    width, height = _integer(size, "width", xml, "size"), _integer(size, "height", xml, "size")
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise DatasetError(xml, f"<size> is {width}x{height}; it must be the real image size")
    filename = (top.findtext("filename") or "").strip() or f"{stem}.jpg"
    image = root / "JPEGImages" / filename
    if not image.is_file():
        image = _image_of_id(root / "JPEGImages", stem) or image
    if not image.is_file() and not missing_ok:
        raise DatasetError(image, f"image file not found (named by {xml})")
    objects = []
    for k, obj in enumerate(top.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(xml, f"object {k} has no <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(xml, f"object {k} ({name}) has no <bndbox>")
        box = tuple(
            _number(bndbox, tag, xml, f"object {k} ({name})") for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise DatasetError(xml, f"object {k} ({name}): <difficult> must be 0 or 1, got {difficult!r}")
        objects.append(_Object(name, box, difficult == "1"))  # type: ignore[arg-type]
    return _Annotation(xml, image, width, height, objects)


def _number(parent: ET.Element, tag: str, xml: Path, where: str) -> float:
    text = parent.findtext(tag)
    if text is None:
        raise DatasetError(xml, f"{where}: missing <{tag}>")
    try:
        return float(text)
    except ValueError:
        raise DatasetError(xml, f"{where}: <{tag}> {text.strip()!r} is not a number") from None


def _integer(parent: ET.Element, tag: str, xml: Path, where: str) -> int:
    value = _number(parent, tag, xml, where)
    if not value.is_integer():
        raise DatasetError(xml, f"{where}: <{tag}> {value:g} is not a whole number of pixels")
    return int(value)

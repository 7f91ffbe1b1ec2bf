"""Builders for small (often deliberately broken) datasets in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def _write_image(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "P":
        image = image.quantize(16)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """write_image(path, width, height, mode="RGB") -> path: a random-pixel image file."""
    return _write_image


@pytest.fixture
def make_coco(tmp_path: Path) -> Callable[..., Path]:
    """make_coco(doc_or_None, images=..., annotations=..., categories=...) -> annotations/train.json.

    Writes ``tmp_path/coco/images/<file_name>`` for every image entry that has a usable file name and size,
    so that only the deliberately broken part of a test dataset is broken.
    """

    def make(
        images: list[dict[str, Any]] | None = None,
        annotations: list[dict[str, Any]] | None = None,
        categories: list[dict[str, Any]] | None = None,
        *,
        doc: Any = None,
        text: str | None = None,
    ) -> Path:
        root = tmp_path / "coco"
        if images is None:
            images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
        if categories is None:
            categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
        for image in images:
            name, w, h = image.get("file_name"), image.get("width"), image.get("height")
            if isinstance(name, str) and isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
                _write_image(root / "images" / name, w, h)
        if doc is None:
            doc = {"images": images, "annotations": annotations or [], "categories": categories}
        path = root / "annotations" / "train.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text is not None else json.dumps(doc))
        return path

    return make


def ann(
    ann_id: int, bbox: list[Any], image_id: int = 1, category_id: int = 1, **extra: Any
) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


@pytest.fixture
def coco_ann() -> Callable[..., dict[str, Any]]:
    """coco_ann(id, bbox, image_id=1, category_id=1, **extra) -> annotation dict."""
    return ann


@pytest.fixture
def make_voc(tmp_path):
    """make_voc({stem: xml_text}) -> root, with a 40x30 JPEGImages/<stem>.jpg per stem and a train split."""

    def make(files: dict[str, str], split_lines: list[str] | None = None) -> Path:
        root = tmp_path / "voc"
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        for stem, text in files.items():
            (root / "Annotations" / f"{stem}.xml").write_text(text)
            _write_image(root / "JPEGImages" / f"{stem}.jpg", 40, 30)
        lines = split_lines if split_lines is not None else list(files)
        (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(lines) + "\n")
        return root

    return make


@pytest.fixture
def make_yolo(tmp_path):
    """make_yolo({stem: label_text or None}, yaml=...) -> root with 40x20 images in images/train."""

    def make(labels: dict[str, str | None], yaml: str | None = "names: [cat, dog]\n") -> Path:
        root = tmp_path / "yolo"
        for stem, text in labels.items():
            _write_image(root / "images" / "train" / f"{stem}.png", 40, 20)
            if text is not None:
                path = root / "labels" / "train" / f"{stem}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        if yaml is not None:
            (root / "data.yaml").write_text(yaml)
        return root

    return make


@pytest.fixture
def make_voc_once(make_voc) -> tuple[Path, str]:
    """(root, xml text) of a one-image VOC dataset whose a.xml tests may rewrite."""
    xml = (
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>30</height></size>"
        "<object><name>cat</name><difficult>0</difficult>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>25</ymax></bndbox></object></annotation>"
    )
    return make_voc({"a": xml}), xml

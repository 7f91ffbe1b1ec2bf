"""Rebuild the vendored test images from the whole datasets (run by hand, never by the tests):

    python tests/assets/make_subset.py /path/to/shared/data

Keeps every 10th training and every 5th validation image of ``fruit`` (plus the three files the CLI
round-trip copies by name) and every 20th training / every 5th validation image of ``raccoon`` (plus
its largest photo, 2000 px wide, for the resize path); images are copied byte for byte, annotation
files restricted to them (ids unchanged), raccoon's VOC XML and fruit's YOLO labels copied for the
kept images (YOLO images are symlinks to ``images/``), LICENSE and README kept.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = {  # dataset -> split -> (keep every n-th image, file names kept in any case)
    "fruit": {"train": (10, {"apple_1.jpg", "mixed_1.jpg"}), "val": (5, {"banana_1.jpg"})},
    "raccoon": {"train": (20, {"raccoon-183.jpg"}), "val": (5, set())},
}


def subset(source: Path, name: str) -> None:
    src, dst = source / name, HERE / name
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "annotations").mkdir(parents=True)
    (dst / "images").mkdir()
    for extra in ("LICENSE", "README.md"):
        shutil.copy(src / extra, dst / extra)
    for split, (every, named) in RULES[name].items():
        doc = json.loads((src / "annotations" / f"{split}.json").read_text())
        images = [im for k, im in enumerate(doc["images"]) if k % every == 0 or im["file_name"] in named]
        ids = {im["id"] for im in images}
        doc["images"] = images
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
        (dst / "annotations" / f"{split}.json").write_text(json.dumps(doc, indent=1) + "\n")
        for image in images:
            shutil.copy(src / "images" / image["file_name"], dst / "images" / image["file_name"])
            stem = Path(image["file_name"]).stem
            if name == "raccoon":
                xml = dst / "original" / "annotations" / f"{stem}.xml"
                xml.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / "original" / "annotations" / f"{stem}.xml", xml)
            else:
                label = dst / "yolo" / "labels" / split / f"{stem}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / "yolo" / "labels" / split / f"{stem}.txt", label)
                link = dst / "yolo" / "images" / split / image["file_name"]
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path("../../../images") / image["file_name"])
    if name == "fruit":
        shutil.copy(src / "yolo" / "data.yaml", dst / "yolo" / "data.yaml")


if __name__ == "__main__":
    for dataset in RULES:
        subset(Path(sys.argv[1]), dataset)

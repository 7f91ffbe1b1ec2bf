"""Datasets for FCOS: COCO / VOC / YOLO readers, synthetic shapes, transforms, dataset and loader.

Typical use::

    train = load_annotations("data/fruit", "train")
    val = load_annotations("data/fruit", "val", class_names=train.class_names)
    loader = build_loader(DetectionDataset(train, Compose([RandomHorizontalFlip(), PhotometricJitter()])),
                          batch_size=8, shuffle=True, workers=2)
    for images, targets in loader: ...   # list of [3, H, W] in [0, 1], list of target dicts
"""

from fcos.data.check import check_dataset
from fcos.data.coco import read_coco, write_coco
from fcos.data.convert import convert_dataset
from fcos.data.dataset import DetectionDataset, decode_image, load_image
from fcos.data.errors import DatasetError
from fcos.data.layouts import LAYOUTS, find_splits, load_annotations, load_splits
from fcos.data.loader import build_loader, collate
from fcos.data.records import DetectionData, ImageRecord, LoadReport, remap_classes, to_coco
from fcos.data.sampling import repeat_factors
from fcos.data.shapes import generate_shapes
from fcos.data.split import split_dataset
from fcos.data.stats import dataset_stats
from fcos.data.transforms import (
    Compose,
    PhotometricJitter,
    RandomHorizontalFlip,
    Resize,
    hflip,
    photometric,
    resize,
)
from fcos.data.voc import read_voc, write_voc
from fcos.data.yolo import read_yolo, write_yolo

__all__ = [
    "Compose",
    "DatasetError",
    "DetectionData",
    "DetectionDataset",
    "ImageRecord",
    "LAYOUTS",
    "LoadReport",
    "PhotometricJitter",
    "RandomHorizontalFlip",
    "Resize",
    "build_loader",
    "check_dataset",
    "collate",
    "convert_dataset",
    "dataset_stats",
    "decode_image",
    "find_splits",
    "generate_shapes",
    "hflip",
    "load_annotations",
    "load_image",
    "load_splits",
    "photometric",
    "read_coco",
    "read_voc",
    "read_yolo",
    "remap_classes",
    "repeat_factors",
    "resize",
    "split_dataset",
    "to_coco",
    "write_coco",
    "write_voc",
    "write_yolo",
]

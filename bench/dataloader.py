"""dataloader: training images/s from a real dataset, augmentations on, 0 and 2 workers.

Ours: ``DetectionDataset`` (validated records, resize to the model's size, flip, photometric jitter).
Reference: ``torchvision.datasets.CocoDetection`` wrapped for transforms v2 with the equivalent
pipeline (resize, flip, colour jitter, float conversion). Both go through a DataLoader with batch 8
over the whole training split; the first epoch warms the workers up.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from bench.common import dataset_path, emit
from fcos.config import InputConfig
from fcos.data import DetectionDataset, collate, load_annotations
from fcos.data.pipeline import training_transforms

SIZE = 512


def _reference_dataset(root: Path):
    from torchvision import datasets
    from torchvision.transforms import v2

    transforms = v2.Compose([
        v2.ToImage(),
        v2.Resize(SIZE - 1, max_size=SIZE),  # longer side to 512, as fcos's Resize(512, 512)
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(0.2, 0.2, 0.3, 0.05),
        v2.ToDtype(torch.float32, scale=True),
    ])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' loading chatter
        dataset = datasets.CocoDetection(str(root / "images"), str(root / "annotations" / "train.json"), transforms=transforms)
    return datasets.wrap_dataset_for_transforms_v2(dataset, target_keys=("boxes", "labels", "image_id"))


def _images_per_second(dataset, workers: int, epochs: int) -> float:
    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up epoch (worker start, file cache)
        pass
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for images, _ in loader:
            count += len(images)
    return count / (time.perf_counter() - start)


def run(quick: bool = False) -> list[dict[str, Any]]:
    root = dataset_path("fruit", quick)
    data = load_annotations(root, "train")
    if quick:
        data.records = data.records[:16]
    ours = DetectionDataset(data, training_transforms(InputConfig(min_size=SIZE, max_size=SIZE)))
    reference = _reference_dataset(root)
    if quick:
        reference = torch.utils.data.Subset(reference, range(16))
    records = []
    for workers in (0, 2):
        epochs = 1 if quick else 2
        ours_ips = _images_per_second(ours, workers, epochs)
        ref_ips = _images_per_second(reference, workers, epochs)
        params = {"dataset": "fruit/train", "images": len(ours), "size": SIZE, "workers": workers, "batch": 8}
        records.append(emit("dataloader", ours_ips, ref_ips, "img/s", params, higher_is_better=True))
    return records


if __name__ == "__main__":
    run()

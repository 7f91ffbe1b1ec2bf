"""dataloader: training images/s from a real dataset, augmentations on, 0 and 2 workers; feed: the
loader alone against the training step it feeds.

Ours: ``DetectionDataset`` (validated records, resize to the model's size, flip, photometric jitter).
Reference: ``torchvision.datasets.CocoDetection`` wrapped for transforms v2 with the equivalent
pipeline (resize, flip, colour jitter, float conversion). Both go through a DataLoader with batch 8
over the whole training split; the first epoch warms the workers up.

``feed`` (issue 31's "loader images/s alone against the step's images/s"): ours is fcos's training
loader alone at the device's default worker count (``fcos.data.loader.default_workers``), the
reference the training update it feeds (the ``make demo`` model at the same input size, batch 8,
bf16 autocast where the CPU has native bf16, as ``make demo`` trains): ``ratio`` > 1 means the loader
keeps up with the step. The GPU's rows are ``bench.gpu_speed``'s ``gpu_feed``.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from bench.common import dataset_path, emit, time_ms
from fcos.config import InputConfig
from fcos.data import DetectionDataset, build_loader, collate, load_annotations
from fcos.data.loader import default_workers
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
    return _loader_images_per_second(loader, epochs)


def _loader_images_per_second(loader, epochs: int) -> float:
    for _ in loader:  # warm-up epoch (worker start, file cache)
        pass
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for images, _ in loader:
            count += len(images)
    return count / (time.perf_counter() - start)


def _ours(quick: bool):
    """fcos's training dataset of fruit/train at SIZE (16 images with ``quick``), and its records."""
    data = load_annotations(dataset_path("fruit", quick), "train")
    if quick:
        data.records = data.records[:16]
    return data, DetectionDataset(data, training_transforms(InputConfig(min_size=SIZE, max_size=SIZE)))


def _step_images_per_second(loader, classes: int, quick: bool) -> float:
    """Images/s of the make demo model's training update (fused AdamW, autocast as make demo) on one batch."""
    from fcos import FCOS
    from fcos.engine.demo import DEMO_MODEL
    from fcos.engine.train_config import recipe_model
    from fcos.model.options import model_config_for
    from fcos.utils.devices import autocast_dtype

    spec = {**DEMO_MODEL, "img_size": SIZE, **({"fpn_channels": 32, "head_convs": 1} if quick else {})}
    model = FCOS(model_config_for(classes, **spec, **recipe_model("cpu"))).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, fused=True)
    dtype, _ = autocast_dtype(torch.device("cpu"), True)
    images, targets = next(iter(loader))

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            total = sum(model(images, targets).values())
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return len(images) * 1000.0 / time_ms(step, warmup=1 if quick else 2, repeat=2 if quick else 7)


def feed(quick: bool = False) -> list[dict[str, Any]]:
    data, dataset = _ours(quick)
    workers = default_workers("cpu")
    loader = build_loader(dataset, 8, shuffle=True, workers=workers, drop_last=True)
    loader_ips = _loader_images_per_second(loader, 1 if quick else 2)
    step_ips = _step_images_per_second(loader, len(data.class_names), quick)
    params = {"dataset": "fruit/train", "size": SIZE, "workers": workers, "batch": 8, "device": "cpu",
              "step": "make demo model (resnet18, fpn 128, 2 head convs), autocast as make demo",
              "threads": torch.get_num_threads()}
    return [emit("feed", loader_ips, step_ips, "img/s", params, higher_is_better=True)]


def run(quick: bool = False) -> list[dict[str, Any]]:
    _, ours = _ours(quick)
    reference = _reference_dataset(dataset_path("fruit", quick))
    if quick:
        reference = torch.utils.data.Subset(reference, range(16))
    records = []
    for workers in (0, 2):
        epochs = 1 if quick else 2
        ours_ips = _images_per_second(ours, workers, epochs)
        ref_ips = _images_per_second(reference, workers, epochs)
        params = {"dataset": "fruit/train", "images": len(ours), "size": SIZE, "workers": workers, "batch": 8}
        records.append(emit("dataloader", ours_ips, ref_ips, "img/s", params, higher_is_better=True))
    return records + feed(quick)


if __name__ == "__main__":
    run()

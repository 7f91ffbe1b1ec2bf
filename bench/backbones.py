"""backbones: speed against capacity of every registered backbone, FCOS around it, on the CPU.

For each backbone at 512 x 512: parameters (backbone and whole model), PyTorch inference and ONNX
Runtime inference (each a whole :class:`fcos.predict.Predictor` call on one image: preprocessing,
network, decoding, NMS) and one training step (batch 2, forward + backward + SGD update). The reference
of every record is the default ResNet-50 measured in the same run (ratio > 1: faster than ResNet-50).
Random init, official preset, 80 classes; the focal-loss prior leaves every score under the threshold,
so the times are the networks'. Each backbone alternates rounds with the reference (the median of the rounds).
``--quick`` runs two small backbones against ResNet-18 at 128 px to check that it runs.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import compare_ms, emit
from fcos.config import official
from fcos.export import export_onnx
from fcos.model.backbones import BACKBONES
from fcos.model.detector import FCOS
from fcos.predict import Predictor
from fcos.weights.checkpoint import model_checkpoint, save_checkpoint

REFERENCE = "resnet50"  # the default backbone


def _config(backbone: str, size: int, quick: bool):
    small = {"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1} if quick else {}
    return official(num_classes=80, backbone=backbone, **{"input.min_size": size, "input.max_size": size, **small})


def _targets(batch: int, size: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=gen) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        wh = torch.rand(10, 2, generator=gen) * size * 0.5 + 16
        xy = torch.rand(10, 2, generator=gen) * (size - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 80, (10,), generator=gen)})
    return images, targets


def _train_step(model: FCOS, optimizer: torch.optim.Optimizer, images, targets) -> None:
    sum(model(images, targets).values()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _runners(backbone: str, size: int, quick: bool, folder: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """Callables for PyTorch / onnxruntime inference and a training step, and parameter counts (millions)."""
    torch.manual_seed(0)
    model = FCOS(_config(backbone, size, quick)).eval()
    sizes = {"backbone_params_m": sum(p.numel() for p in model.backbone.parameters()) / 1e6,
             "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    name = backbone.replace(":", "_")
    weights = save_checkpoint(model_checkpoint(model, [f"class{i}" for i in range(80)]), folder / f"{name}.pt")
    onnx_path = export_onnx(weights, folder / f"{name}.onnx")
    train_model = FCOS(_config(backbone, size, quick)).train()
    optimizer = torch.optim.SGD([p for p in train_model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    images, targets = _targets(2, size)
    runners = {"inference": partial(Predictor(weights), image), "onnx_inference": partial(Predictor(onnx_path), image),
               "train_step": partial(_train_step, train_model, optimizer, images, targets)}
    return runners, sizes


def run(quick: bool = False) -> list[dict[str, Any]]:
    size = 128 if quick else 512
    names = ["mobilenet_v3_large", "regnet_y_400mf"] if quick else list(BACKBONES)
    reference_name = "resnet18" if quick else REFERENCE
    timing = {"rounds": 1, "warmup": 1, "repeat": 2} if quick else {"rounds": 3, "warmup": 1, "repeat": 3}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        reference, _ = _runners(reference_name, size, quick, Path(tmp))
        for name in names:
            runners, sizes = _runners(name, size, quick, Path(tmp))
            for metric, batch in (("inference", 1), ("onnx_inference", 1), ("train_step", 2)):
                # Alternating rounds against the reference: load from other processes hits both alike.
                ours, ref = compare_ms(runners[metric], reference[metric], **timing)
                params = {"backbone": name, "reference": reference_name, "image": [size, size], "batch": batch,
                          "threads": torch.get_num_threads(), "device": "cpu"}
                records.append(emit(f"backbone_{metric}", ours, ref, "ms", params, **sizes))
    return records


if __name__ == "__main__":
    run()

"""Helpers for the deployment tests: a tiny untrained detector that still produces many detections, real images."""

from __future__ import annotations

from pathlib import Path

import torch

from fcos import FCOS, official
from fcos.engine.checkpoint import model_checkpoint, save_checkpoint

CLASS_NAMES = ["apple", "banana", "orange"]


def make_checkpoint(path: Path, seed: int = 0, **changes) -> Path:
    """resnet18, 32 FPN channels, one conv per tower, images resized to 256..320 px. The raised
    classification bias makes an untrained model return plenty of detections; the raised box bias
    gives boxes of a visible size."""
    torch.manual_seed(seed)
    config = official(num_classes=3, backbone="resnet18", **{
        "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1, "input.min_size": 256, "input.max_size": 320, **changes})
    model = FCOS(config).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-3, 0)
        model.head.box_pred.bias.uniform_(1.0, 3.0)
    return save_checkpoint(model_checkpoint(model, CLASS_NAMES, [11, 22, 33]), path)


def real_images(shared_data: Path, count: int) -> list[Path]:
    """``count`` real images, alternating fruit and raccoon, spread over each folder."""
    fruit = sorted((shared_data / "fruit" / "images").glob("*.jpg"))
    raccoon = sorted((shared_data / "raccoon" / "images").glob("*.jpg"))
    half = count // 2
    picks = fruit[:: max(1, len(fruit) // half)][:half] + raccoon[:: max(1, len(raccoon) // (count - half))][: count - half]
    assert len(picks) == count
    return picks


def assert_same_detections(a: dict, b: dict, box_tol: float = 0.5, score_tol: float = 1e-4) -> None:
    """Same detections up to numeric noise: equal counts and a one-to-one match with the same label,
    boxes within ``box_tol`` px and scores within ``score_tol`` (near-equal scores may swap order)."""
    import numpy as np

    assert len(a["scores"]) == len(b["scores"]), (len(a["scores"]), len(b["scores"]))
    used = np.zeros(len(b["scores"]), dtype=bool)
    for box, score, label in zip(a["boxes"], a["scores"], a["labels"]):
        close = (
            ~used
            & (np.asarray(b["labels"]) == label)
            & (np.abs(np.asarray(b["boxes"]) - box).max(axis=1) <= box_tol)
            & (np.abs(np.asarray(b["scores"]) - score) <= score_tol)
        )
        assert close.any(), f"no match for label {label} box {box} score {score}"
        used[np.flatnonzero(close)[0]] = True

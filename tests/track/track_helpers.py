"""Helpers for the tracking tests: a stub predictor that "detects" a sequence's ground truth, and a tiny
untrained FCOS checkpoint for the one test that runs a real Predictor."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fcos.data.images import read_image
from fcos.data.mot import read_mot
from fcos.data.shapes import CLASSES


class GroundTruthPredictor:
    """Called like fcos.predict.Predictor: returns the ground truth of the frame it is given (found by its
    pixels among ``frames_dir``'s files, else the next frame in order, for videos), boxes moved by up to
    ``noise`` px. Objects seen >= 0.5 score 0.6-1.0; less seen, 0.2-0.45 (what ByteTrack's second pass is
    for); ``empty=True`` detects nothing."""

    class_names = list(CLASSES)

    def __init__(self, gt: Path, frames_dir: Path | None = None, *, noise: float = 1.0, seed: int = 0,
                 empty: bool = False) -> None:
        self.gt, self.noise, self.empty = read_mot(gt), noise, empty
        self.rng = np.random.default_rng(seed)
        self.by_pixels = {}
        if frames_dir is not None:
            for k, path in enumerate(sorted(frames_dir.iterdir()), 1):
                self.by_pixels[hashlib.sha1(read_image(path).tobytes()).hexdigest()] = k
        self.calls: list[int] = []
        self.confs: list[float | None] = []

    def __call__(self, image, conf=None):
        frame = self.by_pixels.get(hashlib.sha1(image.tobytes()).hexdigest(), len(self.calls) + 1)
        self.calls.append(frame)
        self.confs.append(conf)
        seen = (self.gt.frames == frame) & (self.gt.visibility >= 0.3) & (not self.empty)
        boxes = self.gt.boxes[seen] + self.rng.uniform(-self.noise, self.noise, (int(seen.sum()), 4))
        visible = self.gt.visibility[seen]
        scores = np.where(visible >= 0.5, self.rng.uniform(0.6, 1.0, len(visible)), self.rng.uniform(0.2, 0.45, len(visible)))
        labels = self.gt.classes[seen] - 1
        order = np.argsort(-scores)
        return [{"boxes": boxes[order].astype(np.float32), "scores": scores[order].astype(np.float32),
                 "labels": labels[order].astype(np.int64), "names": [CLASSES[i] for i in labels[order]]}]


def tiny_checkpoint(path: Path) -> Path:
    """An untrained resnet18 FCOS for 128-px frames whose raised biases give plenty of detections."""
    import torch

    from fcos import FCOS, official
    from fcos.engine.checkpoint import model_checkpoint, save_checkpoint

    torch.manual_seed(0)
    config = official(num_classes=3, backbone="resnet18", **{
        "fpn.channels": 16, "head.norm_groups": 8, "head.num_convs": 1, "input.min_size": 128, "input.max_size": 128})
    model = FCOS(config).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-3, 0)
        model.head.box_pred.bias.uniform_(1.0, 3.0)
    return save_checkpoint(model_checkpoint(model, list(CLASSES), [1, 2, 3]), path)

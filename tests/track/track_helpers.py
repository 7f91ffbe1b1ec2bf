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
    """Called like fcos.predict.Predictor: returns the ground truth of the frame it is given, boxes moved
    by up to ``noise`` px. The frame is found by its pixels among ``frames_dir``'s files (exactly, else the
    nearest: a video's frames are lossy copies), or without ``frames_dir`` is the next one in order.
    Objects seen >= 0.5 score 0.6-1.0; less seen, 0.2-0.45 (what ByteTrack's second pass is for);
    ``empty=True`` detects nothing."""

    class_names = list(CLASSES)

    def __init__(self, gt: Path, frames_dir: Path | None = None, *, noise: float = 1.0, seed: int = 0,
                 empty: bool = False) -> None:
        self.gt, self.noise, self.empty = read_mot(gt), noise, empty
        self.rng = np.random.default_rng(seed)
        self.by_pixels: dict[str, int] = {}
        self.pixels: list[np.ndarray] = []
        if frames_dir is not None:
            for k, path in enumerate(sorted(frames_dir.iterdir()), 1):
                image = read_image(path)
                self.by_pixels[hashlib.sha1(image.tobytes()).hexdigest()] = k
                self.pixels.append(np.asarray(image, np.int16))
        self.calls: list[int] = []
        self.confs: list[float | None] = []

    def __call__(self, image, conf=None):
        frame = self.by_pixels.get(hashlib.sha1(image.tobytes()).hexdigest())
        if frame is None and self.pixels:
            pixels = np.asarray(image, np.int16)
            frame = 1 + int(np.argmin([np.abs(pixels - p).mean() for p in self.pixels]))
        frame = frame or len(self.calls) + 1
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
    from fcos.weights.checkpoint import model_checkpoint, save_checkpoint

    torch.manual_seed(0)
    config = official(num_classes=3, backbone="resnet18", **{
        "fpn.channels": 16, "head.norm_groups": 8, "head.num_convs": 1, "input.min_size": 128, "input.max_size": 128})
    model = FCOS(config).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-3, 0)
        model.head.box_pred.bias.uniform_(1.0, 3.0)
    return save_checkpoint(model_checkpoint(model, list(CLASSES), [1, 2, 3]), path)


def mjpeg_video(path: Path, frames_dir: Path, fps: int = 25, corrupt: int | None = None) -> Path:
    """The frames of ``frames_dir`` as an MJPEG AVI (PyAV): each frame its own JPEG, so ``corrupt=k``
    (0-based) can overwrite frame k's data with garbage, which FFmpeg then cannot decode."""
    import av

    images = [read_image(p) for p in sorted(frames_dir.iterdir())]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height = images[0].size
        stream.pix_fmt = "yuvj420p"
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    if corrupt is not None:
        data = bytearray(path.read_bytes())
        starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG SOI markers
        assert len(starts) == len(images), len(starts)
        data[starts[corrupt] + 2: starts[corrupt] + 600] = bytes((37 * i) % 251 for i in range(598))
        path.write_bytes(bytes(data))
    return path

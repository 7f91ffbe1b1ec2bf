"""What runs the network for :class:`~fcos.predict.Predictor`: PyTorch for checkpoints and pretrained
names, the format's runtime for exported files (:mod:`fcos.export.runtime`). Each takes a batch of images
of one size and an input-size factor, and returns each image's detections in its own pixels.

Both give the same detections for the same image (``tests/export/test_onnx.py`` checks it on real
images): the exported path resizes and pads on the host exactly as the model's ``InputTransform`` does
(:mod:`fcos.export.host`) and maps boxes back with the same ``scale_boxes``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcos.config import STRIDES, FCOSConfig, InputConfig
from fcos.export.host import finish, input_shape, prepare_inputs
from fcos.export.runtime import load_exported
from fcos.model.compiled import default_mode
from fcos.ops.sizing import check_resized_size, pad_to_multiple, resized_shape
from fcos.utils.devices import half_dtype
from fcos.weights.resolve import load_weights

__all__ = ["Detections", "ExportedBackend", "TorchBackend", "scaled_input"]

Detections = tuple[Tensor, Tensor, Tensor]  # boxes [N, 4] xyxy float32, scores [N], labels [N] int64 (CPU)


def scaled_input(config: InputConfig, scale: float) -> InputConfig:
    """The input rule at ``scale`` times the model's sizes (test-time augmentation's scales)."""
    if scale == 1.0:
        return config
    return dataclasses.replace(config, min_size=round(config.min_size * scale), max_size=round(config.max_size * scale))


class TorchBackend:
    """A checkpoint or pretrained name, run by PyTorch on ``device``."""

    name = "torch"

    def __init__(self, weights: str | Path, device: str, *, half: bool = False, compile: bool = False) -> None:
        model, state = load_weights(weights, map_location=device)
        # Autocast rather than bf16 weights: the same speed on an AMX CPU (docs/performance.md), and the
        # decoding, NMS and box mapping stay in float32.
        dtype, note = half_dtype(device) if half else (None, "precision: fp32")
        if half and dtype is None:
            warnings.warn(note, stacklevel=3)
        self._hold(model.to(device), state, device, dtype)
        if compile:
            self.model.compile(mode=default_mode(device, fixed_size=True))

    @classmethod
    def from_model(cls, model: nn.Module, device: str | torch.device, dtype: torch.dtype | None) -> TorchBackend:
        """A model already in memory (no checkpoint read), autocast to ``dtype`` (None: fp32)."""
        self = cls.__new__(cls)
        self._hold(model, {}, device, dtype)
        return self

    def _hold(self, model: nn.Module, state: dict[str, Any], device: Any, dtype: torch.dtype | None) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.config: FCOSConfig = model.config
        self.state = state  # the checkpoint dict: class names, category ids, training records
        self.metadata: dict[str, Any] = {}
        self.precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
        self.img_size: list[int] | None = None  # the model's own size rule, no fixed input
        self.batched = True

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """The padded shape an image of this size enters the network at (alone)."""
        cfg = self.config.input
        h, w = resized_shape(height, width, cfg.min_size, cfg.max_size)
        return pad_to_multiple(h, cfg.size_divisible), pad_to_multiple(w, cfg.size_divisible)

    @torch.inference_mode()
    def detect(self, images: Sequence[Tensor], scale: float = 1.0) -> list[Detections]:
        sizes = None if scale == 1.0 else _sizes(scaled_input(self.config.input, scale))
        with torch.autocast(torch.device(self.device).type, dtype=self.dtype, enabled=self.dtype is not None):
            detections = self.model([image.to(self.device) for image in images], sizes=sizes)
        return [(d["boxes"].float().cpu(), d["scores"].float().cpu(), d["labels"].cpu()) for d in detections]


class ExportedBackend:
    """An exported file (``.onnx``, ``.xml``) run by its format's runtime; the host side resizes, pads
    and maps boxes back as the model would. A graph with a fixed batch of 1 runs the images one by one."""

    def __init__(self, path: str | Path, runtime: str, device: str, num_threads: int) -> None:
        self.exported = load_exported(path, runtime, device, num_threads)
        self.name = self.exported.backend
        self.config: FCOSConfig = self.exported.config
        self.metadata = self.exported.metadata
        self.precision = self.exported.precision
        self.img_size = self.exported.img_size
        self.batched = bool(self.metadata["preprocessing"].get("dynamic_batch"))

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """The padded shape an image of this size enters the graph at (a fixed-size graph's own)."""
        if self.img_size is not None:
            return int(self.img_size[0]), int(self.img_size[1])
        cfg = self.config.input
        h, w = input_shape(height, width, cfg)
        return pad_to_multiple(h, cfg.size_divisible), pad_to_multiple(w, cfg.size_divisible)

    @torch.inference_mode()
    def detect(self, images: Sequence[Tensor], scale: float = 1.0) -> list[Detections]:
        config = scaled_input(self.config.input, scale)
        if not self.batched and len(images) > 1:
            return [d for image in images for d in self.detect([image], scale)]
        batch, sizes = prepare_inputs(images, config, self.img_size)
        for i, image in enumerate(images):
            check_resized_size((int(sizes[i, 0]), int(sizes[i, 1])), image.shape[-2:], max(STRIDES),
                               config.size_divisible, index=i)
        outputs = self.exported.run(batch.numpy(), sizes.numpy())
        return [finish([o[i : i + 1] for o in outputs], self.exported.nms_in_graph, self.config.decode,
                       (int(sizes[i, 0]), int(sizes[i, 1])), image.shape[-2:])
                for i, image in enumerate(images)]


def _sizes(config: InputConfig) -> tuple[float, float]:
    return float(config.min_size), float(config.max_size)

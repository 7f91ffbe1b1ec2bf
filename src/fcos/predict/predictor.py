"""Inference on images: one :class:`Predictor` for fcos checkpoints (PyTorch) and exported models
(ONNX Runtime for ``.onnx``, OpenVINO for ``.xml``; :mod:`fcos.export.runtime`). :func:`fcos.predict.run.predict_source`
runs it over files, folders, glob patterns and videos.

Both backends give the same detections for the same image (``tests/export/test_onnx.py`` checks it on
real images): the exported path resizes and pads on the host exactly as the model's ``InputTransform``
does (:mod:`fcos.export.host`) and maps boxes back with the same ``scale_boxes``.
Every image is run on its own, so an image's detections never depend on what it was batched with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fcos.config import STRIDES, DecodeConfig, InputConfig
from fcos.export.formats import runtimes
from fcos.export.host import finish, prepare_inputs
from fcos.export.runtime import backend_for, load_exported
from fcos.ops.sizing import check_resized_size
from fcos.weights.pretrained import is_registered
from fcos.weights.resolve import load_weights

__all__ = ["DetectorAdapter", "ImageLike", "Predictor", "backends", "to_tensor"]

ImageLike = Image.Image | np.ndarray | Tensor


def backends() -> tuple[str, ...]:
    """``torch`` (checkpoints and pretrained names) and the runtime of every export format."""
    return ("torch", *runtimes())


def to_tensor(image: ImageLike) -> Tensor:
    """PIL image, HWC (or HW) uint8 numpy array, or CHW tensor -> [3, H, W] float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"numpy images must be uint8 HWC (RGB), got dtype {image.dtype}")
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ValueError(f"numpy images must have shape [H, W, 3] (or [H, W], [H, W, 1|4]), got {image.shape}")
        if image.shape[2] != 3:
            image = np.broadcast_to(image[..., :3], (*image.shape[:2], 3))
        if not (image.flags.writeable and image.flags.c_contiguous):
            image = np.array(image)  # torch.from_numpy wants a writable array
        image = torch.from_numpy(image).permute(2, 0, 1)
    if not isinstance(image, Tensor):
        raise ValueError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"tensor images must have shape [3, H, W], got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float() / 255.0  # the model's own conversion
    if not image.is_floating_point():
        raise ValueError(f"tensor images must be float in [0, 1] or uint8, got {image.dtype}")
    return image.float()


class Predictor:
    """Detections for images, from a ``.pt`` checkpoint (PyTorch) or an exported model: ``.onnx``
    (ONNX Runtime) or ``.xml`` (OpenVINO), fp32 or int8.

    Args:
        weights: checkpoint, exported file (written by ``fcos export``), or a registered pretrained name
            (:mod:`fcos.weights.pretrained`, e.g. ``"fcos_resnet50_fpn_coco"``).
        device: "cpu" or "cuda[:N]" (OpenVINO: cpu only).
        backend: "torch", "onnxruntime" or "openvino"; None picks by the file suffix (``.onnx`` ->
            onnxruntime, ``.xml`` -> openvino, anything else -> torch).
        conf: default minimum score of returned detections, applied after the model's own decoding
            (``decode.score_thresh``, top-k, NMS); None keeps everything the model returns.
        num_threads: intra-op threads of the exported model's runtime; None uses PyTorch's thread count,
            for a like-for-like comparison.

    ``predictor(images)`` takes one image or a list (PIL, HWC uint8 numpy, CHW tensor; or a [B, 3, H, W]
    tensor) and returns one dict per image: ``boxes`` [N, 4] float32 xyxy in original pixels, ``scores``
    [N] float32, ``labels`` [N] int64, ``names`` list of N class names; sorted by descending score.
    ``predictor.config`` is the model's :class:`~fcos.config.FCOSConfig` (for an exported model, the
    inference part its metadata carries: input, points, decode).
    """

    def __init__(
        self,
        weights: str | Path,
        device: str = "cpu",
        backend: str | None = None,
        conf: float | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.weights = Path(weights)
        self.backend = backend or backend_for(self.weights) or "torch"
        if self.backend not in backends():
            raise ValueError(f"unknown backend {self.backend!r}; choose from {backends()}")
        if not self.weights.is_file() and not is_registered(weights):
            raise FileNotFoundError(f"weights not found: {self.weights} (neither a file nor a name `fcos models` lists)")
        self.device = device
        self.conf = conf
        if self.backend == "torch":
            self._init_torch()
        else:
            self._init_exported(num_threads)

    def _init_torch(self) -> None:
        exported = backend_for(self.weights)
        if exported:
            raise ValueError(f"{self.weights} is an exported {self.weights.suffix} model: use backend={exported!r}")
        model, state = load_weights(self.weights, map_location=self.device)
        self.model = model.to(self.device)
        self.config = model.config
        self.input_config: InputConfig = model.config.input
        self.decode_config: DecodeConfig = model.config.decode
        self.class_names = [str(n) for n in state["class_names"]]
        self.category_ids = [int(i) for i in state["category_ids"]]
        self.precision = "fp32"
        self.img_size = None  # the model's own size rule, no fixed input

    def _init_exported(self, num_threads: int | None) -> None:
        self.exported = load_exported(self.weights, self.backend, self.device, num_threads or torch.get_num_threads())
        meta = self.exported.metadata
        self.config = self.exported.config
        self.input_config, self.decode_config = self.config.input, self.config.decode
        self.class_names = [str(n) for n in meta["class_names"]]
        self.category_ids = [int(i) for i in meta["category_ids"]]
        self.img_size = self.exported.img_size
        self.nms_in_graph = self.exported.nms_in_graph
        self.precision = self.exported.precision

    def __call__(self, images: ImageLike | Sequence[ImageLike], conf: float | None = None) -> list[dict[str, Any]]:
        if isinstance(images, Tensor) and images.dim() == 4:
            images = list(images)  # a [B, 3, H, W] batch: each image on its own
        elif isinstance(images, Image.Image | np.ndarray | Tensor):
            images = [images]
        conf = self.conf if conf is None else conf
        results = []
        for image in images:
            tensor = to_tensor(image)
            run = self._run_torch if self.backend == "torch" else self._run_exported
            boxes, scores, labels = run(tensor)
            if conf is not None:
                keep = scores >= conf
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            results.append(
                {
                    "boxes": boxes.numpy().astype(np.float32).reshape(-1, 4),
                    "scores": scores.numpy().astype(np.float32),
                    "labels": labels.numpy().astype(np.int64),
                    "names": [self.class_names[int(i)] for i in labels],
                }
            )
        return results

    def as_detector(self) -> DetectorAdapter:
        """This predictor behind the PyTorch detector's calling convention, for
        :func:`fcos.evaluation.evaluate` (COCO AP of an exported model with the same evaluation code)."""
        return DetectorAdapter(self)

    @torch.inference_mode()
    def _run_torch(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        (det,) = self.model([image.to(self.device)])
        return det["boxes"].float().cpu(), det["scores"].float().cpu(), det["labels"].cpu()

    @torch.inference_mode()
    def _run_exported(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, sizes = prepare_inputs([image], self.input_config, self.img_size)
        resized = (int(sizes[0, 0]), int(sizes[0, 1]))
        check_resized_size(resized, image.shape[-2:], max(STRIDES), self.input_config.size_divisible)
        outputs = self.exported.run(batch.numpy(), sizes.numpy())
        return finish(outputs, self.nms_in_graph, self.decode_config, resized, image.shape[-2:])


class DetectorAdapter:
    """A :class:`Predictor` called like :class:`fcos.FCOS` in eval mode: a list of [3, H, W] float images
    in [0, 1] -> one dict of tensors per image (``boxes`` [N, 4] in that image's pixels, ``scores``,
    ``labels``), with ``config``. What :func:`fcos.evaluation.predict_dataset` needs; no threshold."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.config = predictor.config

    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        detections = self.predictor([image.cpu() for image in images], conf=0.0)
        return [{"boxes": torch.from_numpy(d["boxes"]), "scores": torch.from_numpy(d["scores"]),
                 "labels": torch.from_numpy(d["labels"])} for d in detections]


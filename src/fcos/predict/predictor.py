"""Inference on images: one :class:`Predictor` for fcos checkpoints and pretrained names (PyTorch) and
exported models (ONNX Runtime for ``.onnx``, OpenVINO for ``.xml``: :mod:`fcos.predict.backends`), whole,
sliced into tiles or with test-time augmentation (:class:`~fcos.predict.options.InferenceOptions`).
:func:`fcos.predict.run.predict_source` runs it over files, folders, glob patterns and videos.

An image is looked at in one or more views (:mod:`fcos.predict.slicing`): the whole image (the default),
or the tiles of a grid plus optionally the whole image, each also mirrored and at other input sizes with
test-time augmentation. Each view is run at the model's own input rule, its boxes mapped back to the
original pixels exactly, and the views merged (:mod:`fcos.predict.merge`). Tiles are cut from the image
as it is given (a uint8 image stays uint8) and converted a batch of ``slice_batch`` at a time, so a very
large image is never held as float pixels or as all its tiles at once. Every image is run on its own,
so an image's detections never depend on what it was batched with.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from fcos.export.formats import runtimes
from fcos.export.runtime import backend_for
from fcos.ops.sizing import resize_scale
from fcos.predict.backends import Detections, ExportedBackend, TorchBackend
from fcos.predict.merge import merge_detections
from fcos.predict.options import InferenceOptions, TileInfo
from fcos.predict.slicing import View, map_back, tile_grid
from fcos.utils.flags import SettingError
from fcos.weights.pretrained import is_registered

__all__ = ["DetectorAdapter", "ImageLike", "Predictor", "as_float", "backends", "image_tensor", "to_tensor"]

ImageLike = Image.Image | np.ndarray | Tensor
PROGRESS_TILES = 64  # a progress bar over the tiles of images cut into more than this


def backends() -> tuple[str, ...]:
    """``torch`` (checkpoints and pretrained names) and the runtime of every export format."""
    return ("torch", *runtimes())


def image_tensor(image: ImageLike) -> Tensor:
    """PIL image, HWC (or HW) uint8 numpy array, or CHW tensor -> [3, H, W]: uint8 as given (a view of a
    numpy array: a large image is not copied), float as given; :func:`to_tensor` converts."""
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
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise ValueError(f"tensor images must be float in [0, 1] or uint8, got {image.dtype}")
    return image


def to_tensor(image: ImageLike) -> Tensor:
    """PIL image, HWC (or HW) uint8 numpy array, or CHW tensor -> [3, H, W] float32 in [0, 1]."""
    return as_float(image_tensor(image))


def as_float(image: Tensor) -> Tensor:
    """[3, H, W] uint8 or float -> float32 in [0, 1] (uint8 / 255: the model's own conversion)."""
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()




class Predictor:
    """Detections for images, from a ``.pt`` checkpoint or a pretrained name (PyTorch) or an exported
    model: ``.onnx`` (ONNX Runtime) or ``.xml`` (OpenVINO), fp32 or int8.

    Args:
        weights: checkpoint, exported file (written by ``fcos export``), or a registered pretrained name
            (:mod:`fcos.weights.pretrained`, e.g. ``"fcos_resnet50_fpn_coco"``).
        device: "cpu" or "cuda[:N]" (OpenVINO: cpu only).
        backend: "torch" or an export format's runtime ("onnxruntime", "openvino"); None picks by the file
            suffix (``.onnx`` -> onnxruntime, ``.xml`` -> openvino, anything else -> torch).
        conf: default minimum score of returned detections, applied after the model's own decoding
            (``decode.score_thresh``, top-k, NMS) and the views' merging; None keeps everything.
        num_threads: intra-op threads of the exported model's runtime; None uses PyTorch's thread count,
            for a like-for-like comparison.
        options: slicing and test-time augmentation (:class:`~fcos.predict.options.InferenceOptions`;
            default: ``slice="auto"``, the whole image unless the model was trained on tiles).
        progress: a progress bar over the tiles of an image cut into more than ``PROGRESS_TILES`` views
            (off for a service, or with the commands' ``--no-progress``).

    ``predictor(images)`` takes one image or a list (PIL, HWC uint8 numpy, CHW tensor; or a [B, 3, H, W]
    tensor) and returns one dict per image: ``boxes`` [N, 4] float32 xyxy in original pixels, ``scores``
    [N] float32, ``labels`` [N] int64, ``names`` list of N class names; sorted by descending score.
    ``predictor.config`` is the model's :class:`~fcos.config.FCOSConfig` (for an exported model, the
    inference part its metadata carries: input, points, decode); ``predictor.tile`` what a tile-trained
    model was trained on (None otherwise).
    """

    def __init__(
        self,
        weights: str | Path,
        device: str = "cpu",
        backend: str | None = None,
        conf: float | None = None,
        num_threads: int | None = None,
        options: InferenceOptions | None = None,
        progress: bool = True,
    ) -> None:
        self.weights = Path(weights)
        self.backend = backend or backend_for(self.weights) or "torch"
        if self.backend not in backends():
            raise SettingError(f"unknown backend {self.backend!r}; choose from {backends()}")
        if not self.weights.is_file() and not is_registered(weights):
            raise FileNotFoundError(f"weights not found: {self.weights} (neither a file nor a name `fcos models` lists)")
        self.device, self.conf, self.progress = device, conf, progress
        self.options = options or InferenceOptions()
        if self.backend == "torch":
            exported = backend_for(self.weights)
            if exported:
                raise SettingError(f"{self.weights} is an exported {self.weights.suffix} model: use backend={exported!r}")
            self.runner: TorchBackend | ExportedBackend = TorchBackend(weights, device, half=self.options.half,
                                                                      compile=self.options.compile)
            record = self.runner.state
        else:
            if self.options.half or self.options.compile:
                warnings.warn(f"--half and --compile apply to PyTorch models; {self.weights.name} runs in the precision "
                              "it was exported in", stacklevel=2)
            self.runner = ExportedBackend(weights, self.backend, device, num_threads or torch.get_num_threads())
            self.exported = self.runner.exported
            record = self.runner.metadata
        self._describe_model(record)

    @classmethod
    def from_model(cls, model: nn.Module, record: dict[str, Any], *, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, options: InferenceOptions | None = None) -> Predictor:
        """A predictor over an FCOS model in memory, in whatever mode the caller keeps it (eval for
        predictions): how training validates a tile-trained model as its checkpoint will be used.
        ``record``: what a checkpoint holds beside the weights (``class_names``, ``category_ids``, ``tile``,
        ``input_scale``); ``dtype``: the autocast dtype, None for fp32."""
        self = cls.__new__(cls)
        self.weights, self.backend, self.device, self.conf, self.progress = Path("<model>"), "torch", device, None, False
        self.options = options or InferenceOptions()
        self.runner = TorchBackend.from_model(model, device, dtype)
        self._describe_model(record)
        return self

    def _describe_model(self, record: dict[str, Any]) -> None:
        """What the model's record says (classes, tiles, scale), then the inference options."""
        self.config = self.runner.config
        self.input_config, self.decode_config = self.config.input, self.config.decode
        self.class_names = [str(n) for n in record["class_names"]]
        self.category_ids = [int(i) for i in record["category_ids"]]
        self.precision, self.img_size = self.runner.precision, self.runner.img_size
        self.dtype: torch.dtype | None = getattr(self.runner, "dtype", None)  # the PyTorch model's autocast dtype
        self.tile = TileInfo.from_record(record.get("tile"))
        self.input_scale = record.get("input_scale")  # the median scale training saw objects at
        self._set_options(self.options)

    def _set_options(self, options: InferenceOptions) -> None:
        self.options = options
        self.tiles = options.tiles(self.tile)
        self.plain = self.tiles is None and not options.tta
        self._check_scale()

    def with_options(self, options: InferenceOptions) -> Predictor:
        """The same model (shared, not loaded again) with other inference options."""
        other = copy.copy(self)
        other._set_options(options)
        return other

    @property
    def model(self) -> Any:
        """The PyTorch model (checkpoints and pretrained names)."""
        return self.runner.model  # type: ignore[union-attr]

    def _check_scale(self) -> None:
        """Slicing shows objects at another scale than training did: say so (docs/small-objects.md:
        tiles upscaled 2x cost a whole-image model 0.20 AP50). A checkpoint without the record of its
        training scale is taken as trained at scale 1, and only upscaling by more than 2x is named."""
        if self.tiles is None:
            return
        h, w = self.tiles
        scale = resize_scale(h, w, self.input_config.min_size, self.input_config.max_size)
        trained = float(self.input_scale) if self.input_scale else None
        ratio = scale / (trained or 1.0)
        if (trained and not 1 / 1.5 <= ratio <= 1.5) or (not trained and ratio > 2.0):
            seen = f"training images by {trained:.2f} in the median" if trained else "training scale not recorded"
            warnings.warn(
                f"slicing {self.weights} into {h}x{w} px tiles shows objects at {ratio:.2f}x the scale it was trained "
                f"at (tiles resized by {scale:.2f}, {seen}): "
                + ("train it with --tile to predict it sliced" if self.tile is None else
                   f"its own tiles are --slice {self.tile.window[0]} {self.tile.window[1]} (--slice auto)"),
                stacklevel=3)

    def __call__(self, images: ImageLike | Sequence[ImageLike], conf: float | None = None) -> list[dict[str, Any]]:
        if isinstance(images, Tensor) and images.dim() == 4:
            images = list(images)  # a [B, 3, H, W] batch: each image on its own
        elif isinstance(images, Image.Image | np.ndarray | Tensor):
            images = [images]
        return [self._result(self.detect(image_tensor(image)), conf) for image in images]

    def predict_batch(self, images: Sequence[ImageLike], conf: float | None = None) -> list[dict[str, Any]]:
        """:meth:`__call__`'s results for several images in as few forward passes as their sizes allow:
        images whose padded model input has the same shape run together (the padding, hence the
        detections, are each one's alone: a service batching concurrent requests answers each as if it
        came alone). A sliced or augmented predictor runs each image by its views."""
        tensors = [image_tensor(image) for image in images]
        if not self.plain:
            return [self._result(self.detect(t), conf) for t in tensors]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, tensor in enumerate(tensors):
            groups.setdefault(self.runner.input_shape(*tensor.shape[-2:]), []).append(i)
        found: dict[int, Detections] = {}
        for members in groups.values():
            for index, detections in zip(members, self.runner.detect([as_float(tensors[i]) for i in members]),
                                         strict=True):
                found[index] = detections
        return [self._result(found[i], conf) for i in range(len(tensors))]

    def _result(self, detections: Detections, conf: float | None) -> dict[str, Any]:
        boxes, scores, labels = detections
        conf = self.conf if conf is None else conf
        if conf is not None:
            keep = scores >= conf
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        return {
            "boxes": boxes.numpy().astype(np.float32).reshape(-1, 4),
            "scores": scores.numpy().astype(np.float32),
            "labels": labels.numpy().astype(np.int64),
            "names": [self.class_names[int(i)] for i in labels],
        }

    def views(self, height: int, width: int) -> list[View]:
        """The views of a ``height`` x ``width`` image, as :attr:`options` asks."""
        full = (0, 0, width, height)
        if self.tiles is None:
            windows = [full]
        else:
            windows = tile_grid(height, width, self.tiles, self.options.slice_overlap)
            if self.options.with_full_image() and windows != [full]:
                windows.append(full)
        flips = (False, True) if self.options.tta else (False,)
        scales = self.options.tta_scales if self.options.tta else (1.0,)
        return [View(window, flip, scale, full=window == full) for window in windows for scale in scales for flip in flips]

    def detect(self, image: Tensor) -> Detections:
        """One image [3, H, W] (uint8 or float in [0, 1]) -> its merged detections in original pixels."""
        views = self.views(image.shape[-2], image.shape[-1])
        if len(views) == 1 and views[0].full and not views[0].flip and views[0].scale == 1.0:
            return self.runner.detect([as_float(image)])[0]  # the plain path: no merging
        groups: dict[tuple, list[View]] = {}
        for view in views:  # one forward pass per batch of equally sized views
            groups.setdefault((view.size, view.scale, view.full), []).append(view)
        batches = [(key, group[i : i + self.options.slice_batch]) for key, group in groups.items()
                   for i in range(0, len(group), self.options.slice_batch)]
        found: list[Detections] = []
        bar = tqdm(batches, desc="tiles", unit="batch", leave=False, disable=not self.progress or len(views) <= PROGRESS_TILES)
        for (_, scale, _), batch in bar:
            crops = [self._crop(image, view) for view in batch]
            for view, (boxes, scores, labels) in zip(batch, self.runner.detect(crops, scale), strict=True):
                found.append((map_back(boxes, view), scores, labels))
        boxes, scores, labels = (torch.cat(parts) for parts in zip(*found, strict=True))
        return merge_detections(boxes, scores, labels, self.options.merge, self.options.merge_iou)

    def _crop(self, image: Tensor, view: View) -> Tensor:
        """``view``'s pixels as float [3, h, w] in [0, 1]. The whole image of a sliced prediction is
        first brought to the model's input size in uint8, so a very large image is never a float copy."""
        x0, y0, x1, y1 = view.window
        crop = image[:, y0:y1, x0:x1]
        if view.full and crop.dtype == torch.uint8 and self.tiles is not None:
            h, w = crop.shape[-2:]
            cfg = self.input_config
            scale = resize_scale(h, w, cfg.min_size * view.scale, cfg.max_size * view.scale)
            if scale < 0.5:  # much larger than the input: shrink to twice the input size first, in uint8
                size = (max(1, round(h * scale * 2)), max(1, round(w * scale * 2)))
                crop = F.interpolate(crop[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        crop = as_float(crop)
        return crop.flip(-1) if view.flip else crop

    def as_detector(self) -> DetectorAdapter:
        """This predictor behind the PyTorch detector's calling convention, for
        :func:`fcos.evaluation.evaluate` (COCO AP of an exported or sliced model with the same evaluation code)."""
        return DetectorAdapter(self)


class DetectorAdapter:
    """A :class:`Predictor` called like :class:`fcos.FCOS` in eval mode: a list of [3, H, W] float images
    in [0, 1] -> one dict of tensors per image (``boxes`` [N, 4] in that image's pixels, ``scores``,
    ``labels``), with ``config``. What :func:`fcos.evaluation.predict_dataset` needs; no threshold.
    ``needs_original_images``: a sliced or augmented predictor resizes each view itself, so evaluation
    must hand it the images at their own size, not resized by the model's rule."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.config = predictor.config
        self.needs_original_images = not predictor.plain

    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        detections = self.predictor([image.cpu() for image in images], conf=0.0)
        return [{"boxes": torch.from_numpy(d["boxes"]), "scores": torch.from_numpy(d["scores"]),
                 "labels": torch.from_numpy(d["labels"])} for d in detections]


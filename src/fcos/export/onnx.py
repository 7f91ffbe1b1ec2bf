"""ONNX export of :class:`fcos.export.graph.DetectorGraph`: network + decoding (+ class-aware batched
NMS) in one graph; the preprocessing contract, class names and config travel in the file's
``metadata_props``.

Preprocessing contract (also stored as JSON under ``metadata_props["preprocessing"]``):

- input ``images``: float32 [B, 3, H, W], RGB in [0, 1]. Each image is resized on the host with the
  model's own rule (:func:`fcos.ops.sizing.resized_shape`, bilinear, ``align_corners=False``) and
  placed at the top-left corner. The graph normalises with the model's mean/std and zeroes every pixel
  outside ``image_sizes``, exactly as :class:`~fcos.model.transform.InputTransform` pads, so whatever the
  host puts in the padding does not matter.
- input ``image_sizes``: float32 [B, 2], (h, w) of each resized image before padding; boxes are clipped to it.
- H, W: with ``img_size=None`` (the default) they are dynamic and the host pads each image to the next
  multiple of ``size_divisible`` (32): the padded size the PyTorch model uses for a single image, so the
  two give the same detections. With ``img_size=(H, W)`` they are fixed; an image whose resized shape does
  not fit is scaled down further to fit (:func:`fcos.export.host.input_shape`). Features near the bottom/right border
  depend on the padded size, so a fixed-size graph matches PyTorch run on the identically padded input,
  not PyTorch's own padding.
- outputs with ``nms=True``: ``boxes`` [B, D, 4] xyxy in resized-image pixels, ``scores`` [B, D],
  ``labels`` [B, D] int64, ``num_detections`` [B] int64; D = ``decode.max_detections``, sorted by
  descending score. With ``nms=False``: ``boxes`` [B, N, 4], ``scores`` [B, N], ``labels`` [B, N], the top
  ``decode.topk_per_level`` thresholded candidates of each of the 5 levels (N = 5 * topk_per_level); the
  caller runs class-aware NMS at ``decode.nms_thresh`` and keeps ``decode.max_detections``.
  Unused rows have label -1, score 0 and a zero box in both cases.

The host side (:func:`fcos.export.host.prepare_inputs`, :func:`fcos.export.host.finish`) resizes and
pads, and maps boxes back to the original image with :func:`fcos.ops.sizing.scale_boxes`.
Exported with the TorchScript-based exporter (``dynamo=False``) at opset :data:`DEFAULT_OPSET`;
NMS is the ONNX ``NonMaxSuppression`` op (per image and class, in the graph).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcos.config import STRIDES, FCOSConfig, check_conv3x3
from fcos.export.calibration import Calibration, calibration_inputs
from fcos.export.contract import ExportedModelError, Loaded
from fcos.export.graph import DetectorGraph, fold_backbone_convs
from fcos.export.quantize import quantize_onnx
from fcos.model.conv import Conv3x3
from fcos.utils.files import staged_path
from fcos.utils.flags import Bound, SettingError
from fcos.utils.optional import require
from fcos.weights.resolve import load_weights

__all__ = ["DEFAULT_OPSET", "OPSETS", "decode_metadata", "export_onnx", "load_onnxruntime", "onnxruntime_devices", "read_metadata"]

DEFAULT_OPSET = 17


def _opsets() -> Bound:
    """The opsets an export can have: from 12 (11's Clip takes no integer input: the export fails there, checked
    with torch 2.14) to the newest the installed torch writes (23 in 2.14; a private constant, so unbounded when
    it is gone)."""
    from torch.onnx import _constants

    return Bound(12, getattr(_constants, "ONNX_MAX_OPSET", None))


OPSETS = _opsets()
FORMAT = "fcos-onnx"
VERSION = 1


def _conv_algorithm(conv3x3: str, img_size: tuple[int, int] | None, int8: Calibration | None) -> str:
    """The exported graph's 3x3 convolution algorithm: Winograd needs fixed level sizes (they shape its
    tiles) and float32 (int8 quantizes the Conv nodes themselves)."""
    check_conv3x3(conv3x3)
    if conv3x3 == "winograd" and (img_size is None or int8 is not None):
        raise SettingError("conv3x3='winograd' needs a fixed-size (img_size) float32 export: Winograd tiles are "
                           "laid out for fixed level sizes, and int8 quantizes plain convolutions")
    return "direct" if img_size is None or int8 is not None else conv3x3


def _metadata(
    model: nn.Module, state: dict[str, Any], img_size, dynamic: bool, nms: bool, opset: int,
    int8: dict[str, Any] | None, conv3x3: str,
) -> dict[str, str]:
    cfg: FCOSConfig = model.config
    full = cfg.to_dict()
    # The inference-relevant part, strict JSON (no infinities), readable by FCOSConfig.from_dict.
    config = {key: full[key] for key in ("num_classes", "preset", "input", "points", "decode")}
    preprocessing = {
        "inputs": {"images": "float32 [B, 3, H, W] RGB in [0, 1]", "image_sizes": "float32 [B, 2] (h, w) before padding"},
        "resize": "fcos.ops.sizing.resized_shape(h, w, min_size, max_size); bilinear, align_corners=False"
        + ("" if img_size is None else "; scaled down further to fit img_size"),
        "min_size": cfg.input.min_size,
        "max_size": cfg.input.max_size,
        "pad": "bottom/right to a multiple of size_divisible" if img_size is None else "bottom/right to img_size",
        "size_divisible": cfg.input.size_divisible,
        "img_size": None if img_size is None else list(img_size),
        "normalize": "in graph: (x - mean) / std, zero outside image_sizes",
        "mean": list(cfg.input.mean),
        "std": list(cfg.input.std),
        "dynamic_batch": dynamic,
        "boxes": "xyxy in resized-image pixels; multiply by original / resized size (fcos.ops.sizing.scale_boxes)",
    }
    return {
        "format": f"{FORMAT}/{VERSION}",
        "class_names": json.dumps(list(state["class_names"])),
        "category_ids": json.dumps([int(i) for i in state["category_ids"]]),
        "config": json.dumps(config, allow_nan=False),
        "backbone": json.dumps(cfg.backbone.name),
        "preprocessing": json.dumps(preprocessing),
        "nms": json.dumps(nms),
        "opset": str(opset),
        "precision": json.dumps("int8" if int8 else "fp32"),
        "conv3x3": json.dumps(conv3x3),
        "quantization": json.dumps(int8),
        # What sliced prediction reads (fcos.predict.options): the tiles a model was trained on, and the
        # median scale its training images were seen at.
        "tile": json.dumps(state.get("tile")),
        "input_scale": json.dumps(state.get("input_scale")),
    }


def _set_shape(value_info: Any, dims: Sequence[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


def read_metadata(model_or_path: Any) -> dict[str, Any]:
    """``metadata_props`` of an exported model (an ``onnx.ModelProto``, a path or an onnxruntime
    session's ``custom_metadata_map``), JSON values decoded."""
    if isinstance(model_or_path, dict):
        props = model_or_path
    else:
        onnx = require("onnx", "reading ONNX metadata")
        proto = model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(str(model_or_path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
    return decode_metadata(props, "ONNX model")


def decode_metadata(props: dict[str, str], what: str) -> dict[str, Any]:
    """The string metadata of an exported file (ONNX ``metadata_props``, OpenVINO ``rt_info``), JSON values
    decoded; ``precision`` defaults to fp32 (files written before int8 existed)."""
    if not str(props.get("format", "")).startswith("fcos-"):
        raise ValueError(f"not an fcos export: this {what} has no fcos metadata ('format'); export it with `fcos export`")
    try:
        meta = {key: (value if key in ("format", "opset") else json.loads(value)) for key, value in props.items()}
    except json.JSONDecodeError as exc:
        raise ValueError(f"the fcos metadata of this {what} is corrupt: {exc}") from None
    meta.setdefault("precision", "fp32")
    return meta


def export_onnx(
    weights: str | Path,
    out: str | Path,
    img_size: Sequence[int] | None = None,
    dynamic: bool = False,
    nms: bool = True,
    opset: int = DEFAULT_OPSET,
    int8: Calibration | None = None,
    conv3x3: str = "auto",
) -> Path:
    """Export a checkpoint to ONNX (see the module docstring for the input/output contract).

    Args:
        weights: an fcos ``.pt`` checkpoint or a registered pretrained name (:mod:`fcos.weights.pretrained`).
        out: the ``.onnx`` file to write (atomically).
        img_size: fixed (H, W) input, multiples of ``size_divisible``; None: H and W dynamic (default,
            reproduces the PyTorch model's padding exactly).
        dynamic: make the batch axis dynamic (default: batch 1).
        nms: put class-aware NMS and the final top-``max_detections`` in the graph.
        opset: ONNX opset (>= 11).
        int8: quantize the network to int8, calibrated on these images (:mod:`fcos.export.quantize`);
            None: float32.
        conv3x3: how the 3x3 convolutions of the FPN outputs, the head and ResNet blocks of >= 256
            channels (:func:`fcos.export.graph.fold_backbone_convs`) are written in the graph: "auto"
            (Winograd operators, :func:`fcos.ops.winograd.conv3x3_graph`, on maps of >= 32x32 points
            of a fixed-size fp32 export, plain Conv nodes elsewhere: the whole R50 model 1.1-1.3x
            faster in ONNX Runtime / OpenVINO, each layer within ~1e-5 relative of direct), "direct"
            (Conv nodes only: for GPU runtimes, which pick their own algorithms) or "winograd" (every
            level of a fixed-size fp32 export).
    """
    OPSETS.check(opset, "opset")
    onnx = require("onnx", "ONNX export")
    model, state = load_weights(weights)
    cfg: FCOSConfig = model.config
    div, min_side = cfg.input.size_divisible, max(model.strides)
    if img_size is not None:
        img_size = (int(img_size[0]), int(img_size[1]))
        if img_size[0] % div or img_size[1] % div or min(img_size) < min_side:
            raise SettingError(f"img_size {img_size} must be multiples of {div} and at least {min_side}")
    algorithm = _conv_algorithm(conv3x3, img_size, int8)
    if algorithm != "direct":
        fold_backbone_convs(model.backbone, algorithm)  # ResNet 3x3 convs of >= 256 channels: Winograd too
    for module in model.modules():
        if isinstance(module, Conv3x3):
            module.algorithm = algorithm
    calibration = None if int8 is None else calibration_inputs(int8, cfg.input, img_size)  # data errors before the work
    out = Path(out)
    with staged_path(out) as tmp:  # a folder or an unwritable place is named before the work
        _trace(model, tmp, img_size, dynamic, nms, opset)
        quantization = None
        if calibration is not None:
            fp32 = tmp + ".fp32"
            os.replace(tmp, fp32)
            try:
                quantization = {**quantize_onnx(fp32, tmp, calibration), "calibration": int8.describe()}
            finally:
                Path(fp32).unlink(missing_ok=True)
        proto = onnx.load(tmp)
        # Output shapes are static (fixed top-k) but not inferable through NonMaxSuppression: state them.
        candidates = len(STRIDES) * cfg.decode.topk_per_level
        rows = min(cfg.decode.max_detections, candidates) if nms else candidates
        shapes = {"boxes": [rows, 4], "scores": [rows], "labels": [rows], "num_detections": []}
        for output in proto.graph.output:
            _set_shape(output, ["batch" if dynamic else 1, *shapes[output.name]])
        proto.producer_name = "fcos"
        proto.doc_string = "FCOS detector with decoding" + (" and NMS" if nms else "") + "; see metadata 'preprocessing'"
        del proto.metadata_props[:]
        for key, value in _metadata(model, state, img_size, dynamic, nms, opset, quantization, algorithm).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
    return out


def _trace(model: nn.Module, path: str, img_size: tuple[int, int] | None, dynamic: bool, nms: bool, opset: int) -> None:
    """Trace :class:`DetectorGraph` of ``model`` into the ONNX file ``path``."""
    cfg: FCOSConfig = model.config
    div, min_side = cfg.input.size_divisible, max(model.strides)
    trace_hw = img_size or (max(min_side, 2 * div * 4), max(min_side, 2 * div * 5))
    batch = 2 if dynamic else 1
    images = torch.rand(batch, 3, *trace_hw)
    image_sizes = torch.tensor([[trace_hw[0] - 7.0, trace_hw[1] - 20.0]] * batch)
    spatial = {} if img_size is not None else {2: "height", 3: "width"}
    batch_axis = {0: "batch"} if dynamic else {}
    outputs = ["boxes", "scores", "labels", "num_detections"] if nms else ["boxes", "scores", "labels"]
    dynamic_axes = {"images": {**batch_axis, **spatial}, "image_sizes": dict(batch_axis)}
    dynamic_axes.update({name: dict(batch_axis) for name in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        # GroupNorm's input check (`size == 1`) reads a traced size; it validates, it does not shape the graph.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.functional")
        # Winograd levels read their sizes as constants on purpose: only fixed-size exports use them.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"fcos\.(ops\.winograd|model\.conv)")
        # Chosen on purpose: it maps the NMS below to NonMaxSuppression without onnxscript.
        # (torch deprecates that exporter; the dynamo one needs onnxscript and a custom NMS translation.)
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        # Advanced indexing here only ever uses non-negative indices, the case the exporter supports.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            DetectorGraph(model, nms=nms).eval(),
            (images, image_sizes),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=["images", "image_sizes"],
            output_names=outputs,
            dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
            do_constant_folding=True,
        )


def load_onnxruntime(path: Path, device: str, num_threads: int) -> Loaded:
    """Open ``path`` in an ONNX Runtime session (settings: :mod:`fcos.export.runtime`'s docstring)."""
    ort = require("onnxruntime", f"running {path.name}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=_providers(ort, device))
        props = session.get_modelmeta().custom_metadata_map
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ExportedModelError(f"cannot load ONNX model {path}: {exc}") from None
    try:
        meta = decode_metadata(dict(props), "ONNX model")
    except ValueError as exc:
        raise ExportedModelError(f"cannot use {path}: {exc}") from None

    def run(images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {"images": images, "image_sizes": image_sizes})

    return meta, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()], run


def _providers(ort: Any, device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        # Guarded, untested here (no GPU was lent to the session that wrote this): the fp32 graph on CUDA.
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(f"device {device!r}: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'")




def onnxruntime_devices() -> tuple[str, ...]:
    """The device kinds this onnxruntime runs on: CUDA only with its CUDA execution provider."""
    ort = require("onnxruntime", "running ONNX models")
    return ("cuda", "cpu") if "CUDAExecutionProvider" in ort.get_available_providers() else ("cpu",)

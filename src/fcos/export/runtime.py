"""Running an exported file: :func:`load_exported` opens a ``.onnx`` (ONNX Runtime) or a ``.xml``
(OpenVINO), checks that it is an fcos export whose metadata matches its graph, and returns an
:class:`ExportedModel`: the metadata, the config and one ``run(images, image_sizes)`` for every runtime.
The host side around it (resize, pad, boxes back to the original image) is :mod:`fcos.export.host`.

Runtime settings, chosen by profiling (docs/performance.md, "Deployed models"): ONNX Runtime with all
graph optimisations (its NCHWc convolution layout included), ``intra_op_num_threads`` threads and
sequential execution; OpenVINO with the LATENCY hint, ``INFERENCE_NUM_THREADS`` threads and
``INFERENCE_PRECISION_HINT=f32`` (on CPUs with AMX or AVX512-BF16, OpenVINO would otherwise run an fp32
model in bfloat16: faster, but not the fp32 model; the int8 layers of an int8 model stay int8).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcos.config import FCOSConfig
from fcos.utils.optional import require

__all__ = ["EXPORT_SUFFIXES", "ExportedModel", "ExportedModelError", "backend_for", "load_exported"]

# file suffix -> runtime
EXPORT_SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino"}
INPUTS = ("images", "image_sizes")
OUTPUTS = {True: ("boxes", "scores", "labels", "num_detections"), False: ("boxes", "scores", "labels")}


class ExportedModelError(ValueError):
    """An exported file that cannot be run: unreadable, corrupt, not an fcos export, or whose metadata
    does not match its graph. The message names the file."""


def backend_for(path: str | Path) -> str | None:
    """The runtime that runs ``path`` by its suffix (``.onnx``: onnxruntime, ``.xml``: openvino), else None."""
    return EXPORT_SUFFIXES.get(Path(path).suffix.lower())


@dataclass
class ExportedModel:
    """An exported detector ready to run: ``run`` takes :func:`fcos.export.host.prepare_inputs`' arrays and
    returns the graph's outputs (numpy, in the order of :data:`OUTPUTS`)."""

    path: Path
    backend: str
    metadata: dict[str, Any]
    config: FCOSConfig
    _run: Any = field(repr=False)

    @property
    def nms_in_graph(self) -> bool:
        return bool(self.metadata["nms"])

    @property
    def img_size(self) -> list[int] | None:
        return self.metadata["preprocessing"]["img_size"]

    @property
    def precision(self) -> str:
        return str(self.metadata.get("precision", "fp32"))

    def run(self, images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        return self._run(images, image_sizes)


def load_exported(path: str | Path, backend: str | None = None, device: str = "cpu", num_threads: int = 1) -> ExportedModel:
    """Open an exported model with ``backend`` (default: by suffix) on ``device`` with ``num_threads`` threads.

    Raises:
        FileNotFoundError: no such file.
        ExportedModelError: the file cannot be read, is not an fcos export, or its metadata and graph disagree.
        MissingExtraError: the runtime is not installed (the message names the extra).
    """
    path = Path(path)
    backend = backend or backend_for(path)
    if backend not in ("onnxruntime", "openvino"):
        raise ValueError(f"no runtime for {path}: exported models are .onnx (onnxruntime) or .xml (openvino)")
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    loader = _load_onnxruntime if backend == "onnxruntime" else _load_openvino
    metadata, inputs, outputs, run = loader(path, device, num_threads)
    try:
        config = FCOSConfig.from_dict(metadata["config"])
        _check(metadata, config, inputs, outputs)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportedModelError(f"cannot use exported model {path}: {exc}") from None
    return ExportedModel(path, backend, metadata, config, run)


def _check(meta: dict[str, Any], config: FCOSConfig, inputs: list[str], outputs: list[str]) -> None:
    """The metadata agrees with itself and with the graph's inputs and outputs."""
    for key in ("class_names", "category_ids", "preprocessing", "nms"):
        if key not in meta:
            raise ValueError(f"its metadata has no {key!r}")
    if not len(meta["class_names"]) == len(meta["category_ids"]) == config.num_classes:
        raise ValueError(f"its metadata names {len(meta['class_names'])} classes and {len(meta['category_ids'])} "
                         f"category ids for a {config.num_classes}-class model")
    if sorted(inputs) != sorted(INPUTS):
        raise ValueError(f"the graph's inputs are {inputs}, expected {list(INPUTS)}")
    expected = OUTPUTS[bool(meta["nms"])]
    if list(outputs) != list(expected):
        raise ValueError(f"the graph's outputs are {outputs}, expected {list(expected)} (metadata nms={meta['nms']})")


def _load_onnxruntime(path: Path, device: str, num_threads: int):
    ort = require("onnxruntime", f"running {path.name}")
    from fcos.export.onnx import decode_metadata

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


def _load_openvino(path: Path, device: str, num_threads: int):
    ov = require("openvino", f"running {path.name}")
    from fcos.export.openvino import openvino_metadata

    if device != "cpu":
        raise ValueError(f"device {device!r}: fcos runs OpenVINO models on the CPU only")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ExportedModelError(f"cannot load OpenVINO model {path}: its weights file {weights} is missing")
    core = ov.Core()
    try:
        model = core.read_model(str(path), str(weights))
        meta = openvino_metadata(model)
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": num_threads,
                                                     "INFERENCE_PRECISION_HINT": "f32"})
    except ValueError as exc:
        raise ExportedModelError(f"cannot use {path}: {exc}") from None
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own for bad files
        raise ExportedModelError(f"cannot load OpenVINO model {path}: {str(exc).strip().splitlines()[0]}") from None
    names = [o.get_any_name() for o in compiled.outputs]
    local = threading.local()  # an infer request serves one call at a time: one per thread (fcos serve)

    def run(images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        if not hasattr(local, "request"):
            local.request = compiled.create_infer_request()
        results = local.request.infer({"images": images, "image_sizes": image_sizes})
        return [np.array(results[out]) for out in compiled.outputs]

    return meta, [i.get_any_name() for i in compiled.inputs], names, run

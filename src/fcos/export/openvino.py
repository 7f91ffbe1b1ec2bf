"""OpenVINO IR export (``model.xml`` + ``model.bin``) of :class:`fcos.export.graph.DetectorGraph`.

The graph is traced once, to ONNX (:func:`fcos.export.onnx.export_onnx`: the same network, decoding and
NMS, fp32 or int8 QDQ), and converted by OpenVINO's ONNX frontend (``openvino.Core.read_model``, what
``openvino.convert_model`` runs for an ONNX file, without its telemetry), then written with
``openvino.save_model``. So both runtimes run one graph, with one calibration for int8: OpenVINO maps
each QuantizeLinear/DequantizeLinear pair to its own FakeQuantize and runs those convolutions in int8.
(NNCF, OpenVINO's own quantizer, would quantize the same layers with the same min/max rule; one tool
keeps the two int8 files comparable and the install small.)

Weights are stored as written: fp32 stays fp32 (``compress_to_fp16=False``; OpenVINO's default would
halve the file with fp16 weights), int8 weights stay int8. The metadata (:func:`fcos.export.onnx.read_metadata`'s
keys: class names, category ids, config, preprocessing contract, precision) is stored in the IR's
``rt_info`` under ``fcos``, with ``format`` = ``fcos-openvino/1``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fcos.export.calibration import Calibration
from fcos.export.contract import ExportedModelError, Loaded
from fcos.export.onnx import DEFAULT_OPSET, decode_metadata, export_onnx, read_metadata
from fcos.utils.files import WriteError, check_output
from fcos.utils.flags import SettingError
from fcos.utils.optional import require

__all__ = ["FORMAT", "export_openvino", "load_openvino", "openvino_metadata"]

FORMAT = "fcos-openvino/1"
RT_KEY = "fcos"


def export_openvino(
    weights: str | Path,
    out: str | Path,
    img_size: Sequence[int] | None = None,
    dynamic: bool = False,
    nms: bool = True,
    int8: Calibration | None = None,
    conv3x3: str = "auto",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a checkpoint to OpenVINO IR: ``out`` (``.xml``) and the ``.bin`` beside it, written atomically
    (the ``.bin`` first, then the ``.xml`` that names it). Arguments as :func:`fcos.export.onnx.export_onnx`.

    ``weights`` may also be an fcos ``.onnx`` export (fp32 or int8): it is converted as it is, so the two
    files run the very same graph (the other arguments must then keep their defaults)."""
    ov = require("openvino", "OpenVINO export")
    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise SettingError(f"an OpenVINO model is written as .xml + .bin: give --out a .xml path, not {out}")
    from_onnx = Path(weights).suffix.lower() == ".onnx"
    if from_onnx and (img_size is not None or dynamic or not nms or int8 is not None or conv3x3 != "auto"
                      or opset != DEFAULT_OPSET):
        raise SettingError(f"{weights} is already exported: its input size, batch axis, NMS, precision and "
                         "convolutions are fixed; "
                         "export the checkpoint instead to change them")
    for path in (out, out.with_suffix(".bin")):  # a folder or an unwritable place is named before the work
        check_output(path)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        onnx_path = Path(weights) if from_onnx else export_onnx(
            weights, Path(tmp) / "model.onnx", img_size=img_size, dynamic=dynamic, nms=nms, opset=opset, int8=int8,
            conv3x3=conv3x3)
        meta = read_metadata(onnx_path)
        model = ov.Core().read_model(str(onnx_path))
        for key, value in _strings(meta).items():
            model.set_rt_info(value, [RT_KEY, key])
        model.set_rt_info(FORMAT, [RT_KEY, "format"])
        staged = Path(tmp) / out.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        for path in (out.with_suffix(".bin"), out):  # the .bin first: the .xml names it
            try:
                os.replace(staged.with_name(path.name), path)
            except OSError as exc:
                raise WriteError.from_error(path, exc) from exc
    return out


def _strings(meta: dict[str, Any]) -> dict[str, str]:
    import json

    return {k: (v if k in ("format", "opset") else json.dumps(v)) for k, v in meta.items()}


def openvino_metadata(model: Any) -> dict[str, Any]:
    """The fcos metadata of an ``openvino.Model`` read from an exported ``.xml``, JSON values decoded."""
    if not model.has_rt_info([RT_KEY, "format"]):
        raise ValueError("not an fcos export: this OpenVINO model has no fcos metadata (rt_info 'fcos'); "
                         "export it with `fcos export --format openvino`")
    info = model.get_rt_info()[RT_KEY]
    props = {str(k): model.get_rt_info([RT_KEY, str(k)]).astype(str) for k in info.keys()}
    return decode_metadata(props, "OpenVINO model")


def load_openvino(path: Path, device: str, num_threads: int) -> Loaded:
    """Compile ``path`` (and the ``.bin`` beside it) for OpenVINO's CPU plugin (settings:
    :mod:`fcos.export.runtime`'s docstring)."""
    ov = require("openvino", f"running {path.name}")
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

"""Deployment exports: a traceable detector graph (:mod:`fcos.export.graph`), its host-side pre- and
post-processing (:mod:`fcos.export.host`), the writers (:mod:`fcos.export.onnx`, :mod:`fcos.export.openvino`),
int8 calibration and quantization (:mod:`fcos.export.calibration`, :mod:`fcos.export.quantize`) and the
runtimes that run the files (:mod:`fcos.export.runtime`). ONNX Runtime and OpenVINO are optional extras
(:mod:`fcos.extras`); this package imports them only when a function needs them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fcos.export.calibration import DEFAULT_CALIB_IMAGES, Calibration, calibration_inputs
from fcos.export.graph import DetectorGraph, nms_dense
from fcos.export.host import finish, input_shape, prepare_inputs
from fcos.export.onnx import DEFAULT_OPSET, export_onnx, read_metadata
from fcos.export.openvino import export_openvino
from fcos.export.runtime import EXPORT_SUFFIXES, ExportedModel, ExportedModelError, backend_for, load_exported
from fcos.utils.optional import MissingExtraError, require

__all__ = [
    "DEFAULT_CALIB_IMAGES",
    "DEFAULT_OPSET",
    "EXPORT_SUFFIXES",
    "FORMATS",
    "Calibration",
    "DetectorGraph",
    "ExportedModel",
    "ExportedModelError",
    "MissingExtraError",
    "calibration_inputs",
    "backend_for",
    "export",
    "export_onnx",
    "export_openvino",
    "finish",
    "input_shape",
    "load_exported",
    "nms_dense",
    "prepare_inputs",
    "read_metadata",
    "require",
]

FORMATS = {"onnx": ".onnx", "openvino": ".xml"}


def export(
    weights: str | Path,
    out: str | Path,
    format: str = "onnx",
    *,
    img_size: Sequence[int] | None = None,
    dynamic: bool = False,
    nms: bool = True,
    opset: int = DEFAULT_OPSET,
    int8: Calibration | None = None,
    conv3x3: str = "auto",
) -> Path:
    """Export ``weights`` to ``format`` ("onnx": one ``.onnx``; "openvino": ``.xml`` + ``.bin``), fp32, or
    int8 calibrated as ``int8`` says; ``conv3x3`` as :func:`fcos.export.onnx.export_onnx`. Returns the
    written file (the ``.xml`` for OpenVINO)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {sorted(FORMATS)}")
    if format == "onnx":
        return export_onnx(weights, out, img_size=img_size, dynamic=dynamic, nms=nms, opset=opset, int8=int8,
                           conv3x3=conv3x3)
    return export_openvino(weights, out, img_size=img_size, dynamic=dynamic, nms=nms, int8=int8, conv3x3=conv3x3)

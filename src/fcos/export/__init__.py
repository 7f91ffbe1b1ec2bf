"""Deployment exports: the formats, one table (:mod:`fcos.export.formats`: ONNX for ONNX Runtime,
OpenVINO IR), each a module with its writer and its loader (:mod:`fcos.export.onnx`,
:mod:`fcos.export.openvino`); the traceable detector graph they share (:mod:`fcos.export.graph`), its
host-side pre- and post-processing (:mod:`fcos.export.host`), what every exported file holds
(:mod:`fcos.export.contract`), int8 calibration and quantization (:mod:`fcos.export.calibration`,
:mod:`fcos.export.quantize`) and running a file (:mod:`fcos.export.runtime`). ONNX Runtime and OpenVINO
are optional extras (:mod:`fcos.utils.optional`); this package imports them only when a function needs them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fcos.export.calibration import DEFAULT_CALIB_IMAGES, Calibration, calibration_inputs
from fcos.export.contract import ExportedModelError
from fcos.export.formats import FORMATS, ExportFormat, format_for, format_named
from fcos.export.graph import DetectorGraph, nms_dense
from fcos.export.host import finish, input_shape, prepare_inputs
from fcos.export.onnx import DEFAULT_OPSET, export_onnx, read_metadata
from fcos.export.openvino import export_openvino
from fcos.export.runtime import ExportedModel, backend_for, load_exported
from fcos.utils.optional import MissingExtraError, require

__all__ = [
    "DEFAULT_CALIB_IMAGES",
    "DEFAULT_OPSET",
    "FORMATS",
    "Calibration",
    "DetectorGraph",
    "ExportFormat",
    "ExportedModel",
    "ExportedModelError",
    "MissingExtraError",
    "backend_for",
    "calibration_inputs",
    "export",
    "export_onnx",
    "export_openvino",
    "finish",
    "format_for",
    "format_named",
    "input_shape",
    "load_exported",
    "nms_dense",
    "prepare_inputs",
    "read_metadata",
    "require",
]


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
    """Export ``weights`` (a checkpoint or a pretrained name; or a file of the format ``format``
    converts) to ``format`` (:data:`~fcos.export.formats.FORMATS`: "onnx", one ``.onnx``; "openvino",
    ``.xml`` + ``.bin``), fp32, or int8 calibrated as ``int8`` says; ``conv3x3`` as
    :func:`fcos.export.onnx.export_onnx`. Returns the written file (the ``.xml`` for OpenVINO)."""
    return format_named(format).write(weights, out, img_size=img_size, dynamic=dynamic, nms=nms, opset=opset,
                                      int8=int8, conv3x3=conv3x3)

"""Deployment exports: a traceable detector graph (:mod:`fcos.export.graph`), its host-side pre- and
post-processing (:mod:`fcos.export.host`) and the ONNX writer (:mod:`fcos.export.onnx`). A new format
adds one module next to ``onnx.py`` that traces the same :class:`DetectorGraph`."""

from fcos.export.graph import DetectorGraph, nms_dense
from fcos.export.host import finish, input_shape, prepare_inputs
from fcos.export.onnx import DEFAULT_OPSET, export_onnx, read_metadata

__all__ = [
    "DEFAULT_OPSET",
    "DetectorGraph",
    "export_onnx",
    "finish",
    "input_shape",
    "nms_dense",
    "prepare_inputs",
    "read_metadata",
]

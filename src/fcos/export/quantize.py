"""int8 for exported graphs: static post-training quantization of the ONNX graph with ONNX Runtime's
tools (``onnxruntime.quantization``), calibrated on real images (:mod:`fcos.export.calibration`).

What becomes int8 and what stays float:

- int8: the network's convolutions (backbone, FPN, head towers) and, in the backbone and FPN, the
  element-wise ops between them that ONNX Runtime's QDQ rules quantize (residual ``Add``, ``MaxPool``,
  the FPN's upsampling), as
  QuantizeLinear/DequantizeLinear pairs around them (the QDQ format, which ONNX Runtime fuses into int8
  kernels and OpenVINO turns into its own int8 convolutions); activations uint8 (asymmetric),
  weights int8 per output channel (symmetric), ranges from min/max over the calibration images.
- float: everything after the network (points, decoding, top-k, NMS), the input normalisation, the
  layers in :data:`KEEP_FLOAT` (measured on the demo model, see docs/deploy.md): the head's last
  convolutions, whose outputs are the logits and box distances themselves, and every head op that is not
  a convolution (GroupNorm, ReLU, the per-level scale and stride, softplus/exp, sigmoid). Quantizing
  those put the box distances (up to hundreds of pixels) on a uint8 grid of a few pixels per step: on
  the `make demo` model it cost 0.022 AP, float it costs 0.001.

Min/max calibration is a pure function of the calibration inputs, so the same images (the same seed)
give the same int8 model.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fcos.utils.optional import require

__all__ = ["KEEP_FLOAT", "network_node", "quantize_onnx"]

# Layers (PyTorch module paths) whose convolutions stay float: the prediction layers, whose outputs are
# the logits and box distances themselves (their int8 error is an output error; docs/deploy.md).
BOX_CTR = "head.box_ctr"  # the fused box + centerness conv (FCOSHead.forward with centerness_on_reg)
KEEP_FLOAT: tuple[str, ...] = ("head.cls_logits", "head.box_pred", "head.centerness", BOX_CTR)

_NETWORK = re.compile(r"^/(model/)?(backbone|fpn|head)/")
_HEAD = re.compile(r"^/(model/)?head/")


def network_node(name: str) -> bool:
    """True for a node of the network (backbone, FPN, head) in a traced :class:`DetectorGraph`."""
    return bool(_NETWORK.match(name))


def quantizable(node: Any) -> bool:
    """A network node that may become int8: any in the backbone and FPN, only convolutions in the head."""
    return network_node(node.name) and (node.op_type == "Conv" or not _HEAD.match(node.name))


def _kept_float(node: Any, keep_float: Sequence[str]) -> bool:
    """A Conv node of one of the ``keep_float`` layers: by its weight (the PyTorch parameter name, when
    the exporter kept it) or by its traced scope (``/backbone/conv1/Conv`` is ``backbone.conv1``;
    BatchNorm folding leaves the weight anonymous)."""
    if node.op_type != "Conv":
        return False
    weight = node.input[1].removeprefix("model.")
    scope = node.name.removeprefix("/model").strip("/").replace("/", ".")
    for layer in keep_float:
        if layer == BOX_CTR:
            # The head's fused box + centerness conv: a functional conv on a folded (anonymous) weight.
            if scope.startswith("head.Conv") and not weight.startswith("head."):
                return True
        elif weight.startswith(layer + ".") or scope.startswith(layer + "."):
            return True
    return False


class _Reader:
    """onnxruntime's CalibrationDataReader over a fixed list of inputs."""

    def __init__(self, inputs: Sequence[dict[str, np.ndarray]]) -> None:
        self._inputs = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._inputs, None)


def quantize_onnx(
    src: str | Path, dst: str | Path, inputs: Sequence[dict[str, np.ndarray]], keep_float: Sequence[str] = KEEP_FLOAT
) -> dict[str, Any]:
    """Write the int8 (QDQ) version of the fp32 graph ``src`` to ``dst``, calibrated on ``inputs``
    (graph inputs, :func:`fcos.export.calibration.calibration_inputs`). Returns a description for the
    metadata: quantized and float convolution counts, the float layers and the method."""
    onnx = require("onnx", "int8 quantization")
    require("onnxruntime", "int8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not inputs:
        raise ValueError("int8 calibration needs at least one input")
    with tempfile.TemporaryDirectory(prefix="fcos-int8-") as tmp:
        # ONNX Runtime's basic graph optimisations first: they fold the exporter's Identity nodes, so each
        # Conv's bias is an initializer and DQ -> Conv -> Q fuses into an int8 kernel (else the conv runs in
        # float between a dequantize and a quantize, slower than fp32).
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        nodes = [n for n in graph.node if network_node(n.name)]
        floats = [n.name for n in nodes if _kept_float(n, keep_float)]
        quantized = [n.name for n in nodes if quantizable(n) and n.name not in set(floats)]
        quantize_static(
            str(prepared),
            str(dst),
            _Reader(inputs),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_quantize=quantized,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    convs = sum(1 for n in nodes if n.op_type == "Conv")
    return {"method": "onnxruntime static QDQ, uint8 activations (min/max), int8 per-channel weights",
            "int8_convs": convs - len(floats), "float_convs": len(floats), "keep_float": list(keep_float)}

"""3x3 stride-1 convolution layer that picks its algorithm (direct or Winograd) per input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fcos.ops import winograd

__all__ = ["AUTO_MIN_POINTS", "Conv3x3"]

# "auto" uses Winograd on CPU maps with at least this many points: below it (16x16 and smaller) the
# transforms cost more than they save (measured on a 2-core AVX-512 CPU, 256 channels).
AUTO_MIN_POINTS = 32 * 32


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 3, padding=1)`` with a choice of algorithm.

    Same parameters and state dict as the ``nn.Conv2d`` it replaces. ``algorithm``: "direct",
    "winograd" (wherever :func:`fcos.ops.winograd.supported`) or "auto" (see ``FCOSConfig.conv3x3``).
    :meth:`forward_levels` transforms the filter once for all pyramid levels sharing it. Traced into an
    exported graph, the same choice picks :func:`fcos.ops.winograd.conv3x3_graph` or a plain Conv node
    (the exporter sets ``algorithm``: :func:`fcos.export.onnx.export_onnx`).
    """

    def __init__(self, in_channels: int, out_channels: int, algorithm: str = "auto") -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        self.algorithm = algorithm

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_levels([x])[0]

    def forward_levels(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """[x_l [B, C_in, H_l, W_l]] -> [[B, C_out, H_l, W_l]]."""
        filt = u = None
        outputs = []
        for x in xs:
            if self.uses_winograd(x):
                filt = filt if filt is not None else winograd.transform_filter(self.weight)
                outputs.append(winograd.conv3x3(x, filt, self.bias))
            elif self.exports_winograd(x):
                u = u if u is not None else winograd.graph_filter(self.weight)
                outputs.append(winograd.conv3x3_graph(x, u, self.bias))
            else:
                outputs.append(super().forward(x))
        return outputs

    def uses_winograd(self, x: Tensor) -> bool:
        # Under torch.compile: direct. The eager Winograd writes its transforms into strided views
        # (out=) and streams them through generators, which dynamo cannot trace without graph breaks;
        # compiled, the convolutions run in oneDNN / cuDNN as in any compiled model.
        if self.algorithm == "direct" or torch.compiler.is_compiling() or not winograd.supported(x, self.weight):
            return False
        return self.algorithm == "winograd" or (x.device.type == "cpu" and _large(x))

    def exports_winograd(self, x: Tensor) -> bool:
        """Whether this level's convolution is traced as Winograd operators (ONNX export only; the same
        size rule as "auto", whatever the device: the exported graph is meant for CPU runtimes)."""
        if not torch.onnx.is_in_onnx_export() or self.algorithm == "direct":
            return False
        return self.algorithm == "winograd" or _large(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.algorithm}"


def _large(x: Tensor) -> bool:
    """Whether "auto" picks Winograd for this map: at least AUTO_MIN_POINTS points."""
    return x.shape[-2] * x.shape[-1] >= AUTO_MIN_POINTS

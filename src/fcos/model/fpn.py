"""Feature pyramid P3..P7 (FCOS paper Sec. 3.2; Lin et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from fcos.config import FPNConfig
from fcos.model.conv import Conv3x3

__all__ = ["FPN"]


class FPN(nn.Module):
    """[C3, C4, C5] -> [P3, P4, P5, P6, P7], every level with ``config.channels`` channels.

    P3..P5: 1x1 lateral convs plus nearest-neighbour top-down sums, then a 3x3 output conv.
    P6 = conv3x3/s2 on P5 (or C5), P7 = conv3x3/s2 on relu(P6), as in the paper and torchvision.
    """

    def __init__(self, in_channels: Sequence[int], config: FPNConfig, conv3x3: str = "direct") -> None:
        super().__init__()
        channels = config.channels
        self.extra_from = config.extra_from
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(Conv3x3(channels, channels, conv3x3) for _ in in_channels)
        p6_in = channels if config.extra_from == "p5" else in_channels[-1]
        self.p6 = nn.Conv2d(p6_in, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        inner = self.lateral[-1](features[-1])
        outputs = [self.output[-1](inner)]
        for idx in range(len(features) - 2, -1, -1):
            lateral = self.lateral[idx](features[idx])
            # size= (not scale_factor=2) so odd feature sizes never break the sum.
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.output[idx](inner))
        p6 = self.p6(outputs[-1] if self.extra_from == "p5" else features[-1])
        p7 = self.p7(F.relu(p6))
        return [*outputs, p6, p7]

"""Shared FCOS head: classification, box regression and centerness for every FPN level.

The head returns raw outputs only; assignment, losses and decoding live elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcos.config import HeadConfig
from fcos.model.conv import Conv3x3
from fcos.structures import HeadOutputs

__all__ = ["FCOSHead", "Scale"]


class Scale(nn.Module):
    """Learnable scalar multiplying one level's regression output (official FCOS ``Scale``)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def _tower(channels: int, num_convs: int, groups: int, conv3x3: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [Conv3x3(channels, channels, conv3x3), nn.GroupNorm(groups, channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _run_tower(tower: nn.Sequential, features: Sequence[Tensor]) -> list[Tensor]:
    """Layer by layer over all levels, so each conv prepares its (shared) filter once."""
    xs = list(features)
    for layer in tower:
        xs = layer.forward_levels(xs) if isinstance(layer, Conv3x3) else [layer(x) for x in xs]
    return xs


class FCOSHead(nn.Module):
    """[P3..P7] each [B, C_fpn, H_l, W_l] -> :class:`HeadOutputs`.

    Two towers of ``num_convs`` x (conv3x3, GroupNorm, ReLU) shared across levels; box distances are
    relu(scale_l * x) * stride_l with normalised targets (official "improvements"; softplus in place of
    relu with ``regression="softplus"``) or exp(scale_l * x).
    """

    def __init__(
        self, in_channels: int, num_classes: int, config: HeadConfig, strides: Sequence[int], conv3x3: str = "direct"
    ) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.cls_tower = _tower(in_channels, config.num_convs, config.norm_groups, conv3x3)
        self.box_tower = _tower(in_channels, config.num_convs, config.norm_groups, conv3x3)
        self.cls_logits = Conv3x3(in_channels, num_classes, conv3x3)
        # 4 + 1 output channels: too few for Winograd's transforms to pay off.
        self.box_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in strides) if config.learnable_scales else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        # Focal-loss prior: every location starts as background with probability 1 - prior_prob.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - config.prior_prob) / config.prior_prob))

    def forward(self, features: Sequence[Tensor]) -> HeadOutputs:
        cls_all, box_all, ctr_all, shapes = [], [], [], []
        if self.config.centerness_on_reg:
            # One conv for box distances and centerness (same input): saves a pass over the features.
            box_ctr_weight = torch.cat((self.box_pred.weight, self.centerness.weight))
            box_ctr_bias = torch.cat((self.box_pred.bias, self.centerness.bias))
        cls_feats, box_feats = _run_tower(self.cls_tower, features), _run_tower(self.box_tower, features)
        cls_logits = self.cls_logits.forward_levels(cls_feats)
        for level, (x, cls_feat, box_feat) in enumerate(zip(features, cls_feats, box_feats, strict=True)):
            cls_all.append(_flatten(cls_logits[level]))
            if self.config.centerness_on_reg:
                box_ctr = F.conv2d(box_feat, box_ctr_weight, box_ctr_bias, padding=1)
                box_raw, ctr_raw = box_ctr[:, :4], box_ctr[:, 4:]
            else:
                box_raw, ctr_raw = self.box_pred(box_feat), self.centerness(cls_feat)
            box_all.append(_flatten(self._distances(box_raw, level)))
            ctr_all.append(_flatten(ctr_raw).squeeze(-1))
            shapes.append((x.shape[-2], x.shape[-1]))
        return HeadOutputs(torch.cat(cls_all, 1), torch.cat(box_all, 1), torch.cat(ctr_all, 1), shapes)

    def _distances(self, raw: Tensor, level: int) -> Tensor:
        if self.scales is not None:
            raw = self.scales[level](raw)
        if self.config.norm_reg_targets:
            positive = F.softplus(raw) if self.config.regression == "softplus" else F.relu(raw)
            return positive * self.strides[level]
        return raw.exp()


def _flatten(x: Tensor) -> Tensor:
    """[B, K, H, W] -> [B, H * W, K] (row-major points, the order of :mod:`fcos.model.points`)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])

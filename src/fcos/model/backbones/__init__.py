"""Backbones: images [B, 3, H, W] -> [C3, C4, C5] at strides 8, 16, 32.

``BACKBONES`` names torchvision's families (ResNet, ResNeXt, Wide ResNet, MobileNetV3, EfficientNet,
ConvNeXt, RegNet); ``timm:<model>`` takes any timm model with ``features_only``; ``FCOS(config,
backbone=module)`` takes a ready module. ``fcos models`` lists them with their ImageNet weights.
"""

from __future__ import annotations

from typing import Any

from fcos.config import BackboneConfig
from fcos.model.backbones.base import Backbone, BackboneError, freeze_batchnorm, unit_stages
from fcos.model.backbones.custom import CUSTOM_PREFIX, ModuleBackbone
from fcos.model.backbones.timm_models import TIMM_PREFIX, TimmBackbone, timm_input_stats
from fcos.model.backbones.torchvision_models import (
    TORCHVISION_BACKBONES,
    TorchvisionBackbone,
    TorchvisionSpec,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneError",
    "ModuleBackbone",
    "TIMM_PREFIX",
    "TorchvisionSpec",
    "backbone_input_stats",
    "build_backbone",
    "check_backbone_name",
    "freeze_batchnorm",
    "unit_stages",
]

BACKBONES: dict[str, TorchvisionSpec] = TORCHVISION_BACKBONES


def check_backbone_name(name: str) -> str:
    """``name`` if it names a backbone (a key of BACKBONES or ``timm:<model>``), else BackboneError."""
    if name in BACKBONES or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)):
        return name
    raise BackboneError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)} or timm:<model>")


def build_backbone(config: BackboneConfig) -> Backbone:
    if config.name.startswith(CUSTOM_PREFIX):
        raise BackboneError(
            f"backbone {config.name!r} was a module given to FCOS(config, backbone=module): "
            "build the model the same way again, then load the state dict"
        )
    check_backbone_name(config.name)
    if config.name.startswith(TIMM_PREFIX):
        return TimmBackbone(config)
    return TorchvisionBackbone(BACKBONES[config.name], config)


def backbone_input_stats(name: str, weights: str | None) -> dict[str, Any]:
    """Input mean/std the pretrained weights expect when they are not ImageNet's (config.input's
    default): torchvision's all use ImageNet's; timm states each model's own."""
    if weights and name.startswith(TIMM_PREFIX):
        return timm_input_stats(name)
    return {}

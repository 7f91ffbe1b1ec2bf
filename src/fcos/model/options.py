"""The model options ``fcos train`` and the demo expose (input size, FPN width, head depth, backbone
weights and freezing) as config overrides on a preset: :func:`size_options`, :func:`model_config_for`."""

from __future__ import annotations

import math
from typing import Any

from fcos import config as presets
from fcos.config import FCOSConfig
from fcos.model.backbones import backbone_input_stats

__all__ = ["model_config_for", "size_options"]


def size_options(img_size: int | None = None, fpn_channels: int | None = None, head_convs: int | None = None,
                 frozen_stages: int | None = None) -> dict[str, Any]:
    """The model flags shared by training from scratch and fine-tuning, as config overrides (the ones
    given only): ``img_size`` caps both sides (and ends multi-scale training sizes), ``fpn_channels``
    sets the GroupNorm groups with it, ``head_convs`` the towers' depth, ``frozen_stages`` the freezing."""
    extra: dict[str, Any] = {}
    if img_size is not None:
        extra |= {"input.min_size": img_size, "input.max_size": img_size, "input.train_min_sizes": ()}
    if fpn_channels is not None:
        extra |= {"fpn.channels": fpn_channels, "head.norm_groups": math.gcd(fpn_channels // 2, 32)}
    if head_convs is not None:
        extra["head.num_convs"] = head_convs
    if frozen_stages is not None:
        extra["backbone.frozen_stages"] = frozen_stages
    return extra


def model_config_for(
    num_classes: int,
    *,
    preset: str = "official",
    backbone: str = "resnet50",
    img_size: int | None = None,
    fpn_channels: int | None = None,
    head_convs: int | None = None,
    backbone_weights: str | None = None,
    frozen_stages: int | None = None,
    **changes: Any,
) -> FCOSConfig:
    """A model config from a preset plus the options the CLI exposes.

    ``img_size`` caps the longer side (min_size = max_size = img_size), the usual meaning for
    training on small images. ``backbone_weights``: None, "imagenet", a torchvision weights name or a
    file (:class:`fcos.config.BackboneConfig`); ``frozen_stages`` overrides the "auto" freezing.
    """
    extra = {**size_options(img_size, fpn_channels, head_convs, frozen_stages), **changes}
    if backbone_weights is not None:
        extra["backbone.weights"] = backbone_weights
    # Pretrained weights trained on other input statistics than ImageNet's (some timm models) set them.
    extra = {**{f"input.{k}": v for k, v in backbone_input_stats(backbone, backbone_weights).items()}, **extra}
    return presets.preset(preset, num_classes=num_classes, backbone=backbone, **extra)

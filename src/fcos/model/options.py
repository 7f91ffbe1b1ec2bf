"""The model options ``fcos train`` exposes (preset, backbone, input size, FPN width, head depth, backbone
weights and freezing, box regression, 3x3 convolutions), one typed :class:`ModelOptions` whose fields the
CLI turns into flags, and the config they give: from a preset (:meth:`ModelOptions.config`) or as
changes to another model's config (:meth:`ModelOptions.changes`: fine-tuning, ``fcos train --config``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fcos import config as presets
from fcos.config import Conv3x3Algorithm, FCOSConfig, PresetName, Regression
from fcos.model.backbones import backbone_input_stats, check_backbone_name
from fcos.utils.flags import IMAGE_SIDE, NON_NEGATIVE, Bound, check_bounds, option

__all__ = ["MODEL", "ModelOptions", "OptionConflictError", "model_config_for", "size_options"]

MODEL = "model"  # the flags' group in `fcos train --help`


class OptionConflictError(ValueError):
    """A model option contradicts the model it changes (its preset or backbone): a usage error."""


@dataclass(frozen=True)
class ModelOptions:
    """The model flags, each None unless given: training from scratch fills the rest from the preset, and
    fine-tuning (``--weights``) or a run's ``--config`` keep their model except where a flag is given."""

    preset: PresetName | None = option(None, "official (default) or torchvision semantics; with --weights: theirs",
                                       group=MODEL)
    # A validator, not argparse choices: timm:<model> is open-ended (the error lists the registered names).
    backbone: str | None = option(
        None, "resnet50 (default), a name `fcos models` lists, or timm:<model>", group=MODEL,
        parse=check_backbone_name, metavar="NAME")
    img_size: int | None = option(None, "longer image side (default: the preset's 800/1333 rule)", group=MODEL,
                                  bound=IMAGE_SIDE)
    fpn_channels: int | None = option(None, "FPN and head width (official 256)", group=MODEL, bound=Bound(2))
    head_convs: int | None = option(None, "convs per head tower (official 4)", group=MODEL, bound=NON_NEGATIVE)
    backbone_weights: str | None = option(
        None, "imagenet (downloaded once to the torch hub cache), a torchvision weights name or a local state "
        "dict; freezes BatchNorm, the stem and stage 1", group=MODEL, metavar="WEIGHTS")
    freeze_stages: int | None = option(
        None, "backbone stages frozen from the input: 0 none, 1 stem, 2 + stage 1 (pretrained default), 5 all",
        group=MODEL, metavar="N", bound=Bound(0, 5))
    regression: Regression | None = option(
        None, "box distances from the raw output: relu (official) or softplus (a gradient everywhere: no dead "
        "regression; the cpu recipe's default)", group=MODEL)
    conv3x3: Conv3x3Algorithm | None = option(
        None, "head/FPN 3x3 convolution algorithm (default: the preset's; auto = Winograd on CPU)", group=MODEL)

    def __post_init__(self) -> None:
        check_bounds(self)

    def changes(self) -> dict[str, Any]:
        """The given options other than preset, backbone and backbone weights, as config changes (dotted
        paths, :func:`fcos.config.override`)."""
        extra = size_options(self.img_size, self.fpn_channels, self.head_convs, self.freeze_stages)
        if self.regression is not None:
            extra["head.regression"] = self.regression
        if self.conv3x3 is not None:
            extra["conv3x3"] = self.conv3x3
        return extra

    def applied_to(self, config: FCOSConfig, source: str) -> FCOSConfig:
        """``config`` (another model's: pretrained weights, a run's ``config.yaml``, named ``source`` in
        errors) with the given options changed. Its preset and backbone stay: naming another is an
        :class:`OptionConflictError`; ``--backbone-weights`` re-initialises its backbone."""
        if self.preset is not None and self.preset != config.preset:
            raise OptionConflictError(f"--preset {self.preset}: {source} is a {config.preset!r} model; drop --preset")
        if self.backbone is not None and self.backbone != config.backbone.name:
            raise OptionConflictError(f"--backbone {self.backbone}: {source} has a {config.backbone.name} backbone; "
                                      "drop --backbone")
        extra = self.changes()
        if self.backbone_weights is not None:
            extra["backbone.weights"] = self.backbone_weights
        return presets.override(config, **extra)

    def config(self, num_classes: int, **defaults: Any) -> FCOSConfig:
        """The config of a model trained from scratch: the preset (official) and backbone (resnet50), then
        ``defaults`` (a recipe's model changes, :func:`fcos.engine.train_config.recipe_model`), then the
        given options."""
        return model_config_for(num_classes, preset=self.preset or "official", backbone=self.backbone or "resnet50",
                                backbone_weights=self.backbone_weights, **{**defaults, **self.changes()})


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

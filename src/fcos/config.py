"""Typed configuration for the FCOS detector.

Every default lives here, grouped by the stage of the data flow it configures:
input transform -> backbone -> fpn -> head -> points -> assignment -> loss -> decoding.
Configs are frozen dataclasses; derive variants with :func:`dataclasses.replace` or
:func:`override`, and build the two named presets with :func:`official` and :func:`torchvision_preset`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = [
    "AssignConfig",
    "BackboneConfig",
    "CONV3X3_ALGORITHMS",
    "DecodeConfig",
    "FCOSConfig",
    "FPNConfig",
    "HeadConfig",
    "InputConfig",
    "LossConfig",
    "PRESETS",
    "PresetName",
    "Regression",
    "PointsConfig",
    "STRIDES",
    "check_conv3x3",
    "check_field_type",
    "official",
    "override",
    "preset",
    "torchvision_preset",
]

INF = math.inf
# How 3x3 convolutions run: FCOSConfig.conv3x3 in the model, fcos.export.export's conv3x3 in exported graphs.
Conv3x3Algorithm = Literal["auto", "direct", "winograd"]
CONV3X3_ALGORITHMS: tuple[str, ...] = get_args(Conv3x3Algorithm)
# Box distances from the head's raw output (HeadConfig.regression).
Regression = Literal["relu", "softplus"]
# The named presets (PRESETS below): the official FCOS code's semantics, or torchvision's FCOS.
PresetName = Literal["official", "torchvision"]
# FPN levels P3..P7: one stride per level, fixed by the architecture (paper, Sec. 3.2).
STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)
# Paper Sec. 3.2: a point at level i regresses a box only if max(l, t, r, b) lies in m_{i-1}..m_i.
DEFAULT_SIZE_RANGES: tuple[tuple[float, float], ...] = (
    (-1.0, 64.0),
    (64.0, 128.0),
    (128.0, 256.0),
    (256.0, 512.0),
    (512.0, INF),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_conv3x3(value: str) -> str:
    """``value`` if it is one of :data:`CONV3X3_ALGORITHMS`, else a ValueError naming them."""
    if value not in CONV3X3_ALGORITHMS:
        raise ValueError(f"conv3x3 must be 'auto', 'direct' or 'winograd', got {value!r}")
    return value


@dataclass(frozen=True)
class InputConfig:
    """Resize / normalize / pad done inside the model (torchvision's GeneralizedRCNNTransform rule)."""

    min_size: int = 800  # shorter side target
    max_size: int = 1333  # longer side cap
    # Training picks the shorter side uniformly from these (multi-scale); empty = (min_size,).
    train_min_sizes: tuple[int, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, images in [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD
    size_divisible: int = 32  # pad the batch so P3..P5 divide the image exactly


@dataclass(frozen=True)
class BackboneConfig:
    # A name of fcos.model.backbones.BACKBONES (`fcos models` lists them) or "timm:<model>" for a timm
    # model with features_only (the optional `timm` extra). Every backbone gives C3, C4, C5 at strides 8/16/32.
    name: str = "resnet50"
    # None: random init. "imagenet": the family's ImageNet weights through torchvision's weights API
    # (timm: timm's own loading), read from the torch hub (timm: Hugging Face) cache and downloaded
    # there once when missing. Also a torchvision weights name ("ResNet50_Weights.IMAGENET1K_V2") or a
    # local state dict file. Checkpoints store the tensors, so reloading one never reads this again.
    weights: str | None = None
    # Stages frozen from the input side: 0 = none, 1 = stem, 2 = stem + stage 1 (official freeze_at=2),
    # ..., 5 = the whole backbone. Stage k is what runs at stride 2^(k+1) (the stem: up to stride 2 or
    # the first module). "auto" (-1) freezes stem + stage 1 only with pretrained weights: freezing a
    # random init is pointless.
    frozen_stages: int = -1
    # "frozen" (FrozenBatchNorm2d, official with ImageNet weights), "bn" (trainable), "auto":
    # frozen with weights, trainable from scratch (frozen random BN would mean no normalisation at all).
    # Backbones without BatchNorm (ConvNeXt's LayerNorm) are unaffected.
    norm: Literal["auto", "frozen", "bn"] = "auto"

    def resolved_norm(self) -> str:
        return self.norm if self.norm != "auto" else ("frozen" if self.weights else "bn")

    def resolved_frozen_stages(self) -> int:
        return self.frozen_stages if self.frozen_stages >= 0 else (2 if self.weights else 0)

    def without_weights(self) -> BackboneConfig:
        """The same network with no weights source: the "auto" choices that depended on the weights are
        made explicit, so a checkpoint (which holds the tensors) rebuilds it without reading them again."""
        return dataclasses.replace(self, weights=None, norm=self.resolved_norm(), frozen_stages=self.resolved_frozen_stages())


@dataclass(frozen=True)
class FPNConfig:
    channels: int = 256
    extra_from: Literal["p5", "c5"] = "p5"  # source of P6/P7: P5 (FCOS paper) or C5 (RetinaNet)


@dataclass(frozen=True)
class HeadConfig:
    num_convs: int = 4  # conv3x3 + GroupNorm + ReLU per tower
    norm_groups: int = 32
    prior_prob: float = 0.01  # classification bias init (focal loss paper)
    centerness_on_reg: bool = True  # "improvements": centerness predicted from the regression tower
    norm_reg_targets: bool = True  # relu(x) * stride (True) or exp(x) in pixels (paper's original)
    # With norm_reg_targets: relu (official) or softplus of scale_l * x, times the stride. A relu output
    # below zero has no gradient, and neither has the IoU loss of a zero-size box: a regression pushed
    # negative everywhere stays dead. softplus is positive with a gradient everywhere, so it comes back.
    regression: Regression = "relu"
    learnable_scales: bool = True  # a learnable scalar per level multiplies the regression output


@dataclass(frozen=True)
class PointsConfig:
    """Where the feature-map points sit in the padded input image."""

    # Official FCOS puts point (i, j) at (j * s + s // 2, i * s + s // 2); torchvision at (j * s, i * s).
    offset: float = 0.5  # in units of stride
    # torchvision derives each level's step as padded_size // feature_size (61 instead of 64 for P6
    # at 800 px), while the official code uses the nominal stride. Only the torchvision preset sets this.
    step_from_shape: bool = False


@dataclass(frozen=True)
class AssignConfig:
    size_ranges: tuple[tuple[float, float], ...] = DEFAULT_SIZE_RANGES
    # True: lo <= max(ltrb) <= hi (official); False: lo < max(ltrb) < hi (torchvision).
    ranges_inclusive: bool = True
    # 0 = the whole box is positive (paper); > 0 = only points within radius * stride of the box
    # centre, clipped to the box ("center sampling" improvement, radius 1.5).
    center_sampling_radius: float = 1.5
    # Ambiguous points go to the smallest box. "torchvision" reproduces its float32 key 1e8 - area,
    # which ties boxes whose areas differ by less than the float32 spacing at 1e8 (8 px^2).
    tie_break: Literal["min_area", "torchvision"] = "min_area"
    # Upper bound on (image, box, candidate point) triples held at once; larger batches are chunked.
    max_pairs: int = 4_000_000


@dataclass(frozen=True)
class LossConfig:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss: Literal["iou", "linear_iou", "giou", "diou", "ciou"] = "giou"
    # Official IOULoss (fcos_core/layers/iou_loss.py): IoU = (I + 1) / (U + 1) on stride-normalised
    # distances, i.e. + stride^2 px^2 per level; torchvision: plain I / U (0). The official code has
    # iou / linear_iou / giou only: diou and ciou (torchvision.ops) are never smoothed.
    iou_smoothing: float = 1.0
    # Official improvement: weight each positive's box loss by its centerness target and normalise
    # by the sum of those targets instead of the positive count.
    box_weight_by_centerness: bool = True
    cls_weight: float = 1.0
    box_weight: float = 1.0
    centerness_weight: float = 1.0


@dataclass(frozen=True)
class DecodeConfig:
    score_thresh: float = 0.05
    # "cls": threshold sigmoid(cls) (official); "score": threshold sqrt(cls * ctr) (torchvision).
    threshold_on: Literal["cls", "score"] = "cls"
    topk_per_level: int = 1000  # candidates kept per level before NMS
    nms_thresh: float = 0.6
    max_detections: int = 100  # per image, after NMS
    min_box_size: float = 0.0  # boxes narrower or shorter than this (input px) are dropped


@dataclass(frozen=True)
class FCOSConfig:
    num_classes: int = 80  # foreground classes; labels are 0 .. num_classes - 1
    input: InputConfig = field(default_factory=InputConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    preset: str = "official"  # informational: the preset this config started from
    # Speed only: NHWC activations let oneDNN (CPU) and cuDNN (tensor cores) skip layout reorders.
    # Inference is bit-identical to NCHW on CPU; in training, BatchNorm's batch statistics reduce in
    # another order (~1e-6 relative), so the bit-exact torchvision preset keeps NCHW.
    channels_last: bool = True
    # Speed only: how the 3x3 stride-1 convolutions of the FPN outputs and the head run. "direct":
    # the backend's convolution; "winograd": F(4x4, 3x3) minimal filtering (fcos.ops.winograd), ~1.8x
    # faster for 256 channels on a CPU, within a few 1e-6 of direct; "auto": winograd for CPU float32
    # maps of >= 32x32 points (the break-even measured on a 2-core AVX-512 CPU), direct elsewhere
    # (cuDNN picks its own algorithms). Low precision (autocast) always runs direct; exported graphs choose
    # for themselves (fcos.export.export's conv3x3).
    conv3x3: Conv3x3Algorithm = "auto"

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        check_conv3x3(self.conv3x3)
        if len(self.assign.size_ranges) != len(STRIDES):
            raise ValueError(f"assign.size_ranges needs one range per level ({len(STRIDES)})")
        if self.fpn.channels % self.head.norm_groups or self.fpn.channels // self.head.norm_groups < 2:
            # One channel per group cannot be normalised on a 1x1 level (P7 of a small image).
            raise ValueError(
                f"fpn.channels ({self.fpn.channels}) must be a multiple of head.norm_groups ({self.head.norm_groups}) "
                "with at least 2 channels per group"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FCOSConfig:
        return _from_dict(cls, data)


def _from_dict(kind: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from plain dicts/lists, rejecting unknown keys and values of
    another type than the field's (a YAML ``channels: wide``)."""
    names = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} field(s): {sorted(unknown)}")
    defaults = kind()
    values = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            values[name] = _from_dict(type(default), value)
        else:
            values[name] = check_field_type(kind, name, _to_tuple(value) if isinstance(value, list) else value)
    return kind(**values)


def check_field_type(kind: type, name: str, value: Any) -> Any:
    """``value`` if it has the type of the dataclass ``kind``'s field ``name`` (an int is a float; a bool
    is not a number), else ValueError naming the field, its type and the value."""
    hint = _field_types(kind)[name]
    if not _fits(value, hint):
        raise ValueError(f"{kind.__name__}.{name} must be {_describe(hint)}, got {value!r}")
    return value


_field_types = functools.cache(get_type_hints)  # a class's hints: evaluated once, not per field read


def _fits(value: Any, hint: Any) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, int if hint is int else int | float) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args, strict=True)))
    return True  # anything else (a nested config, Any): its own constructor checks it


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if hint is type(None):
        return "null"
    if origin is tuple:
        return "a list" + (f", each {_describe(args[0])}" if len(args) == 2 and args[1] is Ellipsis else
                           f" of {len(args)}" if args else "")
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def override(config: FCOSConfig, **changes: Any) -> FCOSConfig:
    """Copy of `config` with dotted-path changes, e.g. ``override(cfg, **{"head.num_convs": 2})``."""
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in changes.items():
        group, _, name = key.partition(".")
        if name:
            nested.setdefault(group, {})[name] = value
        else:
            top[key] = value
    for group, values in nested.items():
        top[group] = dataclasses.replace(getattr(config, group), **values)
    return dataclasses.replace(config, **top)


def official(num_classes: int = 80, backbone: str = "resnet50", **changes: Any) -> FCOSConfig:
    """Official FCOS with its "improvements" (FCOS_imprv configs, FCOS journal version Table 7):
    centerness on the regression branch, stride-normalised targets, center sampling r=1.5, GIoU,
    box loss weighted by centerness targets; inference threshold 0.05, top 1000 per level, NMS 0.6, 100 dets.
    """
    base = FCOSConfig(num_classes=num_classes, backbone=BackboneConfig(name=backbone), preset="official")
    return override(base, **changes)


def torchvision_preset(num_classes: int = 91, backbone: str = "resnet50", **changes: Any) -> FCOSConfig:
    """The exact semantics and defaults of ``torchvision.models.detection.FCOS`` (fcos_resnet50_fpn)."""
    base = FCOSConfig(
        num_classes=num_classes,
        backbone=BackboneConfig(name=backbone),
        head=HeadConfig(learnable_scales=False),
        points=PointsConfig(offset=0.0, step_from_shape=True),
        assign=AssignConfig(ranges_inclusive=False, tie_break="torchvision"),
        loss=LossConfig(box_weight_by_centerness=False, iou_smoothing=0.0),
        decode=DecodeConfig(score_thresh=0.2, threshold_on="score"),
        preset="torchvision",
        channels_last=False,
        conv3x3="direct",
    )
    return override(base, **changes)


PRESETS: dict[PresetName, Callable[..., FCOSConfig]] = {"official": official, "torchvision": torchvision_preset}


def preset(name: str, **kwargs: Any) -> FCOSConfig:
    """Build a named preset: ``preset("official", num_classes=3, backbone="resnet18")``."""
    try:
        return PRESETS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


def __getattr__(name: str) -> Any:
    # Deprecated in 0.2 (it shadowed the torchvision package in `from fcos import *`); removed in 0.3.
    if name == "torchvision":
        warnings.warn("fcos.config.torchvision is deprecated: use fcos.config.torchvision_preset", DeprecationWarning,
                      stacklevel=2)
        return torchvision_preset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

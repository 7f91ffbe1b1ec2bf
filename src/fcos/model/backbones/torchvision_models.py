"""torchvision's ImageNet classifiers as FCOS backbones: ResNet, ResNeXt, Wide ResNet, MobileNetV3,
EfficientNet, ConvNeXt and RegNet.

Each is a chain of stage modules (``conv1 .. layer4``, ``features.0 .. features.N``, ``stem`` and
``trunk_output.blockK``). The backbone keeps torchvision's module under its own names and walks that
chain, returning the outputs of the last module at strides 8, 16 and 32: torchvision's ImageNet state
dicts load as they are, and the classifier (and anything after C5) is removed. For ResNets this is
exactly ``torchvision.models.detection``'s ``BackboneWithFPN`` body (layer2..layer4), so the
``torchvision`` preset stays bit-exact with torchvision's FCOS.

ImageNet weights ("imagenet") are the ``IMAGENET1K_V1`` weights torchvision's own detection builders
start from; any other weights of the same builder can be named in full ("ResNet50_Weights.IMAGENET1K_V2").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.models
from torch import Tensor, nn

from fcos.config import BackboneConfig
from fcos.model.backbones.base import Backbone, BackboneError, freeze_batchnorm
from fcos.utils.hub import torchvision_state_dict, torchvision_weights

__all__ = ["TORCHVISION_BACKBONES", "TorchvisionBackbone", "TorchvisionSpec"]


@dataclass(frozen=True)
class TorchvisionSpec:
    family: str
    builder: str  # torchvision.models.<builder>
    imagenet: str  # the torchvision weights "imagenet" means
    units: tuple[str, ...]  # the stage modules, in the order they run
    returns: tuple[str, str, str]  # the units whose outputs are C3, C4, C5


_RESNET_UNITS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _resnet(family: str, builder: str, weights: str) -> TorchvisionSpec:
    return TorchvisionSpec(family, builder, weights, _RESNET_UNITS, ("layer2", "layer3", "layer4"))


def _features(family: str, builder: str, weights: str, count: int, returns: tuple[int, int, int]) -> TorchvisionSpec:
    """A ``model.features`` chain; modules past ``count`` (EfficientNet's 1x1 head conv) are dropped."""
    units = tuple(f"features.{i}" for i in range(count))
    return TorchvisionSpec(family, builder, weights, units, tuple(units[i] for i in returns))  # type: ignore[arg-type]


def _regnet(builder: str, weights: str) -> TorchvisionSpec:
    units = ("stem", *(f"trunk_output.block{i}" for i in range(1, 5)))
    return TorchvisionSpec("RegNet", builder, weights, units, units[2:])  # type: ignore[arg-type]


TORCHVISION_BACKBONES: dict[str, TorchvisionSpec] = {
    "resnet18": _resnet("ResNet", "resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34": _resnet("ResNet", "resnet34", "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50": _resnet("ResNet", "resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet101": _resnet("ResNet", "resnet101", "ResNet101_Weights.IMAGENET1K_V1"),
    "resnext50_32x4d": _resnet("ResNeXt", "resnext50_32x4d", "ResNeXt50_32X4D_Weights.IMAGENET1K_V1"),
    "resnext101_32x8d": _resnet("ResNeXt", "resnext101_32x8d", "ResNeXt101_32X8D_Weights.IMAGENET1K_V1"),
    "wide_resnet50_2": _resnet("Wide ResNet", "wide_resnet50_2", "Wide_ResNet50_2_Weights.IMAGENET1K_V1"),
    # C5 after the 1x1 expansion to 960 channels, as torchvision's and timm's MobileNetV3 feature maps.
    "mobilenet_v3_large": _features("MobileNetV3", "mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                                    17, (6, 12, 16)),
    # C3..C5 = 40, 112, 320 channels (EfficientDet's P3..P5 inputs); the 1280-channel head conv is dropped.
    "efficientnet_b0": _features("EfficientNet", "efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 8, (3, 5, 7)),
    "convnext_tiny": _features("ConvNeXt", "convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 8, (3, 5, 7)),
    "regnet_y_400mf": _regnet("regnet_y_400mf", "RegNet_Y_400MF_Weights.IMAGENET1K_V1"),
    "regnet_y_1_6gf": _regnet("regnet_y_1_6gf", "RegNet_Y_1_6GF_Weights.IMAGENET1K_V1"),
}


class TorchvisionBackbone(Backbone):
    """A registered torchvision classifier, walked unit by unit (see the module docstring)."""

    def __init__(self, spec: TorchvisionSpec, config: BackboneConfig) -> None:
        super().__init__()
        trunk = getattr(torchvision.models, spec.builder)(weights=None)
        if config.resolved_norm() == "frozen":
            freeze_batchnorm(trunk)  # before loading: FrozenBatchNorm2d reads BatchNorm state dicts
        if config.weights:
            _load_weights(trunk, spec, config.weights)
        _keep_only(trunk, spec.units)
        self.trunk = trunk
        self.units = spec.units
        self.returns = spec.returns
        self._finish(config.resolved_frozen_stages(), config.name)

    def forward(self, images: Tensor) -> list[Tensor]:
        x, features = images, []
        for path in self.units:
            x = self.trunk.get_submodule(path)(x)
            if path in self.returns:
                features.append(x)
        return features


def _load_weights(trunk: nn.Module, spec: TorchvisionSpec, weights: str) -> None:
    """"imagenet", a torchvision weights name of this builder, or a local state dict file."""
    if weights == "imagenet" or ("_Weights." in weights and not Path(weights).exists()):
        enum = torchvision_weights(spec.imagenet if weights == "imagenet" else weights)
        expected = torchvision.models.get_model_weights(spec.builder)
        if not isinstance(enum, expected):
            raise BackboneError(f"--backbone-weights {weights} are not weights of {spec.builder}; "
                                f"choose from imagenet, {', '.join(str(w) for w in expected)}")
        trunk.load_state_dict(torchvision_state_dict(enum))
        return
    state = _read_state_dict(Path(weights))
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise BackboneError(f"backbone weights {weights} do not match {spec.builder}: {exc}") from None
    # A file may hold the trunk alone (no classifier); anything else missing or extra is a mismatch.
    needed = [k for k in missing if k.startswith(tuple(u + "." for u in spec.units)) and not k.endswith("num_batches_tracked")]
    if needed or unexpected:
        raise BackboneError(
            f"backbone weights {weights} do not match {spec.builder}: "
            f"missing {needed[:5]}{'...' if len(needed) > 5 else ''}, unexpected {unexpected[:5]}"
        )


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path} (use 'imagenet' for torchvision's ImageNet weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle payloads and corrupt files both land here
        first = (str(exc).strip().splitlines() or [""])[0]  # torch's own messages run long
        raise BackboneError(f"cannot load backbone weights {path} ({type(exc).__name__}: {first})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise BackboneError(f"backbone weights {path} hold no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _keep_only(module: nn.Module, units: tuple[str, ...], prefix: str = "") -> None:
    """Delete every submodule that is neither a unit nor holds one (the classifier, pooling, ...)."""
    parents = {".".join(u.split(".")[:i]) for u in units for i in range(1, u.count(".") + 1)}
    for name, child in list(module.named_children()):
        path = prefix + name
        if path in parents:
            _keep_only(child, units, path + ".")
        elif path not in units:
            delattr(module, name)

"""ResNet trunk returning C3, C4, C5 (strides 8, 16, 32), built from torchvision's ResNets."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.ops.misc import FrozenBatchNorm2d

from fcos.config import BackboneConfig

__all__ = ["BACKBONES", "ResNetBackbone", "resolve_frozen_stages", "resolve_norm"]

_RESNETS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
}
BACKBONES = tuple(_RESNETS)  # the names a config may give (CLI choices)
# Modules frozen by `frozen_stages`, from the input side (detectron2's freeze_at numbering - 1).
_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def resolve_norm(config: BackboneConfig) -> str:
    if config.norm != "auto":
        return config.norm
    return "frozen" if config.weights else "bn"


def resolve_frozen_stages(config: BackboneConfig) -> int:
    if config.frozen_stages >= 0:
        return config.frozen_stages
    return 2 if config.weights else 0


class ResNetBackbone(nn.Module):
    """images [B, 3, H, W] -> [C3, C4, C5] with strides 8, 16, 32."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        if config.name not in _RESNETS:
            raise ValueError(f"unknown backbone {config.name!r}; choose from {sorted(_RESNETS)}")
        norm_layer = FrozenBatchNorm2d if resolve_norm(config) == "frozen" else nn.BatchNorm2d
        trunk = _RESNETS[config.name](weights=None, norm_layer=norm_layer)
        if config.weights:
            load_imagenet_weights(trunk, config.weights)
        del trunk.fc, trunk.avgpool  # classification parts are never used
        self.trunk = trunk
        self.out_channels: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            _stage_channels(getattr(trunk, name)) for name in ("layer2", "layer3", "layer4")
        )
        self.frozen_stages = resolve_frozen_stages(config)
        for stage in _STAGES[: self.frozen_stages]:
            for name in stage:
                getattr(trunk, name).requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(images))))
        c2 = t.layer1(x)
        c3 = t.layer2(c2)
        c4 = t.layer3(c3)
        c5 = t.layer4(c4)
        return [c3, c4, c5]

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        # BatchNorm inside frozen stages keeps its statistics (detectron2 / official FCOS behaviour).
        for stage in _STAGES[: self.frozen_stages]:
            for name in stage:
                getattr(self.trunk, name).eval()
        return self


def _stage_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return last.conv3.out_channels if hasattr(last, "conv3") else last.conv2.out_channels


def load_imagenet_weights(trunk: nn.Module, path: str | Path) -> None:
    """Load a local ImageNet ResNet state dict (torchvision layout); the fc layer is ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle payloads and corrupt files both land here
        raise ValueError(f"cannot load backbone weights {path}: {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"backbone weights {path} do not match the architecture: {exc}") from exc
    missing = [k for k in missing if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"backbone weights {path} do not match the architecture: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )

"""What every backbone shares: C3..C5 checked at strides 8/16/32, stage freezing, frozen BatchNorm.

A backbone holds a ``trunk`` module and its ``units``: paths of the trunk's modules in the order they
run (torchvision's stage modules, timm's feature modules). One probe forward at construction measures
each unit's output stride, which numbers the stages the official recipe freezes: the first unit and
everything up to stride 2 is the stem (stage 0), stage k is what runs at stride 2^(k+1) (ResNet's layer1
is stage 1 at stride 4). ``frozen_stages = 2`` (official ``FREEZE_CONV_BODY_AT: 2``, torchvision's
``trainable_backbone_layers=3``) freezes the stem and stage 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["Backbone", "BackboneError", "STRIDES", "freeze_batchnorm", "unit_stages"]

STRIDES = (8, 16, 32)  # C3, C4, C5
_PROBE = 64  # side of the probe image: every stride up to 32 divides it


class BackboneError(ValueError):
    """A backbone cannot be built as configured: an unknown name, a missing optional package (timm),
    weights of another network, or a module without C3..C5. The CLI prints it as one line."""


class Backbone(nn.Module):
    """images [B, 3, H, W] -> [C3, C4, C5] with strides 8, 16, 32 and ``out_channels`` channels.

    Subclasses set ``trunk`` and ``units``, implement ``forward`` and call :meth:`_finish` last.
    """

    trunk: nn.Module
    units: tuple[str, ...] = ()
    out_channels: tuple[int, int, int]
    frozen_units: tuple[str, ...] = ()

    def _finish(self, frozen_stages: int, name: str) -> None:
        """Probe the trunk (strides, channels), then freeze the first ``frozen_stages`` stages."""
        unit_strides, features = self._probe()
        strides = tuple(_PROBE // f.shape[-1] for f in features)
        if len(features) != 3 or strides != STRIDES:
            raise BackboneError(f"backbone {name} must return 3 feature maps at strides {STRIDES}, got strides {strides}")
        self.out_channels = tuple(int(f.shape[1]) for f in features)  # type: ignore[assignment]
        stages = unit_stages([unit_strides.get(u) for u in self.units])
        self.frozen_stages = frozen_stages
        self.frozen_units = tuple(u for u, s in zip(self.units, stages, strict=True) if s < frozen_stages)
        for path in self.frozen_units:
            self.trunk.get_submodule(path).requires_grad_(False)
        self.train(self.training)

    @torch.no_grad()
    def _probe(self) -> tuple[dict[str, int], list[Tensor]]:
        """One forward of a zero image in eval mode: each unit's output stride and the features."""
        unit_strides: dict[str, int] = {}

        def record(path: str, module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, Tensor) and output.dim() == 4:
                unit_strides[path] = max(1, _PROBE // output.shape[-1])

        hooks = [self.trunk.get_submodule(p).register_forward_hook(partial(record, p)) for p in self.units]
        mode = self.training
        parameter = next(self.parameters(), None)
        try:
            self.eval()
            image = torch.zeros(1, 3, _PROBE, _PROBE, device=parameter.device if parameter is not None else None)
            features = list(self(image))
        finally:
            for hook in hooks:
                hook.remove()
            self.train(mode)
        return unit_strides, features

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        # Frozen stages keep their BatchNorm statistics too (detectron2 / official FCOS behaviour).
        for path in self.frozen_units:
            self.trunk.get_submodule(path).eval()
        return self


def unit_stages(strides: Sequence[int | None]) -> list[int]:
    """Stage of each unit from its output stride: the first unit is the stem (0), stride 2^(k+1) is
    stage k (stride 2 is still the stem); a unit without a feature-map output keeps the previous stage."""
    stages: list[int] = []
    for i, stride in enumerate(strides):
        stage = 0 if i == 0 or stride is None else max(0, round(math.log2(stride)) - 1)
        stages.append(max(stage, stages[-1] if stages else 0))
    return stages


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a FrozenBatchNorm2d with the same statistics, affine
    parameters and eps (torchvision's FrozenBatchNorm2d defaults to eps=1e-5; MobileNetV3 uses 1e-3)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.track_running_stats:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module

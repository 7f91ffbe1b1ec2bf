"""A ready backbone module given to ``FCOS(config, backbone=module)`` (as torchvision's ``FCOS(backbone=...)``).

The module maps images [B, 3, H, W] (normalised as ``config.input`` says) to three feature maps at
strides 8, 16 and 32, as a list, a tuple or a dict (its values in order: ``create_feature_extractor``
and ``IntermediateLayerGetter`` outputs work as they are). Its channels are read off one probe forward.
Freezing and normalisation are the module's own business: ``config.backbone`` is not applied to it.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from fcos.model.backbones.base import Backbone, BackboneError

__all__ = ["CUSTOM_PREFIX", "ModuleBackbone"]

CUSTOM_PREFIX = "custom:"  # config.backbone.name of a model built around a given module


class ModuleBackbone(Backbone):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module, got {type(module).__name__}")
        self.trunk = module
        self.training = module.training
        self._finish(0, type(module).__name__)

    def forward(self, images: Tensor) -> list[Tensor]:
        out = self.trunk(images)
        if isinstance(out, Mapping):
            out = list(out.values())
        if not isinstance(out, list | tuple) or not all(isinstance(t, Tensor) for t in out):
            raise BackboneError(f"backbone {type(self.trunk).__name__} must return a list, tuple or dict of tensors")
        return list(out)

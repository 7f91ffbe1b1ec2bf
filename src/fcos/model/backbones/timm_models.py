"""``timm:<model>``: any timm model with ``features_only`` (the optional ``timm`` extra).

timm builds the feature extractor and loads its own pretrained weights ("imagenet": the model's default
pretrained tag, e.g. ``timm:resnet18`` -> ``resnet18.a1_in1k``; ``timm:resnet18.tv_in1k`` picks another),
from the Hugging Face hub cache (``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``) or downloaded
there once; a local ``.safetensors`` / ``.pth`` file is accepted instead. C3..C5 are the last of timm's
feature maps at reductions 8, 16 and 32. BatchNorm is frozen with timm's own ``freeze_batch_norm_2d``
(it also handles timm's fused BatchNorm + activation layers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from fcos.config import BackboneConfig
from fcos.model.backbones.base import STRIDES, Backbone, BackboneError
from fcos.utils.hub import WeightsUnavailableError

__all__ = ["TIMM_PREFIX", "TimmBackbone", "timm_input_stats"]

TIMM_PREFIX = "timm:"


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise BackboneError("timm backbones need timm, which is not installed: pip install 'fcos[timm]'") from None
    return timm


class TimmBackbone(Backbone):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        timm = _timm()
        model = config.name.removeprefix(TIMM_PREFIX)
        if not timm.is_model(model):
            raise BackboneError(f"unknown timm model {model!r} (timm.list_models() lists them)")
        trunk = _create(timm, model, config.weights)
        if config.resolved_norm() == "frozen":
            trunk = timm.layers.freeze_batch_norm_2d(trunk)
        reductions = list(trunk.feature_info.reduction())
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise BackboneError(f"timm model {model} has feature maps at reductions {reductions}, none at {missing}")
        # The last feature map at each stride (timm lists them in order).
        self.indices = tuple(max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES)
        self.trunk = trunk
        self.units = _units(trunk, trunk.feature_info.module_name())
        self._finish(config.resolved_frozen_stages(), config.name)

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.trunk(images)
        return [features[i] for i in self.indices]


def _create(timm: Any, model: str, weights: str | None) -> nn.Module:
    if not weights:
        return timm.create_model(model, features_only=True, pretrained=False)
    overlay = None
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights not found: {path} (use 'imagenet' for timm's pretrained weights)")
        overlay = {"file": str(path)}
    try:
        return timm.create_model(model, features_only=True, pretrained=True, pretrained_cfg_overlay=overlay)
    except OSError as exc:  # huggingface_hub's offline / not-found / HTTP errors are OSErrors
        if overlay:
            raise
        cfg = timm.get_pretrained_cfg(model)
        source = getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or model
        raise WeightsUnavailableError(
            f"timm's pretrained weights for {model} ({source}) are not in the Hugging Face cache and could not be "
            f"downloaded ({type(exc).__name__}: {exc}).\n  The cache is $HF_HOME/hub (default ~/.cache/huggingface/hub); "
            f"or download the weights file and pass its path as the backbone weights."
        ) from None


def _units(trunk: nn.Module, feature_modules: list[str]) -> tuple[str, ...]:
    """The trunk's children in order, a container that holds feature modules (EfficientNet's
    ``blocks``) replaced by its own children, so that stages can be told apart."""
    units: list[str] = []
    for name, child in trunk.named_children():
        if any(m.startswith(name + ".") for m in feature_modules):
            units += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            units.append(name)
    return tuple(units)


def timm_input_stats(name: str) -> dict[str, tuple[float, ...]]:
    """The mean / std the model's pretrained weights were trained with ({} when timm has none)."""
    timm = _timm()
    cfg = timm.get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))
    if cfg is None:
        return {}
    return {"mean": tuple(float(v) for v in cfg.mean), "std": tuple(float(v) for v in cfg.std)}

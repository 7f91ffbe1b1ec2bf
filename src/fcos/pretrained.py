"""Pretrained detectors by name, and the one resolver of ``--weights NAME_OR_PATH``.

``fcos_resnet50_fpn_coco`` is torchvision's ``FCOS_ResNet50_FPN_Weights.COCO_V1`` (COCO val2017 box AP
39.2 as published by torchvision), read through torchvision's weights API (:mod:`fcos.hub`: the torch hub
cache, downloaded there once). It runs with torchvision's semantics (preset ``torchvision``) and fcos's
fast execution (NHWC, Winograd 3x3 where it applies); ``exact=True`` gives the bit-exact NCHW, direct
execution instead. It carries COCO's 80 class names and their category ids: torchvision's classifier
has 91 rows indexed by COCO category id (0 "__background__" and the 11 unused ids "N/A" never fire),
and only the 80 real rows are kept, so labels are 0..79 and ``category_ids`` map them back.

Everything that takes ``--weights`` (train, eval, predict, export, serve) resolves it here: an existing
file is an fcos checkpoint (:mod:`fcos.engine.checkpoint`), anything else must be a registered name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fcos import config as cfgs
from fcos.config import BackboneConfig, FCOSConfig
from fcos.convert import keep_classes, state_dict_from_torchvision
from fcos.engine.checkpoint import CheckpointError, inference_config, load_checkpoint, load_model
from fcos.hub import (
    WeightsUnavailableError,
    cache_path,
    file_size_mb,
    is_cached,
    torchvision_state_dict,
    torchvision_weights,
)

__all__ = [
    "DETECTORS",
    "PretrainedDetector",
    "coco_classes",
    "describe_models",
    "is_registered",
    "load_weights",
    "prefetch",
    "read_weights",
    "weights_config",
]


@dataclass(frozen=True)
class PretrainedDetector:
    weights: str  # torchvision weights name
    summary: str
    config: Callable[[bool], FCOSConfig]  # exact -> the model's config


def _torchvision_coco_config(exact: bool) -> FCOSConfig:
    """torchvision's fcos_resnet50_fpn as built with its weights: FrozenBatchNorm, conv1 and layer1
    frozen (trainable_backbone_layers=3), 800/1333 inputs, score 0.2 on sqrt(cls * ctr), NMS 0.6, 100."""
    changes: dict[str, Any] = {"backbone.norm": "frozen", "backbone.frozen_stages": 2}
    if not exact:
        changes |= {"channels_last": True, "conv3x3": "auto"}
    return cfgs.torchvision(num_classes=80, backbone="resnet50", **changes)


DETECTORS: dict[str, PretrainedDetector] = {
    "fcos_resnet50_fpn_coco": PretrainedDetector(
        weights="FCOS_ResNet50_FPN_Weights.COCO_V1",
        summary="torchvision's FCOS ResNet-50 FPN trained on COCO 2017: 80 classes, box AP 39.2 (val2017, torchvision's figure)",
        config=_torchvision_coco_config,
    ),
}


def is_registered(weights: str | Path) -> bool:
    return str(weights) in DETECTORS and not Path(weights).is_file()


def coco_classes(categories: Sequence[str]) -> tuple[list[str], list[int]]:
    """torchvision's COCO category list (index = COCO category id, "__background__" at 0, "N/A" for the
    ids COCO 2017 leaves unused) -> the 80 class names and their category ids, in id order."""
    ids = [i for i, name in enumerate(categories) if name not in ("__background__", "N/A")]
    return [categories[i] for i in ids], ids


def read_weights(weights: str | Path, exact: bool = False, progress: bool = True) -> dict[str, Any]:
    """A checkpoint dict (``model``, ``config``, ``class_names``, ``category_ids``) for a checkpoint file
    or a registered name; a registered model's file is read (or downloaded) through torchvision."""
    if not is_registered(weights):
        _check_exists(weights)
        return load_checkpoint(weights)
    entry = DETECTORS[str(weights)]
    enum = torchvision_weights(entry.weights)
    names, ids = coco_classes(enum.meta["categories"])
    state = keep_classes(state_dict_from_torchvision(torchvision_state_dict(enum, progress=progress)), ids)
    return {"model": state, "config": entry.config(exact).to_dict(), "class_names": names, "category_ids": ids,
            "source": f"{weights} ({entry.weights})"}


def weights_config(weights: str | Path) -> tuple[FCOSConfig, list[str]]:
    """The inference config and class names of a checkpoint or registered name (no download for names)."""
    if is_registered(weights):
        entry = DETECTORS[str(weights)]
        names, _ = coco_classes(torchvision_weights(entry.weights).meta["categories"])
        return entry.config(False), names
    state = read_weights(weights)
    try:
        config = FCOSConfig.from_dict(state["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights} has an invalid config: {exc}") from None
    return inference_config(config), [str(n) for n in state.get("class_names", range(config.num_classes))]


def load_weights(
    weights: str | Path, map_location: str | torch.device = "cpu", exact: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) for a checkpoint file or a registered name."""
    if not is_registered(weights):
        _check_exists(weights)
        return load_model(weights, map_location)
    from fcos.model.detector import FCOS

    state = read_weights(weights, exact=exact)
    model = FCOS(FCOSConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.to(map_location).eval(), state


def prefetch(backbone: BackboneConfig, weights: str | Path | None) -> None:
    """Bring every pretrained file a training run reads into its cache (one process downloads; the
    others then read the cache)."""
    if weights and is_registered(weights):
        torchvision_state_dict(DETECTORS[str(weights)].weights)
    if backbone.weights and not Path(backbone.weights).is_file():
        from fcos.model.backbones import build_backbone

        with torch.random.fork_rng(devices=[]):  # the throw-away build must not move the seeded RNG
            build_backbone(backbone)


def _check_exists(weights: str | Path) -> None:
    if not Path(weights).is_file():
        raise WeightsUnavailableError(
            f"weights not found: {weights} is neither a file nor a registered name "
            f"({', '.join(DETECTORS)}; `fcos models` lists them)"
        )


def describe_models() -> str:
    """What ``fcos models`` prints: the registered detectors and backbones, and the files they need."""
    from fcos.model.backbones import BACKBONES

    lines = ["Pretrained detectors (--weights NAME for train, eval, predict, export, serve):"]
    for name, entry in DETECTORS.items():
        enum = torchvision_weights(entry.weights)
        state = "cached" if is_cached(enum) else "not downloaded yet: the first use downloads it"
        lines += [f"  {name}", f"      {entry.summary}",
                  f"      needs {entry.weights}: {_size(enum)}, {enum.url}",
                  f"      at {cache_path(enum)} ({state})"]
    lines += ["", "Backbones (--backbone NAME; --backbone-weights imagenet loads the ImageNet weights below):",
              f"  {'name':20s} {'family':12s} {'ImageNet weights (torchvision)':42s} {'top-1':>6s} {'file':>9s}  cached"]
    for name, spec in BACKBONES.items():
        enum = torchvision_weights(spec.imagenet)
        top1 = enum.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
        top1 = f"{top1:.1f}" if top1 is not None else ""
        lines.append(f"  {name:20s} {spec.family:12s} {spec.imagenet:42s} {top1:>6s} {_size(enum):>9s}  "
                     f"{'yes' if is_cached(enum) else 'no'}")
    lines += [
        f"  {'timm:<model>':20s} any timm model with features_only (pip install 'fcos[timm]'); its pretrained weights",
        f"  {'':20s} through timm, cached in $HF_HOME/hub (default ~/.cache/huggingface/hub), or a local file",
        "",
        f"torchvision's files: {Path(torch.hub.get_dir()) / 'checkpoints'}",
        "  ($TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to ~/.cache/torch). Offline, a file put there under",
        "  the name shown is used without a download.",
    ]
    return "\n".join(lines)


def _size(weights: Any) -> str:
    size = file_size_mb(weights)
    return f"{size:.1f} MB" if size is not None else "size unknown"

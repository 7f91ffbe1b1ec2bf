"""Pretrained detectors by name: the registry behind ``--weights NAME``.

``fcos_resnet50_fpn_coco`` is torchvision's ``FCOS_ResNet50_FPN_Weights.COCO_V1`` (COCO val2017 box AP
39.2 as published by torchvision), read through torchvision's weights API (:mod:`fcos.utils.hub`: the torch hub
cache, downloaded there once). It runs with torchvision's semantics (preset ``torchvision``) and fcos's
fast execution (NHWC, Winograd 3x3 where it applies); ``exact=True`` gives the bit-exact NCHW, direct
execution instead. It carries COCO's 80 class names and their category ids: torchvision's classifier
has 91 rows indexed by COCO category id (0 "__background__" and the 11 unused ids "N/A" never fire),
and only the 80 real rows are kept, so labels are 0..79 and ``category_ids`` map them back.

This module knows names only. ``--weights NAME_OR_PATH`` (train, eval, predict, export, serve) is
resolved by :func:`fcos.weights.load_weights` and :func:`~fcos.weights.checkpoint.read_weights`:
an existing file is an fcos checkpoint, anything else must be a name registered here. (The registry sits
below the engine layer, the checkpoint format in it: the trainer reads both without an import cycle.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fcos import config as cfgs
from fcos.config import BackboneConfig, FCOSConfig
from fcos.utils.hub import cache_path, file_size_mb, is_cached, torchvision_state_dict, torchvision_weights
from fcos.weights.torchvision import keep_classes, state_dict_from_torchvision

__all__ = [
    "DETECTORS",
    "PretrainedDetector",
    "coco_classes",
    "describe_models",
    "is_registered",
    "load_pretrained",
    "prefetch",
    "pretrained_config",
    "read_pretrained",
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
    return cfgs.torchvision_preset(num_classes=80, backbone="resnet50", **changes)


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


def read_pretrained(name: str, exact: bool = False, progress: bool = True) -> dict[str, Any]:
    """The checkpoint dict (``model``, ``config``, ``class_names``, ``category_ids``, ``source``) of a
    registered name; its file is read from (or downloaded into) the torch hub cache by torchvision."""
    entry = DETECTORS[name]
    enum = torchvision_weights(entry.weights)
    names, ids = coco_classes(enum.meta["categories"])
    state = keep_classes(state_dict_from_torchvision(torchvision_state_dict(enum, progress=progress)), ids)
    return {"model": state, "config": entry.config(exact).to_dict(), "class_names": names, "category_ids": ids,
            "source": f"{name} ({entry.weights})"}


def pretrained_config(name: str) -> tuple[FCOSConfig, list[str]]:
    """The config (fast execution) and class names of a registered name, without reading its file."""
    entry = DETECTORS[name]
    names, _ = coco_classes(torchvision_weights(entry.weights).meta["categories"])
    return entry.config(False), names


def load_pretrained(
    name: str, map_location: str | torch.device = "cpu", exact: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) of a registered name."""
    from fcos.model.detector import FCOS

    state = read_pretrained(name, exact=exact)
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

"""torchvision's FCOS in this package: pure mappings from a ``torchvision.models.detection.FCOS``
(ResNet / ResNeXt FPN backbone) to its config and its state dict under this package's module names, and
:func:`from_torchvision`, the model built from them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from fcos import config as cfgs
from fcos.config import FCOSConfig, override
from fcos.model.detector import FCOS

__all__ = ["config_from_torchvision", "from_torchvision", "keep_classes", "state_dict_from_torchvision"]

# torchvision key prefix -> fcos key prefix
_KEY_MAP = (
    (r"^backbone\.body\.", "backbone.trunk."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"fpn.lateral.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"fpn.output.\1."),
    (r"^backbone\.fpn\.extra_blocks\.(p6|p7)\.", r"fpn.\1."),
    (r"^head\.classification_head\.conv\.", "head.cls_tower."),
    (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
    (r"^head\.regression_head\.conv\.", "head.box_tower."),
    (r"^head\.regression_head\.bbox_reg\.", "head.box_pred."),
    (r"^head\.regression_head\.bbox_ctrness\.", "head.centerness."),
)
# (blocks per stage, bottleneck, groups and width of layer1's 3x3 conv) -> backbone name
_RESNETS = {
    ((2, 2, 2, 2), False, 1, 64): "resnet18",
    ((3, 4, 6, 3), False, 1, 64): "resnet34",
    ((3, 4, 6, 3), True, 1, 64): "resnet50",
    ((3, 4, 23, 3), True, 1, 64): "resnet101",
    ((3, 4, 6, 3), True, 32, 128): "resnext50_32x4d",
    ((3, 4, 23, 3), True, 32, 256): "resnext101_32x8d",
    ((3, 4, 6, 3), True, 1, 128): "wide_resnet50_2",
}


def from_torchvision(tv_model: nn.Module, *, exact: bool = False, **changes: Any) -> FCOS:
    """An :class:`~fcos.FCOS` with ``tv_model``'s weights, settings and train/eval mode: torchvision's
    semantics (preset ``torchvision``), run with fcos's fast execution (NHWC, Winograd 3x3 where it
    applies; outputs within ~1e-6 relative). ``exact=True`` runs NCHW with direct convolutions:
    bit-exact with torchvision. ``changes`` override config fields (dotted paths, as in
    :func:`fcos.config.override`)."""
    model = FCOS(override(config_from_torchvision(tv_model, exact=exact), **changes))
    model.load_state_dict(state_dict_from_torchvision(tv_model.state_dict()), strict=True)
    model.train(tv_model.training)
    return model


def state_dict_from_torchvision(state: dict) -> dict:
    """Rename a torchvision FCOS state dict to this package's module names."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in _KEY_MAP:
            new, hits = re.subn(pattern, replacement, key)
            if hits:
                out[new] = value
                break
        else:
            raise ValueError(f"unexpected key in torchvision FCOS state dict: {key}")
    return out


def keep_classes(state: dict, rows: Sequence[int]) -> dict:
    """``state`` (this package's names) with the classification layer cut to ``rows``, in that order:
    e.g. torchvision's 91-index COCO layout (category id = index, "N/A" gaps) to COCO's 80 classes."""
    index = torch.as_tensor(list(rows), dtype=torch.long)
    return {k: (v.index_select(0, index) if k.startswith("head.cls_logits.") else v) for k, v in state.items()}


def config_from_torchvision(tv_model: nn.Module, exact: bool = False) -> FCOSConfig:
    """Read the architecture and every inference/training setting off a torchvision FCOS.

    The config has torchvision's semantics (preset ``torchvision``) with fcos's fast execution
    (``channels_last``, ``conv3x3="auto"``): outputs within ~1e-6 relative of torchvision's.
    ``exact=True`` keeps the preset's NCHW, direct-convolution execution: bit-exact with torchvision.
    """
    body = tv_model.backbone.body
    fpn = tv_model.backbone.fpn
    head = tv_model.head
    transform = tv_model.transform
    if not isinstance(fpn.extra_blocks, LastLevelP6P7):
        raise ValueError("only torchvision FCOS models with LastLevelP6P7 extra blocks are supported")
    sizes = tuple(s[0] for s in tv_model.anchor_generator.sizes)
    if sizes != cfgs.STRIDES or any(len(r) != 1 for r in tv_model.anchor_generator.aspect_ratios):
        raise ValueError(f"anchor sizes must be one per level equal to the strides {cfgs.STRIDES}, got {sizes}")
    if getattr(transform, "fixed_size", None):
        raise ValueError("torchvision transforms with fixed_size are not supported")
    blocks = tuple(len(getattr(body, f"layer{i}")) for i in range(1, 5))
    conv2 = body.layer1[0].conv2
    name = _RESNETS.get((blocks, isinstance(body.layer1[0], Bottleneck), conv2.groups, conv2.out_channels))
    if name is None:
        raise ValueError(f"unsupported ResNet layout {blocks} (groups {conv2.groups}, width {conv2.out_channels})")
    convs = [m for m in head.classification_head.conv if isinstance(m, nn.Conv2d)]
    norms = [m for m in head.classification_head.conv if isinstance(m, nn.GroupNorm)]
    min_sizes = tuple(int(s) for s in transform.min_size)
    return cfgs.torchvision_preset(
        num_classes=head.classification_head.num_classes,
        backbone=name,
        **{
            "backbone.norm": "frozen" if isinstance(body.bn1, FrozenBatchNorm2d) else "bn",
            "backbone.frozen_stages": _frozen_stages(body),
            "fpn.channels": tv_model.backbone.out_channels,
            "fpn.extra_from": "p5" if fpn.extra_blocks.use_P5 else "c5",
            "head.num_convs": len(convs),
            "head.norm_groups": norms[0].num_groups if norms else 32,
            "input.min_size": min_sizes[-1],
            "input.train_min_sizes": min_sizes if len(min_sizes) > 1 else (),
            "input.max_size": int(transform.max_size),
            "input.mean": tuple(float(v) for v in transform.image_mean),
            "input.std": tuple(float(v) for v in transform.image_std),
            "input.size_divisible": int(transform.size_divisible),
            "assign.center_sampling_radius": float(tv_model.center_sampling_radius),
            "decode.score_thresh": float(tv_model.score_thresh),
            "decode.nms_thresh": float(tv_model.nms_thresh),
            "decode.max_detections": int(tv_model.detections_per_img),
            "decode.topk_per_level": int(tv_model.topk_candidates),
        },
        **({} if exact else {"channels_last": True, "conv3x3": "auto"}),
    )


def _frozen_stages(body: nn.Module) -> int:
    stages = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
    frozen = 0
    for stage in stages:
        params = [p for name in stage for p in getattr(body, name).parameters()]
        if params and all(not p.requires_grad for p in params):
            frozen += 1
        else:
            break
    return frozen


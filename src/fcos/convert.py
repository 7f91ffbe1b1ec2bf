"""Map a ``torchvision.models.detection.FCOS`` (ResNet-FPN backbone) onto this package: its config and
its state dict renamed. Pure mappings, no model built here (:meth:`fcos.FCOS.from_torchvision` builds
one from them), so the model may import this module and not the other way round."""

from __future__ import annotations

import re

from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from fcos import config as cfgs
from fcos.config import FCOSConfig

__all__ = ["config_from_torchvision", "state_dict_from_torchvision"]

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
_RESNET_DEPTHS = {(2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34",
                  (3, 4, 6, 3, True): "resnet50", (3, 4, 23, 3, True): "resnet101"}


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


def config_from_torchvision(tv_model: nn.Module) -> FCOSConfig:
    """Read the architecture and every inference/training setting off a torchvision FCOS."""
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
    name = _RESNET_DEPTHS.get((*blocks, isinstance(body.layer1[0], Bottleneck)))
    if name is None:
        raise ValueError(f"unsupported ResNet layout {blocks}")
    convs = [m for m in head.classification_head.conv if isinstance(m, nn.Conv2d)]
    norms = [m for m in head.classification_head.conv if isinstance(m, nn.GroupNorm)]
    min_sizes = tuple(int(s) for s in transform.min_size)
    return cfgs.torchvision(
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


"""Planted torch hub caches for the pretrained-weights tests: files in torchvision's layout under
torchvision's file names in a temporary TORCH_HOME, so the real loading code runs without a network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import FCOS_ResNet50_FPN_Weights, fcos_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from fcos.weights.pretrained import coco_classes

COCO_V1 = FCOS_ResNet50_FPN_Weights.COCO_V1
FILE = "fcos_resnet50_fpn_coco-99b0c9b7.pth"  # torchvision's file name (its hash prefix included)


def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: TORCH_HOME is read by torch.hub.get_dir() on every call."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def coco_like_state_dict() -> dict[str, torch.Tensor]:
    """A state dict in the exact layout of torchvision's COCO_V1 file (FrozenBatchNorm2d, 91 rows) with
    random-but-meaningful values: BatchNorm statistics measured on images, classification biases that make
    the untrained detector fire on a photo, and very negative biases for the rows COCO never trains
    ("__background__", "N/A"), as a trained model has."""
    torch.manual_seed(0)
    trained_bn = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).train()
    with torch.no_grad():
        trained_bn.backbone.body(torch.rand(2, 3, 224, 224))  # BatchNorm statistics of real activations
    frozen = TorchvisionFCOS(
        _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                              extra_blocks=LastLevelP6P7(256, 256)), 91)
    state = {k: v for k, v in trained_bn.state_dict().items() if not k.endswith("num_batches_tracked")}
    frozen.load_state_dict(state)  # the layout check: exactly the keys torchvision's builder expects
    _, ids = coco_classes(COCO_V1.meta["categories"])
    bias = state["head.classification_head.cls_logits.bias"]
    bias.fill_(-12.0)
    bias[ids] = torch.linspace(-3.0, -1.0, len(ids))
    state["head.regression_head.bbox_reg.bias"].uniform_(1.0, 3.0)
    return frozen.state_dict() | state


def plant(torch_home: Path, file_name: str, state: dict) -> Path:
    """Save ``state`` where torchvision's weights API looks for ``file_name``."""
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / file_name)
    return folder / file_name

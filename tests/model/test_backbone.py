import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

from fcos.config import BackboneConfig
from fcos.model.backbones import build_backbone


@pytest.mark.parametrize("name,channels", [("resnet18", (128, 256, 512)), ("resnet50", (512, 1024, 2048))])
def test_outputs_and_strides(name, channels):
    bb = build_backbone(BackboneConfig(name=name)).eval()
    c3, c4, c5 = bb(torch.rand(1, 3, 64, 96))
    assert bb.out_channels == channels
    assert [c3.shape[1:], c4.shape[1:], c5.shape[1:]] == [(channels[0], 8, 12), (channels[1], 4, 6), (channels[2], 2, 3)]


def test_from_scratch_trains_every_layer_and_batchnorm():
    bb = build_backbone(BackboneConfig(name="resnet18"))
    assert all(p.requires_grad for p in bb.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in bb.modules())


def test_local_imagenet_weights_freeze_stem_and_stage1(tmp_path):
    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    bb = build_backbone(BackboneConfig(name="resnet18", weights=str(tmp_path / "r18.pth")))
    torch.testing.assert_close(bb.trunk.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert all(isinstance(m, FrozenBatchNorm2d) for m in bb.modules() if "Norm" in type(m).__name__)
    assert not bb.trunk.conv1.weight.requires_grad and not any(p.requires_grad for p in bb.trunk.layer1.parameters())
    assert all(p.requires_grad for p in bb.trunk.layer2.parameters())


def test_frozen_stage_batchnorm_stays_in_eval():
    bb = build_backbone(BackboneConfig(name="resnet18", norm="bn", frozen_stages=2)).train()
    assert not bb.trunk.bn1.training and not bb.trunk.layer1[0].bn1.training and bb.trunk.layer2[0].bn1.training


def test_bad_weights_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        build_backbone(BackboneConfig(name="resnet18", weights=str(tmp_path / "missing.pth")))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not match"):
        build_backbone(BackboneConfig(name="resnet18", weights=str(tmp_path / "bad.pth")))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(BackboneConfig(name="vgg16"))

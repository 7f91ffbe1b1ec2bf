"""Backbones: every registered torchvision family at strides 8/16/32 with its stages, ImageNet weights
through torchvision's weights API (planted torch hub files, mocked downloads), frozen BatchNorm with the
same numerics, local files, and a ready module given to FCOS."""

import urllib.error

import pytest
import torch
import torchvision.models
from torch import nn
from torchvision.models import resnet18
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

from fcos import FCOS, official
from fcos.config import BackboneConfig
from fcos.model.backbones import BACKBONES, build_backbone, unit_stages
from fcos.utils.hub import WeightsUnavailableError, cache_path, torchvision_weights
from fcos.weights.checkpoint import CheckpointError, load_model, model_checkpoint, save_checkpoint
from pretrained_helpers import empty_torch_home, plant

# C3, C4, C5 channels of each registered backbone (torchvision's stage widths).
CHANNELS = {
    "resnet18": (128, 256, 512), "resnet34": (128, 256, 512), "resnet50": (512, 1024, 2048),
    "resnet101": (512, 1024, 2048), "resnext50_32x4d": (512, 1024, 2048), "resnext101_32x8d": (512, 1024, 2048),
    "wide_resnet50_2": (512, 1024, 2048), "mobilenet_v3_large": (40, 112, 960), "efficientnet_b0": (40, 112, 320),
    "convnext_tiny": (192, 384, 768), "regnet_y_400mf": (104, 208, 440), "regnet_y_1_6gf": (120, 336, 888),
}


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    return empty_torch_home(tmp_path, monkeypatch)


def test_the_registry_lists_at_least_the_promised_families():
    assert set(CHANNELS) == set(BACKBONES)
    assert {spec.family for spec in BACKBONES.values()} >= {"ResNet", "ResNeXt", "MobileNetV3", "EfficientNet",
                                                             "ConvNeXt", "RegNet"}


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_every_backbone_gives_c3_c5_at_strides_8_16_32_and_freezes_stem_and_stage1(name):
    bb = build_backbone(BackboneConfig(name=name, norm="frozen", frozen_stages=2)).eval()
    features = bb(torch.rand(1, 3, 96, 128))
    assert bb.out_channels == CHANNELS[name]
    assert [tuple(f.shape[1:]) for f in features] == [(c, 96 // s, 128 // s) for c, s in zip(CHANNELS[name], (8, 16, 32))]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())
    # The frozen units are exactly those that run at stride <= 4 (stem and stage 1), nothing more.
    frozen = [p for u in bb.frozen_units for p in bb.trunk.get_submodule(u).parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    later = [u for u in bb.units if u not in bb.frozen_units]
    assert all(p.requires_grad for u in later for p in bb.trunk.get_submodule(u).parameters())
    x, strides = torch.rand(1, 3, 64, 64), {}
    with torch.no_grad():
        for u in bb.units:
            x = bb.trunk.get_submodule(u)(x)
            strides[u] = 64 // x.shape[-1]
    assert all(strides[u] <= 4 for u in bb.frozen_units) and all(strides[u] >= 4 for u in later)
    assert strides[later[0]] >= 8 or strides[bb.frozen_units[-1]] == 2  # stage 2 starts where the freezing stops
    # Only the trunk's kept modules remain: every key is one of torchvision's (ImageNet files load as they are).
    reference = getattr(torchvision.models, BACKBONES[name].builder)(weights=None).state_dict()
    assert set(bb.trunk.state_dict()) <= set(reference)


def test_unit_stages_follow_the_output_stride():
    assert unit_stages([2, 2, 2, 4, 4, 8, 16, 32]) == [0, 0, 0, 1, 1, 2, 3, 4]  # ResNet: conv1 bn1 relu maxpool layer1..4
    assert unit_stages([4, 4, 8, 8, 16, 16, 32, 32]) == [0, 1, 2, 2, 3, 3, 4, 4]  # ConvNeXt: a stride-4 stem
    assert unit_stages([2, None, 4, 2]) == [0, 0, 1, 1]  # no feature map: the previous stage; never backwards


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


@pytest.mark.parametrize("frozen_stages,trainable", [(0, 60), (1, 57), (2, 45), (5, 0)])
def test_frozen_stages_count_from_the_input(frozen_stages, trainable):
    bb = build_backbone(BackboneConfig(name="resnet18", frozen_stages=frozen_stages))
    assert sum(p.requires_grad for p in bb.parameters()) == trainable  # resnet18: 60 tensors; conv1 + bn1 = 3, layer1 = 12


def test_imagenet_weights_come_through_torchvision_into_the_hub_cache(torch_home, monkeypatch):
    weights = torchvision_weights("ResNet18_Weights.IMAGENET1K_V1")
    reference = resnet18(weights=None)
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        torch.save(reference.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    bb = build_backbone(BackboneConfig(name="resnet18", weights="imagenet"))
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert calls == [(weights.url, str(expected), "f37072fd")] and cache_path(weights) == expected  # hash checked
    torch.testing.assert_close(bb.trunk.layer3[0].conv1.weight, reference.layer3[0].conv1.weight, rtol=0, atol=0)
    # Pretrained defaults: frozen BatchNorm, stem and stage 1 frozen.
    assert all(isinstance(m, FrozenBatchNorm2d) for m in bb.modules() if "Norm" in type(m).__name__)
    assert not bb.trunk.conv1.weight.requires_grad and bb.trunk.layer2[0].conv1.weight.requires_grad
    build_backbone(BackboneConfig(name="resnet18", weights="imagenet"))
    assert len(calls) == 1  # then read from the cache


def test_imagenet_weights_offline_name_url_and_path(torch_home, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        build_backbone(BackboneConfig(name="efficientnet_b0", weights="imagenet"))
    url = torchvision_weights("EfficientNet_B0_Weights.IMAGENET1K_V1").url
    assert url in str(info.value) and str(torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]) in str(info.value)


def test_frozen_batchnorm_keeps_torchvision_numerics_from_a_planted_file(torch_home):
    # MobileNetV3's BatchNorm has eps=1e-3: a FrozenBatchNorm2d with torchvision's default 1e-5 would differ.
    reference = torchvision.models.mobilenet_v3_large(weights=None)
    with torch.no_grad():
        reference.train()(torch.rand(4, 3, 64, 64))  # non-trivial BatchNorm statistics
    plant(torch_home, "mobilenet_v3_large-8738ca79.pth", reference.state_dict())
    bb = build_backbone(BackboneConfig(name="mobilenet_v3_large", weights="imagenet")).eval()
    assert {m.eps for m in bb.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-3}
    image = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        c5 = bb(image)[-1]
        expected = reference.eval().features(image)
    torch.testing.assert_close(c5, expected, rtol=1e-5, atol=1e-6)


def test_other_torchvision_weights_by_name(torch_home):
    plant(torch_home, "resnet50-11ad3fa6.pth", torchvision.models.resnet50(weights=None).state_dict())
    bb = build_backbone(BackboneConfig(name="resnet50", weights="ResNet50_Weights.IMAGENET1K_V2"))
    assert not bb.trunk.layer1[0].conv1.weight.requires_grad
    with pytest.raises(ValueError, match="not weights of resnet18"):
        build_backbone(BackboneConfig(name="resnet18", weights="ResNet50_Weights.IMAGENET1K_V2"))
    with pytest.raises(WeightsUnavailableError, match="unknown torchvision weights"):
        build_backbone(BackboneConfig(name="resnet18", weights="ResNet18_Weights.IMAGENET9K"))


def test_a_ready_module_is_a_backbone(tmp_path):
    module = create_feature_extractor(resnet18(weights=None), {"layer2": "c3", "layer3": "c4", "layer4": "c5"})
    model = FCOS(official(num_classes=2, **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1,
                                              "input.min_size": 128, "input.max_size": 128}), backbone=module)
    assert model.backbone.out_channels == (128, 256, 512) and model.config.backbone.name.startswith("custom:")
    losses = model([torch.rand(3, 120, 100)], [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 80.0]]), "labels": torch.tensor([1])}])
    sum(losses.values()).backward()
    assert module.get_submodule("layer1.0.conv1").weight.grad.abs().sum() > 0
    model.eval()
    assert set(model([torch.rand(3, 120, 100)])[0]) == {"boxes", "scores", "labels"}
    save_checkpoint(model_checkpoint(model, ["a", "b"]), tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match="FCOS\\(config, backbone=module\\)"):
        load_model(tmp_path / "custom.pt")
    with pytest.raises(ValueError, match="strides \\(8, 16, 32\\), got strides \\(4, 8, 16\\)"):
        FCOS(official(num_classes=2), backbone=create_feature_extractor(resnet18(), ["layer1", "layer2", "layer3"]))


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "regnet_y_400mf"])
def test_detector_trains_and_reloads_with_another_family(name, tmp_path):
    config = official(num_classes=3, backbone=name, **{"fpn.channels": 32, "head.norm_groups": 16,
                                                      "head.num_convs": 1, "input.min_size": 128, "input.max_size": 160})
    model = FCOS(config)
    losses = model([torch.rand(3, 128, 150)], [{"boxes": torch.tensor([[8.0, 8.0, 90.0, 70.0]]), "labels": torch.tensor([2])}])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    save_checkpoint(model_checkpoint(model, ["a", "b", "c"]), tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")  # the checkpoint names the backbone: no flags needed
    assert loaded.config.backbone.name == name
    image = torch.rand(3, 128, 150)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.forward_batch(model.transform([image])[0]).cls_logits,
                           loaded.forward_batch(loaded.transform([image])[0]).cls_logits)

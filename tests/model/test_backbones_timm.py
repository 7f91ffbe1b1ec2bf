"""timm:<model> backbones: feature maps at strides 8/16/32, timm's own pretrained loading (the Hugging Face
download mocked to assert what it fetches, a local file), timm's frozen BatchNorm, checkpoints that rebuild
without the weights, and the input statistics of the weights."""

import pytest
import torch

from fcos import FCOS, official
from fcos.config import BackboneConfig
from fcos.model.backbones import build_backbone
from fcos.model.options import model_config_for
from fcos.utils.hub import WeightsUnavailableError
from fcos.weights.checkpoint import load_model, model_checkpoint, save_checkpoint

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

NAME = "mobilenetv3_small_050"  # 0.3 M parameters: the smallest timm CNN with stride-32 features


@pytest.fixture
def timm_file(tmp_path):
    """A timm classifier state dict (what timm's hub files hold) saved as safetensors."""
    torch.manual_seed(0)
    reference = timm.create_model(NAME)
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    return reference, path


def test_strides_channels_and_stages():
    bb = build_backbone(BackboneConfig(name=f"timm:{NAME}", norm="bn", frozen_stages=2)).train()
    c3, c4, c5 = bb(torch.rand(2, 3, 96, 64))
    assert [tuple(c.shape[-2:]) for c in (c3, c4, c5)] == [(12, 8), (6, 4), (3, 2)]
    assert bb.out_channels == (c3.shape[1], c4.shape[1], c5.shape[1])
    # Stem (conv_stem, bn1, act1 at stride 2) and stage 1 (blocks.0 ... up to stride 4) are frozen, BN in eval.
    assert bb.frozen_units[:3] == ("conv_stem", "bn1", "act1") and "blocks.2" not in bb.frozen_units
    assert not bb.trunk.conv_stem.weight.requires_grad and not bb.trunk.bn1.training
    assert all(p.requires_grad for p in bb.trunk.get_submodule("blocks.2").parameters())


def test_pretrained_weights_through_timm_hub_loading(timm_file, monkeypatch):
    import timm.models._hub as timm_hub

    reference, path = timm_file
    calls = []

    def fake_hf_hub_download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        calls.append((repo_id, filename, cache_dir))
        return str(path)

    monkeypatch.setattr(timm_hub, "hf_hub_download", fake_hf_hub_download)
    bb = build_backbone(BackboneConfig(name=f"timm:{NAME}", weights="imagenet")).eval()
    # timm's default tag of the model, its safetensors file, the default (Hugging Face) cache.
    assert calls == [(f"timm/{NAME}.lamb_in1k", "model.safetensors", None)]
    assert torch.equal(bb.trunk.get_submodule("blocks.2.0.conv_pw").weight, reference.blocks[2][0].conv_pw.weight)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())  # timm's frozen BN (+ act)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.eval().forward_intermediates(image, intermediates_only=True)[-1]
        torch.testing.assert_close(bb(image)[-1], expected, rtol=1e-5, atol=1e-6)

    def offline(*args, **kwargs):
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(timm_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsUnavailableError, match=f"timm/{NAME}.lamb_in1k.*\n.*HF_HOME"):
        build_backbone(BackboneConfig(name=f"timm:{NAME}", weights="imagenet"))


def test_local_file_and_checkpoint_rebuild_without_it(timm_file, tmp_path):
    reference, path = timm_file
    config = official(num_classes=2, backbone=f"timm:{NAME}", **{"backbone.weights": str(path), "fpn.channels": 32,
                      "head.norm_groups": 16, "head.num_convs": 1, "input.min_size": 128, "input.max_size": 128})
    model = FCOS(config).eval()
    assert torch.equal(model.backbone.trunk.conv_stem.weight, reference.conv_stem.weight)
    save_checkpoint(model_checkpoint(model, ["a", "b"]), tmp_path / "m.pt")
    path.unlink()  # the checkpoint holds the tensors: rebuilding never reads the file again
    loaded, _ = load_model(tmp_path / "m.pt")
    assert loaded.config.backbone.name == f"timm:{NAME}" and loaded.config.backbone.norm == "frozen"
    image = torch.rand(3, 100, 120)
    with torch.no_grad():
        a, b = model([image])[0], loaded([image])[0]
    assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["boxes"], b["boxes"])
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        build_backbone(BackboneConfig(name=f"timm:{NAME}", weights=str(path)))


def test_unsupported_models_and_input_statistics():
    with pytest.raises(ValueError, match="unknown timm model"):
        build_backbone(BackboneConfig(name="timm:no_such_net"))
    # Weights trained on other input statistics bring them along; random init keeps ImageNet's.
    assert model_config_for(2, backbone="timm:inception_v3.tf_in1k", backbone_weights="imagenet").input.mean == (0.5, 0.5, 0.5)
    assert model_config_for(2, backbone="timm:inception_v3.tf_in1k").input.mean == (0.485, 0.456, 0.406)

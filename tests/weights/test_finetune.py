"""Fine-tuning: classification rows of classes named like the weights' are copied bit-equal, the rest
start at the focal-loss prior, everything else is kept; a dataset of COCO names starts with the COCO
detector's scores; the model config comes from the weights; training prints what it kept."""

from __future__ import annotations

import dataclasses
import math
import urllib.error

import pytest
import torch

from fcos import FCOS, official
from fcos.cli import main
from fcos.engine.train_config import finetune
from fcos.model.transform import ImageBatch
from fcos.weights.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from fcos.weights.finetune import finetune_config, initialise_from
from fcos.weights.pretrained import coco_classes
from fcos.weights.resolve import load_weights
from pretrained_helpers import COCO_V1, FILE, coco_like_state_dict, empty_torch_home, plant

TINY = {"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1, "input.min_size": 128, "input.max_size": 128}


def tiny_checkpoint(path, names, seed=1):
    torch.manual_seed(seed)
    model = FCOS(official(num_classes=len(names), backbone="resnet18", **TINY))
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-3, 0)  # rows that differ from any fresh init
    return save_checkpoint(model_checkpoint(model, names), path), model.state_dict()


def test_named_rows_are_copied_bit_equal_and_the_rest_reset_to_the_prior(tmp_path):
    path, source = tiny_checkpoint(tmp_path / "src.pt", ["person", "car", "bus", "truck", "traffic light"])
    torch.manual_seed(2)
    model = FCOS(official(num_classes=4, backbone="resnet18", **TINY))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialise_from(model, path, ["Car", "dog", "BUS", "traffic_light"])
    state = model.state_dict()
    w, b = state["head.cls_logits.weight"], state["head.cls_logits.bias"]
    for row, src in ((0, 1), (2, 2), (3, 4)):  # case and "_" do not matter
        assert torch.equal(w[row], source["head.cls_logits.weight"][src]) and b[row] == source["head.cls_logits.bias"][src]
    assert torch.equal(w[1], fresh["head.cls_logits.weight"][1])  # "dog": the fresh N(0, 0.01) init
    assert b[1].item() == pytest.approx(-math.log((1 - 0.01) / 0.01))  # and the focal-loss prior bias
    assert all(torch.equal(state[k], source[k]) for k in state if not k.startswith("head.cls_logits."))
    assert report.copied == [("Car", "car"), ("BUS", "bus"), ("traffic_light", "traffic light")]
    assert report.reset_classes == ["dog"] and report.reset_tensors == [] and report.kept == len(source) - 2
    text = report.summary()
    assert "copied for 3 classes" in text and "reset to the prior for 1 classes: dog" in text


def test_other_architectures_keep_what_fits_and_report_the_rest(tmp_path):
    path, source = tiny_checkpoint(tmp_path / "src.pt", ["a", "b"])
    model = FCOS(official(num_classes=2, backbone="resnet18", **{**TINY, "head.num_convs": 2}))
    report = initialise_from(model, path, ["b", "c"])
    assert report.copied == [("b", "b")] and report.reset_classes == ["c"]
    assert report.reset_tensors == ["head.box_tower.3.bias", "head.box_tower.3.weight", "head.box_tower.4.bias",
                                    "head.box_tower.4.weight", "head.cls_tower.3.bias", "head.cls_tower.3.weight",
                                    "head.cls_tower.4.bias", "head.cls_tower.4.weight"]
    assert torch.equal(model.state_dict()["backbone.trunk.layer4.1.conv2.weight"], source["backbone.trunk.layer4.1.conv2.weight"])


def test_a_dataset_of_coco_names_starts_with_the_coco_detectors_scores(tmp_path, monkeypatch):
    torch_home = empty_torch_home(tmp_path, monkeypatch)
    plant(torch_home, FILE, coco_like_state_dict())
    config = finetune_config("fcos_resnet50_fpn_coco")
    model = FCOS(dataclasses.replace(config, num_classes=3)).eval()
    report = initialise_from(model, "fcos_resnet50_fpn_coco", ["bus", "Person", "car"])
    assert [a for a, _ in report.copied] == ["bus", "Person", "car"] and not report.reset_classes
    coco, state = load_weights("fcos_resnet50_fpn_coco")
    names, _ = coco_classes(COCO_V1.meta["categories"])
    rows = [names.index(n) for n in ("bus", "person", "car")]
    x = torch.randn(1, 3, 160, 192)
    batch = ImageBatch(x, [(160, 192)], [(160, 192)])
    with torch.no_grad():
        ours, theirs = model.forward_batch(batch), coco.forward_batch(batch)
    torch.testing.assert_close(ours.cls_logits, theirs.cls_logits[..., rows], rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.box_ltrb, theirs.box_ltrb) and torch.equal(ours.centerness, theirs.centerness)
    assert ours.cls_logits.std() > 0.1  # not a constant: the comparison has something to compare


def test_finetune_config_comes_from_the_weights(tmp_path, monkeypatch):
    empty_torch_home(tmp_path, monkeypatch)

    def no_download(*args, **kwargs):
        raise urllib.error.URLError("the config of a registered name needs no file")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    config = finetune_config("fcos_resnet50_fpn_coco", freeze_stages=3, img_size=512)
    assert config.backbone.name == "resnet50" and config.preset == "torchvision" and config.backbone.frozen_stages == 3
    assert (config.input.min_size, config.input.max_size) == (512, 512) and config.backbone.weights is None
    assert finetune_config("fcos_resnet50_fpn_coco").input.max_size == 1333  # official sizes by default
    with pytest.raises(ValueError, match="resnet50 backbone"):
        finetune_config("fcos_resnet50_fpn_coco", backbone="resnet18")
    with pytest.raises(ValueError, match="'torchvision' model"):
        finetune_config("fcos_resnet50_fpn_coco", preset="official")
    with pytest.raises(ValueError, match="already initialises the whole model"):
        finetune_config("fcos_resnet50_fpn_coco", backbone_weights="imagenet")


def test_finetune_recipe_lowers_the_rate_and_warms_up_briefly():
    recipe = finetune(batch_size=8)
    assert recipe.base_lr() == pytest.approx(0.01 * 8 / 16 * 0.25) and recipe.optimizer == "sgd"
    assert recipe.warmup_iters == 100 and recipe.warmup_factor == 0.1


def test_train_cli_fine_tunes_a_checkpoint_and_prints_what_it_kept(shared_data, tmp_path, capsys):
    path, source = tiny_checkpoint(tmp_path / "src.pt", ["Apple", "pear", "orange"])
    assert main(["train", "--data", str(shared_data / "fruit"), "--out", str(tmp_path / "run"), "--weights", str(path),
                 "--recipe", "finetune", "--batch-size", "2", "--max-iters", "1", "--workers", "0", "--val-split", "none",
                 "--no-progress", "--freeze-stages", "5"]) == 0
    out = capsys.readouterr().out
    assert f"initialised from {path}" in out and "copied for 2 classes: apple <- Apple, orange" in out
    assert "reset to the prior for 1 classes: banana" in out
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["class_names"] == ["apple", "banana", "orange"] and state["config"]["fpn"]["channels"] == 32
    assert state["config"]["backbone"]["frozen_stages"] == 5 and state["train_config"]["lr_scale"] == 0.25
    # The whole backbone was frozen: one update left it as it was.
    trunk = [k for k in source if k.startswith("backbone.") and source[k].is_floating_point()]
    assert all(torch.equal(state["model"][k], source[k]) for k in trunk)
    assert main(["train", "--data", str(shared_data / "fruit"), "--weights", str(path), "--backbone", "resnet50"]) == 2
    assert "has a resnet18 backbone" in capsys.readouterr().err

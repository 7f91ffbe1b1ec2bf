"""The model flags are generated from ModelOptions' fields; the options give a preset's config from
scratch, or change another model's config (fine-tuning, `fcos train --config`) without changing its
preset or backbone."""

from __future__ import annotations

import dataclasses

import pytest

from fcos.cli import build_parser, config_values
from fcos.config import official, torchvision_preset
from fcos.model.options import ModelOptions, OptionConflictError, model_config_for


def options(*flags: str) -> ModelOptions:
    return ModelOptions(**config_values(build_parser().parse_args(["train", "--data", "d", *flags]), ModelOptions))


def test_every_option_is_a_flag_of_the_model_group_with_help():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    model = next(g for g in train._action_groups if g.title == "model")
    flags = {opt: action for action in model._group_actions for opt in action.option_strings}
    for field in dataclasses.fields(ModelOptions):
        action = flags["--" + field.name.replace("_", "-")]
        assert action.dest == field.name and action.help == field.metadata["help"]
    assert flags["--regression"].choices == ("relu", "softplus")  # HeadConfig's own Literal
    assert flags["--preset"].choices == ("official", "torchvision")
    assert flags["--conv3x3"].choices == ("auto", "direct", "winograd")


def test_unset_options_are_none_and_given_ones_parse():
    assert options() == ModelOptions()
    given = options("--img-size", "320", "--fpn-channels", "64", "--regression", "softplus", "--freeze-stages", "5",
                    "--backbone", "resnet18")
    assert (given.img_size, given.fpn_channels, given.regression, given.freeze_stages, given.backbone) == (
        320, 64, "softplus", 5, "resnet18")


def test_config_from_scratch_equals_model_config_for():
    given = ModelOptions(backbone="resnet18", img_size=160, fpn_channels=128, head_convs=2)
    assert given.config(3, **{"loss.iou_smoothing": 0.0}) == model_config_for(
        3, backbone="resnet18", img_size=160, fpn_channels=128, head_convs=2, **{"loss.iou_smoothing": 0.0})
    assert ModelOptions(regression="softplus").config(1).head.regression == "softplus"


def test_applied_to_another_config_keeps_its_preset_and_backbone():
    base = torchvision_preset(num_classes=5, backbone="resnet18")
    changed = ModelOptions(img_size=256, conv3x3="direct").applied_to(base, "their.pt")
    assert (changed.input.min_size, changed.input.max_size, changed.conv3x3) == (256, 256, "direct")
    assert changed.preset == "torchvision" and changed.backbone.name == "resnet18" and changed.num_classes == 5
    with pytest.raises(OptionConflictError, match="their.pt is a 'torchvision' model"):
        ModelOptions(preset="official").applied_to(base, "their.pt")
    with pytest.raises(OptionConflictError, match="their.pt has a resnet18 backbone"):
        ModelOptions(backbone="resnet50").applied_to(base, "their.pt")
    assert ModelOptions(backbone="resnet18").applied_to(base, "x") == base  # naming its own is fine
    assert ModelOptions(backbone_weights="imagenet").applied_to(official(), "x").backbone.weights == "imagenet"

"""``fcos train``'s flags are generated from TrainConfig's fields (help from their metadata)."""

from __future__ import annotations

import dataclasses

import pytest

from fcos.cli import build_parser, config_values
from fcos.engine.run_config import run_configs
from fcos.engine.train_config import TRAIN_PRESETS, TrainConfig


def train_config(*flags: str) -> TrainConfig:
    args = build_parser().parse_args(["train", "--data", "d", *flags])
    return run_configs(train_values=config_values(args, TrainConfig), recipe=args.recipe)[1]


def test_every_field_is_a_flag_with_help():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {opt: action for action in train._actions for opt in action.option_strings}
    for field in dataclasses.fields(TrainConfig):
        action = flags["--" + field.name.replace("_", "-")]
        assert action.dest == field.name and action.help == field.metadata["help"] and action.help


def test_unset_flags_keep_the_recipe_defaults():
    assert train_config() == dataclasses.replace(TrainConfig(), data="d")
    assert train_config("--recipe", "cpu") == TRAIN_PRESETS["cpu"](data="d")


def test_spellings_types_and_special_values():
    cfg = train_config("--recipe", "cpu", "--max-iters", "7", "--lr", "0.5", "--amp", "--no-photometric", "--no-progress",
                       "--val-split", "none", "--steps", "0.5", "0.75", "--resume", "--optimizer", "sgd", "--ema", "0.99")
    assert (cfg.max_iters, cfg.lr, cfg.amp, cfg.photometric, cfg.progress) == (7, 0.5, True, False, False)
    assert cfg.val_split is None and cfg.steps == (0.5, 0.75) and cfg.resume == "auto" and cfg.ema == 0.99
    assert cfg.optimizer == "sgd" and cfg.weight_decay == TRAIN_PRESETS["cpu"]().weight_decay  # rest from the recipe
    assert train_config("--resume", "runs/x/last.pt").resume == "runs/x/last.pt"


@pytest.mark.parametrize("flags", [["--optimizer", "adam"], ["--max-iters", "ten"], ["--schedule", "linear"]])
def test_bad_values_are_refused_by_the_parser(flags, capsys):
    with pytest.raises(SystemExit):
        train_config(*flags)
    assert "invalid" in capsys.readouterr().err


def test_fine_tuning_flags_recipe_and_model_group():
    cfg = train_config("--recipe", "finetune", "--lr-scale", "0.5", "--weights", "fcos_resnet50_fpn_coco")
    assert cfg.lr_scale == 0.5 and cfg.weights == "fcos_resnet50_fpn_coco" and cfg.warmup_iters == 100
    assert cfg.base_lr() == pytest.approx(0.01 * cfg.batch_size / 16 * 0.5)
    assert train_config("--recipe", "finetune").lr_scale == 0.25
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    model = next(g for g in train._action_groups if g.title == "model")
    flags = {opt for action in model._group_actions for opt in action.option_strings}
    assert {"--preset", "--backbone", "--backbone-weights", "--freeze-stages", "--weights"} <= flags


def test_backbone_names_come_from_the_registry(capsys):
    from fcos.model.backbones import BACKBONES

    args = build_parser().parse_args(["train", "--data", "d", "--backbone", "convnext_tiny"])
    assert args.backbone == "convnext_tiny"
    assert build_parser().parse_args(["train", "--data", "d", "--backbone", "timm:resnet18"]).backbone == "timm:resnet18"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--backbone", "resnet51"])
    err = capsys.readouterr().err
    assert "unknown backbone 'resnet51'" in err and all(name in err for name in BACKBONES) and "timm:<model>" in err


def _train_error(capsys, shared_data, tmp_path, *flags: str) -> str:
    from fcos.cli import main

    code = main(["train", "--data", str(shared_data / "fruit"), "--out", str(tmp_path / "run"), "--img-size", "128",
                 "--fpn-channels", "32", "--head-convs", "1", "--max-iters", "1", "--workers", "0", *flags])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_train_without_timm_installed_is_one_error_line(capsys, shared_data, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "timm", None)  # `import timm` raises ImportError
    err = _train_error(capsys, shared_data, tmp_path, "--backbone", "timm:resnet18")
    assert "timm backbones need timm" in err and "pip install 'fcos[timm]'" in err


def test_train_with_weights_of_another_backbone_is_one_error_line(capsys, shared_data, tmp_path):
    # Refused from the weights' name, before anything is downloaded.
    err = _train_error(capsys, shared_data, tmp_path, "--backbone", "resnet18", "--backbone-weights",
                       "ResNet50_Weights.IMAGENET1K_V1")
    assert "ResNet50_Weights.IMAGENET1K_V1 are not weights of resnet18" in err
    assert "ResNet18_Weights.IMAGENET1K_V1" in err  # what would fit


def test_recipe_model_changes_and_the_regression_flag():
    from fcos.engine.train_config import recipe_model
    from fcos.model.options import model_config_for

    official = model_config_for(1, **recipe_model("official"))
    assert official.head.regression == "relu" and official.loss.iou_smoothing == 1.0  # the official code's
    cpu = model_config_for(1, **recipe_model("cpu"))
    assert cpu.head.regression == "softplus" and cpu.loss.iou_smoothing == 0.0  # measured: docs/augmentation.md
    relu = model_config_for(1, **recipe_model("cpu", "relu"))  # --regression replaces only the regression
    assert relu.head.regression == "relu" and relu.loss.iou_smoothing == 0.0
    assert dataclasses.replace(relu, head=cpu.head) == cpu


# Every number a command takes is checked where it is read: argparse's error naming the flag, exit 2, before
# any model or dataset is loaded (these were tracebacks from deep inside torch, or silently accepted).
@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--data", "d", "--lr", "-1"], "argument --lr: must be at least 0, got -1"),
    (["train", "--data", "d", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["train", "--data", "d", "--steps", "0.5", "60000"], "argument --steps: must be in [0, 1], got 60000"),
    (["train", "--data", "d", "--ema", "1"], "argument --ema: must be in (0, 1), got 1"),
    (["train", "--data", "d", "--tile", "5"], "argument --tile: must be at least 32, got 5"),
    (["train", "--data", "d", "--img-size", "0"], "argument --img-size: must be at least 32, got 0"),
    (["train", "--data", "d", "--head-convs", "-1"], "argument --head-convs: must be at least 0, got -1"),
    (["train", "--data", "d", "--workers", "x"], "argument --workers: invalid int value: 'x'"),
    (["predict", "--weights", "w.pt", "--source", "s", "--conf", "-1"], "argument --conf: expected a number in [0, 1]"),
    (["predict", "--weights", "w.pt", "--source", "s", "--slice-overlap", "0.95"],
     "argument --slice-overlap: must be in [0, 0.9], got 0.95"),
    (["predict", "--weights", "w.pt", "--source", "s", "--slice-batch", "0"],
     "argument --slice-batch: must be at least 1, got 0"),
    (["eval", "--weights", "w.pt", "--data", "d", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["track", "--weights", "w.pt", "--source", "s", "--track-buffer", "-1"],
     "argument --track-buffer: must be at least 0, got -1"),
    (["export", "--weights", "w.pt", "--opset", "3"], "argument --opset: must be in [12, "),
    (["export", "--weights", "w.pt", "--int8", "--calib-images", "0"], "argument --calib-images: must be at least 1"),
    (["benchmark", "--weights", "w.pt", "--data", "d", "--threads", "-1"], "argument --threads: must be at least 1"),
    (["data", "shapes", "--out", "o", "--train", "-1"], "argument --train: must be at least 1, got -1"),
    (["data", "shapes-video", "--fps", "0"], "argument --fps: must be > 0, got 0"),
])
def test_numbers_out_of_range_are_argparse_errors(argv, message, capsys):
    from fcos.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err


# Rules of several values together (or of a generator) are found before any work: same exit 2, one line.
@pytest.mark.parametrize(("argv", "message"), [
    (["data", "shapes-video", "--objects", "2", "--crossings", "3"], "fcos data shapes-video: error: need frames >= 1"),
    (["data", "shapes", "--size", "10"], "fcos data shapes: error: image_size 10 is too small for objects of 12 px"),
    (["track", "--source", "s", "--low-score", "0.7"],
     "fcos track: error: TrackerConfig needs low_score <= high_score <= new_track_score, got 0.7, 0.5, 0.6"),
])
def test_settings_that_contradict_each_other_exit_2_with_one_line(argv, message, capsys, tmp_path):
    from fcos.cli import main

    weights = ["--weights", str(tmp_path / "never_loaded.pt")] if argv[0] == "track" else []
    out = ["--out", str(tmp_path / "out")]
    assert main([*argv, *weights, *out]) == 2
    err = capsys.readouterr().err
    assert err.strip() == message or err.startswith(message), err
    assert not (tmp_path / "out").exists()  # nothing written

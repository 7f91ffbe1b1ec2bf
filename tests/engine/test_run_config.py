"""A run's config.yaml: written with the package version and the exact command, read back, and rerun
with `fcos train --config runs/x/config.yaml [--flag value ...]`."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from fcos import __version__
from fcos.cli import main
from fcos.engine.run_config import (
    RunConfigError,
    command_line,
    read_run_config,
    run_configs,
    write_run_config,
)
from fcos.engine.train_config import TRAIN_PRESETS, cpu_from_scratch
from fcos.model.options import ModelOptions, OptionConflictError, model_config_for

TINY = ["--backbone", "resnet18", "--img-size", "128", "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu",
        "--batch-size", "2", "--workers", "0", "--no-progress", "--warmup-iters", "1", "--log-every", "1"]


def test_written_config_reads_back_equal(tmp_path):
    model = model_config_for(3, backbone="resnet18", img_size=160, **{"head.regression": "softplus"})
    train = cpu_from_scratch(data="d", multi_scale=(128, 160), steps=(0.5, 0.75), scale_jitter=(0.5, 1.5), ema=0.99)
    path = write_run_config(tmp_path / "config.yaml", model, train, command="fcos train --data d")
    back_model, back_train, info = read_run_config(path)
    assert back_model == model and back_train == train
    assert info["version"] == __version__ and info["command"] == "fcos train --data d" and info["cwd"]


def test_command_line_names_the_cli():
    assert command_line(["/venv/bin/fcos", "train", "--data", "my data"]) == "fcos train --data 'my data'"
    assert command_line(["/src/fcos/__main__.py", "train", "--seed", "1"]) == "fcos train --seed 1"  # torchrun workers


def test_rerun_keeps_the_files_values_and_changes_only_what_is_given(tmp_path):
    model = model_config_for(3, backbone="resnet18", img_size=160)
    train = cpu_from_scratch(data="d", out=str(tmp_path), lr=0.004, resume="auto")
    path = write_run_config(tmp_path / "config.yaml", model, train)
    new_model, new_train = run_configs(train_values={"out": str(tmp_path / "b"), "seed": 3}, config_file=path,
                                       options=ModelOptions(img_size=192))
    assert new_train == dataclasses.replace(train, out=str(tmp_path / "b"), seed=3, resume=None)
    assert new_model == dataclasses.replace(model, input=dataclasses.replace(model.input, min_size=192, max_size=192))
    with pytest.raises(RunConfigError, match="--recipe cpu with --config"):
        run_configs(train_values={"out": "b"}, config_file=path, recipe="cpu")
    with pytest.raises(RunConfigError, match="would write into that run's folder"):
        run_configs(train_values={}, config_file=path)
    with pytest.raises(OptionConflictError, match="resnet18 backbone"):
        run_configs(train_values={"out": "b"}, config_file=path, options=ModelOptions(backbone="resnet50"))
    # without --config: the recipe's values and the given ones; --data is required then
    assert run_configs(train_values={"data": "d"}, recipe="cpu")[1] == TRAIN_PRESETS["cpu"](data="d")
    with pytest.raises(RunConfigError, match="--data"):
        run_configs(train_values={})


@pytest.mark.parametrize("text", ["model: [1\n", "train: {}\n", "model: {}\ntrain: {bogus: 1}\n",
                                  "model: {fpn: {channels: 7}}\ntrain: {}\n"])
def test_unusable_config_files_name_the_problem(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(RunConfigError, match=str(path)):
        read_run_config(path)


@pytest.mark.parametrize("section,line,message", [
    ("train", "batch_size: two", "TrainConfig.batch_size must be an integer, got 'two'"),
    ("train", "batch_size: 2.5", "TrainConfig.batch_size must be an integer, got 2.5"),
    ("train", "max_iters: 1.5", "TrainConfig.max_iters must be an integer or null, got 1.5"),
    ("train", "amp: 'no'", "TrainConfig.amp must be true or false, got 'no'"),
    ("train", "optimizer: adam", "TrainConfig.optimizer must be one of 'sgd', 'adamw', got 'adam'"),
    ("train", "seed: null", "TrainConfig.seed must be an integer, got None"),
    ("train", "steps: [a, 0.9]", "TrainConfig.steps must be a list, each a number, got ('a', 0.9)"),
    ("model", "fpn: {channels: wide}", "FPNConfig.channels must be an integer, got 'wide'"),
])
def test_values_of_another_type_name_the_field(tmp_path, section, line, message):
    """A hand-edited config.yaml: each value is checked against its field's type, as the flags are."""
    model, train = model_config_for(3, backbone="resnet18"), TRAIN_PRESETS["cpu"](data="d", out="o")
    path = write_run_config(tmp_path / "config.yaml", model, train)
    doc = yaml.safe_load(path.read_text())
    doc[section].update(yaml.safe_load(line))
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(RunConfigError, match=re.escape(message)):
        read_run_config(path)


def test_cli_reruns_a_run_folder_with_overrides(shapes, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", "--data", str(shapes), "--out", str(first), "--max-iters", "2", "--seed", "5", *TINY]) == 0
    doc = yaml.safe_load((first / "config.yaml").read_text())
    assert doc["fcos"]["version"] == __version__ and doc["train"]["seed"] == 5
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "config.yaml"), "--out", str(again), "--max-iters", "3"]) == 0
    rerun = yaml.safe_load((again / "config.yaml").read_text())
    assert rerun["model"] == doc["model"]
    assert rerun["train"] == {**doc["train"], "out": str(again), "max_iters": 3}
    assert main(["train", "--config", str(first / "config.yaml")]) == 2  # into the first run's folder: refused
    assert "give --out NEW_FOLDER" in capsys.readouterr().err

"""A run's two configs (model and training): built from ``fcos train``'s flags, or read back from a run
folder's ``config.yaml`` and changed by the flags given beside it (``fcos train --config``, as
detectron2's ``--config-file`` with options and ultralytics' ``cfg=``); and ``config.yaml`` itself,
written at the start of every run with the package version and the exact command, read back here.

Where the flags go: without ``--config``, the recipe's defaults, then the training flags given; the
model from the preset (``official``), the recipe's model changes and the model flags given, or, when
fine-tuning (``--weights``), the weights' own model with the model flags given. With ``--config``, the
file's values, then the flags given (a ``--recipe`` would replace them all: refused). A rerun never
resumes unless asked (``--resume``), and never writes into the run folder it was read from unless told
so (``--out`` or ``--resume``): the earlier run's files would be mixed with the new one's.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from fcos import __version__
from fcos.config import FCOSConfig, check_field_type
from fcos.engine.train_config import RECIPE_MODEL, TRAIN_PRESETS, TrainConfig
from fcos.model.options import ModelOptions
from fcos.utils.files import write_text
from fcos.weights.finetune import finetune_config

__all__ = ["RunConfigError", "command_line", "read_run_config", "run_configs", "run_record", "write_run_config"]


class RunConfigError(ValueError):
    """A ``config.yaml`` that cannot be read back, or flags that contradict it."""


def run_configs(
    *,
    train_values: Mapping[str, Any],
    options: ModelOptions | None = None,
    recipe: str | None = None,
    config_file: str | Path | None = None,
) -> tuple[FCOSConfig, TrainConfig]:
    """The (model, training) configs of ``fcos train``: ``train_values`` are the training flags given,
    ``options`` the model flags given, ``recipe`` the ``--recipe`` given (None: not given),
    ``config_file`` a run's ``config.yaml`` to start from (the module doc's rules)."""
    options = options or ModelOptions()
    if config_file is not None:
        return _rerun(Path(config_file), train_values, options, recipe)
    recipe = recipe or "official"
    train = TRAIN_PRESETS[recipe](**train_values)
    if not train.data:
        raise RunConfigError("the following arguments are required: --data (or --config runs/<run>/config.yaml)")
    options = _tile_input(train, options)
    if train.weights:  # fine-tuning: the model is the weights' own, changed only where asked
        return finetune_config(train.weights, options), train
    return options.config(1, **RECIPE_MODEL.get(recipe, {})), train


def _rerun(path: Path, train_values: Mapping[str, Any], options: ModelOptions,
           recipe: str | None) -> tuple[FCOSConfig, TrainConfig]:
    if recipe is not None:
        raise RunConfigError(f"--recipe {recipe} with --config: {path} already holds its recipe's values; change "
                             "single settings with their flags")
    model, train, _ = read_run_config(path)
    train = dataclasses.replace(train, resume=None)  # the earlier run's --resume is not this run's
    train = dataclasses.replace(train, **train_values)
    if "tile" in train_values:
        options = _tile_input(train, options)
    if "out" not in train_values and not train.resume and Path(train.out).resolve() == path.parent.resolve():
        raise RunConfigError(f"--config {path}: the rerun would write into that run's folder {train.out}; give "
                             "--out NEW_FOLDER (or --resume to continue that run)")
    return options.applied_to(model, str(path)), train


def _tile_input(train: TrainConfig, options: ModelOptions) -> ModelOptions:
    """With ``--tile SIZE`` the model's input size is SIZE: the tiles reach it unresized, and so do the
    tiles that inference cuts (``--slice auto``). A different ``--img-size`` would rescale them."""
    if train.tile is None:
        return options
    if options.img_size is not None and options.img_size != train.tile:
        raise RunConfigError(f"--tile {train.tile} sets the input size to {train.tile}: drop --img-size "
                             f"{options.img_size} (use --tile-scale to train at another scale)")
    return dataclasses.replace(options, img_size=train.tile)


def run_record(model: FCOSConfig, train: TrainConfig, *, command: str | None = None) -> dict[str, Any]:
    """What ``config.yaml`` holds: ``fcos`` (the package version, the exact command, the working folder,
    Python and torch versions), ``model`` (:meth:`FCOSConfig.to_dict`) and ``train`` (every TrainConfig
    field). Experiment trackers log the same as the run's params."""
    return {
        "fcos": {"version": __version__, "command": command or command_line(), "cwd": os.getcwd(),
                 "python": platform.python_version(), "torch": str(torch.__version__)},
        "model": model.to_dict(),
        "train": dataclasses.asdict(train),
    }


def write_run_config(path: str | Path, model: FCOSConfig | Mapping[str, Any], train: TrainConfig | None = None, *,
                     command: str | None = None) -> Path:
    """Write ``config.yaml``: :func:`run_record` of the configs, or a record already made (``model``)."""
    record = run_record(model, train, command=command) if isinstance(model, FCOSConfig) else model
    return write_text(path, yaml.safe_dump(dict(record), sort_keys=False))


def read_run_config(path: str | Path) -> tuple[FCOSConfig, TrainConfig, dict[str, Any]]:
    """(model config, training config, the ``fcos`` record) of a ``config.yaml``; :class:`RunConfigError`
    naming the file and the problem when it cannot be used."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RunConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict) or not isinstance(doc.get("train"), dict):
        raise RunConfigError(f"{path} is not a run's config.yaml: expected 'model' and 'train' sections")
    try:
        model = FCOSConfig.from_dict(doc["model"])
    except (TypeError, ValueError) as exc:
        raise RunConfigError(f"{path}: invalid 'model' section: {exc}") from None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(doc["train"]) - names)
    if unknown:
        raise RunConfigError(f"{path}: unknown 'train' settings {unknown} (written by a newer fcos?)")
    try:
        train = TrainConfig(**{k: check_field_type(TrainConfig, k, _tuples(v)) for k, v in doc["train"].items()})
    except (TypeError, ValueError) as exc:
        raise RunConfigError(f"{path}: invalid 'train' section: {exc}") from None
    return model, train, dict(doc.get("fcos") or {})


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command this process runs, as a shell line: ``fcos train ...`` for the CLI (and the torchrun
    workers it launches: ``python -m fcos``), else the Python command."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]).name if argv else ""
    if program == "fcos" or argv[:1] and Path(argv[0]).parts[-2:] == ("fcos", "__main__.py"):
        return shlex.join(["fcos", *argv[1:]])
    return shlex.join([Path(sys.executable).name, *argv])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value

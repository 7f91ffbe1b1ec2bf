"""``--weights NAME_OR_PATH`` (train, eval, predict, export, serve), resolved in one place: an existing
file is an fcos checkpoint (:mod:`fcos.weights.checkpoint`), anything else must be a registered
pretrained name (:mod:`fcos.weights.pretrained`, e.g. ``fcos_resnet50_fpn_coco``), which reads as the
same checkpoint dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fcos.config import FCOSConfig
from fcos.utils.hub import WeightsUnavailableError
from fcos.weights.checkpoint import CheckpointError, inference_config, load_checkpoint, load_model
from fcos.weights.pretrained import (
    DETECTORS,
    is_registered,
    load_pretrained,
    pretrained_config,
    read_pretrained,
)

__all__ = ["load_weights", "read_weights", "weights_config"]


def read_weights(weights: str | Path, exact: bool = False, progress: bool = True) -> dict[str, Any]:
    """The checkpoint dict (``model``, ``config``, ``class_names``, ...) of a checkpoint file or a
    registered name; a registered model's file is read (or downloaded) through torchvision."""
    if is_registered(weights):
        return read_pretrained(str(weights), exact=exact, progress=progress)
    _check_exists(weights)
    return load_checkpoint(weights)


def weights_config(weights: str | Path) -> tuple[FCOSConfig, list[str]]:
    """The inference config and class names of a checkpoint or registered name (no download for names)."""
    if is_registered(weights):
        return pretrained_config(str(weights))
    state = read_weights(weights)
    try:
        config = FCOSConfig.from_dict(state["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights} has an invalid config: {exc}") from None
    return inference_config(config), [str(n) for n in state.get("class_names", range(config.num_classes))]


def load_weights(
    weights: str | Path, map_location: str | torch.device = "cpu", exact: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) for a checkpoint file (:func:`load_model`) or a registered
    name (``exact``: its bit-exact execution, :func:`fcos.weights.pretrained.load_pretrained`)."""
    if is_registered(weights):
        return load_pretrained(str(weights), map_location, exact=exact)
    _check_exists(weights)
    return load_model(weights, map_location)


def _check_exists(weights: str | Path) -> None:
    if not Path(weights).is_file():
        raise WeightsUnavailableError(
            f"weights not found: {weights} is neither a file nor a registered name "
            f"({', '.join(DETECTORS)}; `fcos models` lists them)"
        )

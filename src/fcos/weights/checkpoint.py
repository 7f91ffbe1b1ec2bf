"""The checkpoint file: atomic writes, safe loads (``torch.load(weights_only=True)``), model reconstruction.

A checkpoint is a plain dict of tensors and Python primitives:
``{"format", "version", "model", "config", "class_names", "category_ids", ...training state}``.
It carries the config (architecture, preprocessing, decoding) and class names, so evaluation,
prediction, export and serving need no extra flags. ``--weights NAME_OR_PATH`` is resolved by
:mod:`fcos.weights.resolve` (a file here, or a registered pretrained name).
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fcos.config import FCOSConfig
from fcos.utils.files import atomic_write

__all__ = [
    "CheckpointError",
    "inference_config",
    "load_checkpoint",
    "load_model",
    "model_checkpoint",
    "save_checkpoint",
]

FORMAT = "fcos-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, untrusted or not an fcos checkpoint."""


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (:func:`fcos.utils.files.atomic_write`: a temporary file in the same folder,
    fsync, rename). A process killed mid-write, or a write that fails, leaves the previous file intact.

    Raises:
        WriteError: the file could not be written (no space, file size limit, read-only folder), naming it.
    """
    path = Path(path)
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and primitives only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(2)
    # torch.save writes a zip archive (PK); its pre-1.6 format is a pickle (protocol byte 0x80). Anything else
    # (an image, a text file, an ONNX model) would reach the unpickler and read as "unsafe pickled objects".
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if head != b"PK" and not head.startswith(b"\x80"):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not the zip archive torch.save writes): expected "
                              "a .pt file written by fcos, or a name `fcos models` lists")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) or "weights_only" in str(exc):
            raise CheckpointError(
                f"refusing to load {path}: it contains pickled Python objects, not only tensors and plain data "
                "(an untrusted file could run code). Re-save it from trusted code with fcos, or export its state_dict."
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt: {exc}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fcos checkpoint (no format tag); expected a file written by fcos")
    for key in ("model", "config"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no {key!r} entry")
    return state


def model_checkpoint(model: torch.nn.Module, class_names: list[str], category_ids: list[int] | None = None,
                     **inference: Any) -> dict[str, Any]:
    """The part of a checkpoint needed for inference: weights, config, class names; ``inference``: what
    prediction reads besides (``tile``: the tiles a model was trained on, ``input_scale``: the median scale
    training saw its images at), left out when None."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {
        "model": model.state_dict(),
        "config": model.config.to_dict(),
        "class_names": list(class_names),
        "category_ids": list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1)),
        **{key: value for key, value in inference.items() if value is not None},
    }


def inference_config(config: FCOSConfig) -> FCOSConfig:
    """The config with the backbone's pretrained weights source dropped (its tensors are in the state
    dict) and the "auto" norm / freezing choices that depended on it made explicit."""
    return dataclasses.replace(config, backbone=config.backbone.without_weights())


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the FCOS model stored in a checkpoint, in eval mode. Returns (model, checkpoint dict)."""
    from fcos.model.detector import FCOS

    state = load_checkpoint(path, map_location)
    try:
        config = FCOSConfig.from_dict(state["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {exc}") from None
    try:  # the backbone is rebuilt from its recorded name, without its pretrained weights source
        model = FCOS(inference_config(config))
    except (ValueError, ImportError) as exc:
        raise CheckpointError(f"cannot rebuild the model of checkpoint {path}: {exc}") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its own config: {exc}") from None
    state.setdefault("class_names", [str(i) for i in range(config.num_classes)])
    state.setdefault("category_ids", list(range(1, config.num_classes + 1)))
    return model.eval(), state

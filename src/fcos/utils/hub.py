"""Pretrained files: torchvision's weights API and its torch hub cache, with one clear error offline.

Everything pretrained that fcos reads goes through :func:`torchvision_state_dict`, which calls
torchvision's own ``Weights.get_state_dict``: the file is read from
``$TORCH_HOME/hub/checkpoints/<torchvision's file name>`` (``torch.hub.get_dir()``; ``TORCH_HOME``
defaults to ``~/.cache/torch``) and, when it is not there, downloaded there once with a progress bar
and its hash checked (torchvision's file names carry a SHA-256 prefix). Nothing else downloads; timm
backbones load through timm (:mod:`fcos.model.backbones.timm_models`).

Without a network and without the file, the error names the URL and the exact path to put the file
at, and the command line prints it without a traceback.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__ = ["WeightsUnavailableError", "cache_path", "file_size_mb", "is_cached", "torchvision_state_dict", "torchvision_weights"]


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are neither in the cache nor downloadable (or a name is unknown)."""


def torchvision_weights(name: str) -> Any:
    """A torchvision weights enum member from its full name, e.g. ``"ResNet50_Weights.IMAGENET1K_V1"``."""
    from torchvision.models import get_weight

    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise WeightsUnavailableError(
            f"unknown torchvision weights {name!r}; expected a name like 'ResNet50_Weights.IMAGENET1K_V1'"
        ) from None


def cache_path(weights: Any) -> Path:
    """Where torch hub keeps (and torchvision's weights API reads) the file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def is_cached(weights: Any) -> bool:
    return cache_path(weights).is_file()


def file_size_mb(weights: Any) -> float | None:
    """The download size torchvision states in the weights' meta data (MB), when it does."""
    size = weights.meta.get("_file_size")
    return float(size) if size is not None else None


def torchvision_state_dict(weights: Any, progress: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of torchvision ``weights`` (an enum member or its full name), from the torch hub
    cache or downloaded into it. Loaded with ``weights_only=True``: tensors only, never code."""
    if isinstance(weights, str):
        weights = torchvision_weights(weights)
    path = cache_path(weights)
    try:
        return weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    # URLError and timeouts are OSErrors, a hash mismatch a RuntimeError, a corrupt file one of the others.
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"  # torch's own run long
        if path.is_file():  # the file is there: it is broken, not missing
            raise WeightsUnavailableError(
                f"cannot read {path} ({reason}); delete it so that it is downloaded again "
                f"from {weights.url}"
            ) from None
        raise WeightsUnavailableError(
            f"{weights!r} is not in the torch hub cache and could not be downloaded ({reason}).\n"
            f"  Download {weights.url}\n"
            f"  and put it at {path}\n"
            f"  (the folder is $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to ~/.cache/torch)"
        ) from None

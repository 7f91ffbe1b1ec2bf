"""fcos: FCOS (Fully Convolutional One-Stage object detection) for PyTorch.

The package's parts, in the order data flows (docs/architecture.md):
``data`` (datasets, transforms, loader) -> ``model`` (backbone -> fpn -> head; assignment, losses,
decoding) -> ``weights`` (checkpoints, pretrained names) -> ``evaluation`` (COCO metrics, diagnostics),
``export`` (ONNX, OpenVINO) -> ``predict`` (Predictor, files, videos) -> ``serve`` -> ``engine``
(training) -> ``cli``.
"""

from __future__ import annotations

import warnings
from typing import Any

from fcos.config import FCOSConfig, official, preset, torchvision_preset
from fcos.model.assign import Assignment, assign_targets, stack_targets
from fcos.model.decode import Decoder
from fcos.model.detector import FCOS
from fcos.model.losses import FCOSCriterion, sigmoid_focal_loss_onehot

__all__ = [
    "FCOS",
    "Assignment",
    "Decoder",
    "FCOSConfig",
    "FCOSCriterion",
    "assign_targets",
    "official",
    "preset",
    "sigmoid_focal_loss_onehot",
    "stack_targets",
    "torchvision_preset",
]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    # Deprecated in 0.2: the preset function shadowed the torchvision package's name; removed in 0.3.
    if name == "torchvision":
        warnings.warn("fcos.torchvision is deprecated: use fcos.torchvision_preset", DeprecationWarning, stacklevel=2)
        return torchvision_preset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

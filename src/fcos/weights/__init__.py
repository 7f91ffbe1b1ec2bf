"""Where a model's parameters come from and go to: the checkpoint file (:mod:`.checkpoint`), pretrained
detectors by name (:mod:`.pretrained`), torchvision's FCOS converted (:mod:`.torchvision`),
``--weights NAME_OR_PATH`` resolved in one place (:mod:`.resolve`), and fine-tuning's transfer into a
model for other classes (:mod:`.finetune`). Files are downloaded through :mod:`fcos.utils.hub`."""

from fcos.utils.hub import WeightsUnavailableError
from fcos.weights.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    model_checkpoint,
    save_checkpoint,
)
from fcos.weights.pretrained import DETECTORS, describe_models, is_registered
from fcos.weights.resolve import load_weights, read_weights, weights_config
from fcos.weights.torchvision import from_torchvision

__all__ = [
    "DETECTORS",
    "CheckpointError",
    "WeightsUnavailableError",
    "describe_models",
    "from_torchvision",
    "is_registered",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "model_checkpoint",
    "read_weights",
    "save_checkpoint",
    "weights_config",
]

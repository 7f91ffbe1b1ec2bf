"""fcos: FCOS (Fully Convolutional One-Stage object detection) for PyTorch."""

from fcos.assign import Assignment, assign_targets, stack_targets
from fcos.config import FCOSConfig, official, preset, torchvision
from fcos.losses import FCOSCriterion, sigmoid_focal_loss_onehot
from fcos.model.detector import FCOS
from fcos.postprocess import Decoder

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
    "torchvision",
]
__version__ = "0.1.0"

"""The exponential moving average of a model's weights, which evaluation uses when enabled (``--ema``)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Exponential moving average of the weights (and buffers), used for evaluation when enabled.

    The decay ramps up from 0 as updates accumulate (decay * (1 - exp(-updates / 2000))), so early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, updates

    @torch.no_grad()
    def update(self, model: nn.Module, skip: torch.Tensor | None = None) -> None:
        """Average ``model`` in; ``skip`` (a 0-dim bool on the device): leave the average as it is where
        true, decided on the device without a host read (the update's counter still counts it)."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 2000))
        weight = 1 - d if skip is None else (~skip).float() * (1 - d)
        source = model.state_dict()
        averaged, targets = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                targets.append(source[name].detach())
            else:
                value.copy_(source[name])  # counters (num_batches_tracked) are copied, not averaged
        torch._foreach_lerp_(averaged, targets, weight)  # one fused pass instead of two ops per tensor

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates, self.decay = state["updates"], state["decay"]

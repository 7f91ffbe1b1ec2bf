"""Optimizers, the learning-rate schedule and the parameter EMA."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ModelEMA", "build_optimizer", "lr_factor"]

def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW; no weight decay on norm layers, biases or the per-level scales
    (official FCOS recipe: WEIGHT_DECAY_BIAS = 0, and decaying GroupNorm affine parameters hurts)."""
    # Norm weights and biases, conv biases and the level scales are exactly the parameters with ndim <= 1.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over all parameters instead of a Python loop (CPU and CUDA, torch >= 2.4)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd or adamw")


def lr_factor(
    iteration: int,
    total: int,
    *,
    warmup_iters: int,
    warmup_factor: float,
    schedule: str,
    steps: Sequence[float] = (),
    gamma: float = 0.1,
    final_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based) of ``total``.

    Linear warm-up from ``warmup_factor`` (official: 1/3 over 500 iterations), then "step" decay by
    ``gamma`` at the given fractions of ``total``, or "cosine" decay to ``final_factor``.
    """
    if iteration < warmup_iters:
        alpha = iteration / max(1, warmup_iters)
        warm = warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if schedule == "step":
        return warm * gamma ** sum(iteration >= int(s * total) for s in steps)
    if schedule == "cosine":
        progress = min(1.0, max(0, iteration - warmup_iters) / max(1, total - warmup_iters))
        return warm * (final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule {schedule!r}; choose step or cosine")


class ModelEMA:
    """Exponential moving average of the weights (and buffers), used for evaluation when enabled.

    The decay ramps up from 0 as updates accumulate (decay * (1 - exp(-updates / 2000))), so early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 2000))
        source = model.state_dict()
        averaged, targets = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                targets.append(source[name].detach())
            else:
                value.copy_(source[name])  # counters (num_batches_tracked) are copied, not averaged
        torch._foreach_lerp_(averaged, targets, 1 - d)  # one fused pass instead of two ops per tensor

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates, self.decay = state["updates"], state["decay"]

"""Optimizers, the learning-rate schedule and the parameter EMA."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ModelEMA", "build_optimizer", "lr_factor"]

def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    *,
    bias_lr_factor: float = 1.0,
    decay_norms: bool = False,
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over parameter groups named by what they hold.

    Biases (every parameter whose name ends in ``bias``) never get weight decay and learn at
    ``bias_lr_factor`` times ``lr``. With ``decay_norms`` every other parameter is decayed, norm weights
    and the level scales included: the official FCOS solver (fcos_core/solver/build.py: ``"bias" in
    key`` gets BIAS_LR_FACTOR 2 and WEIGHT_DECAY_BIAS 0, nothing else is exempt). Without it the other
    1-d parameters (norm weights, scales) are exempt too, as in the usual AdamW recipes.

    Groups, each in model order and left out when empty: "decay" (``lr``, ``weight_decay``), "no_decay"
    (``lr``, no decay: what is exempt at the base rate) and "bias" (``lr * bias_lr_factor``, no decay;
    only when the factor is not 1). With factor 1 and without ``decay_norms`` that is the two groups
    decay / no_decay = ndim > 1 / ndim <= 1, so checkpoints of earlier versions resume.
    """
    roles: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "bias": []}
    for param_name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if param_name.endswith("bias"):
            roles["bias" if bias_lr_factor != 1.0 else "no_decay"].append(p)
        else:
            roles["no_decay" if p.ndim <= 1 and not decay_norms else "decay"].append(p)
    settings = {"decay": (lr, weight_decay), "no_decay": (lr, 0.0), "bias": (lr * bias_lr_factor, 0.0)}
    groups = [{"name": role, "params": params, "lr": settings[role][0], "weight_decay": settings[role][1]}
              for role, params in roles.items() if params]
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
    warmup_method: str = "linear",
    steps: Sequence[float] = (),
    gamma: float = 0.1,
    final_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based) of ``total``.

    Warm-up for the first ``warmup_iters`` updates: "constant" at ``warmup_factor`` (the official FCOS
    configs' WARMUP_METHOD: 1/3 for 500 iterations) or "linear" from ``warmup_factor`` up to 1; then
    "step" decay by ``gamma`` at the given fractions of ``total``, or "cosine" decay to ``final_factor``.
    """
    if iteration >= warmup_iters:
        warm = 1.0
    elif warmup_method == "constant":
        warm = warmup_factor
    elif warmup_method == "linear":
        alpha = iteration / max(1, warmup_iters)
        warm = warmup_factor * (1 - alpha) + alpha
    else:
        raise ValueError(f"unknown warm-up method {warmup_method!r}; choose constant or linear")
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

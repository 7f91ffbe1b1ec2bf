"""Optimizers: SGD or AdamW over parameter groups named by what they hold (the official solver's rules)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["build_optimizer"]

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

"""The learning-rate schedule: warm-up, then step or cosine decay, as a factor of the base rate."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["lr_factor"]


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

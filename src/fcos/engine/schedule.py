"""The schedule of a run: its length in updates (:class:`RunLength`: epochs, max_iters, a time budget) and the
learning rate over it (:func:`lr_factor`: warm-up, then step or cosine decay, as a factor of the base rate)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_EPOCHS", "RunLength", "lr_factor"]

DEFAULT_EPOCHS = 12  # the official 1x schedule's length in spirit (90k iterations ~ 12 COCO epochs)


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


class RunLength:
    """How many optimizer updates a run makes, and which limit ends it.

    The planned length is ``max_iters``, or ``epochs`` full epochs (default 12), or none with a time budget
    and neither (the budget alone sets the length). With ``time_budget`` the total is fitted to the
    measured time per update (:meth:`fit`), every ``refit_every`` updates once a few are measured (a
    machine that slows down still fits), never beyond the planned length. The learning-rate schedule is
    laid out over :attr:`total`, so it stretches or shrinks with it.
    """

    REFIT_EVERY = 10  # updates between fits to the measured speed
    SKIP_FIRST = 2  # the first updates (allocations, kernel selection) are slower: not measured

    def __init__(self, *, updates_per_epoch: int, max_iters: int | None = None, epochs: int | None = None,
                 time_budget: float | None = None, warmup_iters: int = 0) -> None:
        self.updates_per_epoch, self.max_iters, self.epochs = updates_per_epoch, max_iters, epochs
        self.time_budget = time_budget
        # Budget alone: a provisional length until the speed is measured, long enough to measure it.
        self.total = self.planned() or max(DEFAULT_EPOCHS * updates_per_epoch, 4 * warmup_iters, 100)

    def planned(self) -> int | None:
        """The length before any time budget: ``max_iters``, or ``epochs`` full epochs (default 12), or None
        with a time budget and neither."""
        if self.max_iters:
            return self.max_iters
        if self.epochs is None and self.time_budget:
            return None
        return (self.epochs or DEFAULT_EPOCHS) * self.updates_per_epoch

    def due(self, iteration: int, measured: int) -> bool:
        """Whether to fit the length after ``iteration`` updates, ``measured`` of them timed."""
        return bool(self.time_budget) and measured >= self.SKIP_FIRST + self.REFIT_EVERY and iteration % self.REFIT_EVERY == 0

    def per_update(self, durations: Sequence[float]) -> float:
        """Seconds per update: the mean of the recent ones (the first :attr:`SKIP_FIRST` left out)."""
        return float(np.mean(list(durations[self.SKIP_FIRST:])[-5 * self.REFIT_EVERY:]))

    def fit(self, iteration: int, durations: Sequence[float], train_seconds: float) -> int:
        """The total that fills the budget at :meth:`per_update`'s speed: at least ``iteration``, at most
        the planned length."""
        remaining = max(0.0, (self.time_budget or 0.0) - train_seconds)
        fitted = iteration + int(remaining / self.per_update(durations))
        planned = self.planned()
        return max(iteration, fitted if planned is None else min(planned, fitted))

    def ended_by(self, stop_reason: str | None = None) -> str:
        """Which limit ended (or will end) the run: a hook's stop reason, "time_budget", "max_iters" or "epochs"."""
        if stop_reason:
            return stop_reason
        planned = self.planned()
        if self.time_budget and (planned is None or self.total < planned):
            return "time_budget"
        return "max_iters" if self.max_iters else "epochs"

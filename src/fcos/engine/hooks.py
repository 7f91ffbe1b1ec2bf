"""Training hooks: what runs around the update step (periodic evaluation, checkpoints, early stopping,
the collapse check, reporting: :mod:`fcos.engine.reporting`) is a :class:`Hook`, so a new concern is a
new hook, not an edit of the loop. :func:`fcos.engine.trainer.build_hooks` builds the ones a config
enables, each from the settings it needs (as detectron2's ``DefaultTrainer.build_hooks``).

A hook reads the trainer (its counters, model and evaluation) and may call its methods (``save``,
``evaluate``, ``request_stop``); it never assigns the trainer's fields. What a resumed run needs of a
hook goes in its :meth:`~Hook.state_dict` (saved in every checkpoint); what the run's summary should say
in its :meth:`~Hook.summary` (merged into the summary before ``after_train``), so no hook depends on
another's order or files.

Hooks run on EVERY rank, in list order, at each event. A hook that writes files or prints guards itself
with ``D.is_main()``; a hook that takes a collective (``trainer.save``, ``trainer.evaluate``,
``D.broadcast_object``) takes it on every rank, never under such a guard, and decides from values that
agree across ranks (iteration counts, gathered metrics, broadcast clocks).

Events: ``before_train`` (start of :meth:`Trainer.run`), ``after_step`` (after each optimizer update,
with that update's losses), ``after_epoch``, ``after_eval`` (after each validation, with its metrics),
``after_train`` (once training reached its total, with the summary; not on a pause).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from fcos.utils import distributed as D

if TYPE_CHECKING:
    from fcos.engine.trainer import Trainer

__all__ = [
    "Checkpointer",
    "CollapseGuard",
    "EarlyStopping",
    "Hook",
    "PeriodicEvaluation",
    "TrainingCollapsedError",
    "hook_states",
]

_CHECK_EVERY = 10  # CollapseGuard pools this many updates per cross-rank check


class Hook:
    """Base class: override the events you need (each gets the trainer first)."""

    def before_train(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None: ...

    def after_epoch(self, trainer: Trainer) -> None: ...

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this hook exactly (plain data; saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s record of a checkpoint."""

    def summary(self) -> dict[str, Any]:
        """Entries for the run's final summary (and metrics.jsonl's "done" record)."""
        return {}


class PeriodicEvaluation(Hook):
    """Validates every ``every`` epochs (the run's final evaluation is the trainer's own)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.val_data is not None and trainer.epoch % self.every == 0 and trainer.iteration < trainer.total:
            trainer.evaluate()


class Checkpointer(Hook):
    """``last.pt`` every ``every`` updates (0: never by count), at epoch ends (at most every ``interval``
    seconds) and at the end; ``best.pt`` whenever validation AP improves. Every call is on all ranks."""

    def __init__(self, *, every: int = 0, interval: float = 30.0) -> None:
        self.every, self.interval = every, interval
        self.best_ap = -1.0
        self.last_save = time.perf_counter()

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if self.every and trainer.iteration % self.every == 0:
            self._save(trainer, "last.pt")

    def after_epoch(self, trainer: Trainer) -> None:
        # Tiny datasets finish an epoch every few updates: do not spend the run writing checkpoints.
        # Clocks differ between processes, so rank 0's clock decides for all (save is a collective).
        if D.broadcast_object(time.perf_counter() - self.last_save >= self.interval):
            self._save(trainer, "last.pt")

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        # evaluate() hands every rank the same metrics, so every rank takes this branch and enters
        # save's barrier together.
        if metrics["AP"] > self.best_ap:
            self.best_ap = metrics["AP"]
            self._save(trainer, "best.pt")

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self._save(trainer, "last.pt")

    def _save(self, trainer: Trainer, name: str) -> None:
        trainer.save(name)
        self.last_save = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"best_ap": self.best_ap}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_ap = float(state["best_ap"])


class EarlyStopping(Hook):
    """``--patience N``: ends the run when N evaluations in a row have not raised validation AP above the
    best so far (ultralytics counts epochs, which are evaluations with ``--eval-every 1``). The summary
    (and metrics.jsonl's "done" record) says whether it stopped the run, and the best AP and its update.

    Every rank receives the same metrics from :func:`~fcos.evaluation.run_evaluation`, so every rank
    takes the same decision without a collective. A resumed run (``--resume`` or a torchrun restart)
    counts on from the checkpoint's record of this hook."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best, self.best_iteration, self.since, self.stopped = -math.inf, -1, 0, False

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if trainer.iteration >= trainer.total:  # the final evaluation decides nothing
            return
        ap = float(metrics["AP"])
        if ap > self.best:
            self.best, self.best_iteration, self.since = ap, trainer.iteration, 0
        else:
            self.since += 1
        if self.since >= self.patience:
            self.stopped = True
            trainer.request_stop("early_stopping")
            if D.is_main():
                tqdm.write(f"early stopping: validation AP has not improved for {self.since} evaluations "
                           f"(best {self.best:.4f} at update {self.best_iteration}); stopped at update "
                           f"{trainer.iteration}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_iteration": self.best_iteration, "since": self.since}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_iteration, self.since = float(state["best"]), int(state["best_iteration"]), int(state["since"])

    def summary(self) -> dict[str, Any]:
        return {"early_stopping": {"patience": self.patience, "stopped": self.stopped,
                                   "best_AP": None if self.best == -math.inf else self.best,
                                   "best_iteration": self.best_iteration,
                                   "evaluations_without_improvement": self.since}}


class TrainingCollapsedError(RuntimeError):
    """A branch of the head stopped learning (every predicted box of zero size, or no positive point
    scoring above the detection threshold) for longer than ``collapse_patience`` updates."""


class CollapseGuard(Hook):
    """Stops (``action="stop"``) or warns once (``"warn"``) when a branch of the head has collapsed, as
    the trainer does on a non-finite loss:

    - box branch: every positive point predicts a box of zero width or height for ``patience`` updates.
      The IoU loss is then pinned at its no-overlap value (GIoU 1.0) and neither it nor the relu
      regression has any gradient: the branch cannot come back by itself (softplus can; it is caught
      the same way if it stays at zero size).
    - classification: no positive point gives its class a probability above the decoder's threshold
      for 4 x ``patience`` updates (from scratch it takes a few dozen): nothing would be detected.

    The model's per-batch ``last_stats`` (:func:`fcos.model.losses.positive_stats`) are pooled over windows
    of ``_CHECK_EVERY`` updates and max-reduced across ranks at the same iterations on every rank, so
    every rank reaches the same verdict at the same update.
    """

    def __init__(self, patience: int = 50, *, action: str = "stop") -> None:
        if action not in ("stop", "warn"):
            raise ValueError(f"action must be 'stop' or 'warn', got {action!r}")
        self.patience, self.action = patience, action
        self.live = self.positives = 0
        self.top = 0.0
        self.dead_updates = self.unscored_updates = 0
        self.warned: set[str] = set()

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        # The statistics are device tensors: summed as they are, read every _CHECK_EVERY updates only.
        stats = getattr(trainer.model, "last_stats", {})
        positives, dead = stats.get("num_positive", 0), stats.get("dead_boxes", 0)
        self.positives = self.positives + positives
        self.live = self.live + positives - dead
        top = stats.get("top_score", 0.0)
        self.top = torch.maximum(torch.as_tensor(self.top), top) if isinstance(top, torch.Tensor) else max(self.top, top)
        if trainer.iteration % _CHECK_EVERY:
            return
        any_positive = D.all_reduce_max(float(self.positives > 0), trainer.device) > 0
        any_live = D.all_reduce_max(float(self.live > 0), trainer.device) > 0
        top = D.all_reduce_max(float(self.top), trainer.device)
        self.live = self.positives = 0
        self.top = 0.0
        if not any_positive:  # a window without objects says nothing about either branch
            return
        self.dead_updates = 0 if any_live else self.dead_updates + _CHECK_EVERY
        threshold = trainer.model.config.decode.score_thresh
        self.unscored_updates = 0 if top > threshold else self.unscored_updates + _CHECK_EVERY
        if self.dead_updates >= self.patience:
            self._collapsed(trainer, "box", (
                f"the box-regression branch has collapsed: for {self.dead_updates} updates every positive point "
                f"predicted a box of zero size (box loss {losses.get('bbox_regression', float('nan')):.3f}, its "
                "no-overlap value), so the regression gets no gradient and cannot recover"))
        if self.unscored_updates >= 4 * self.patience:
            self._collapsed(trainer, "classification", (
                f"the classification branch is not learning: for {self.unscored_updates} updates no object's "
                f"point scored its class above the detection threshold {threshold}"))

    def _collapsed(self, trainer: Trainer, branch: str, what: str) -> None:
        lr = trainer.optimizer.param_groups[0].get("initial_lr", trainer.optimizer.param_groups[0]["lr"])
        fixes = [f"lower the learning rate (--lr, now {lr:g})", "lengthen the warm-up (--warmup-iters)"]
        if branch == "box" and getattr(trainer.model.config.head, "regression", "relu") == "relu":
            fixes.append("train with --regression softplus (the cpu recipe's default), whose boxes always get a gradient")
        advice = f"To fix: {'; '.join(fixes)}. --on-collapse warn keeps training."
        where = f"at update {trainer.iteration} (epoch {trainer.epoch})"
        if self.action == "stop":
            raise TrainingCollapsedError(f"{what}; stopping {where}. {advice}")
        if branch not in self.warned and D.is_main():
            tqdm.write(f"warning: {what} ({where}). {advice}")
        self.warned.add(branch)


def hook_states(hooks: Sequence[Hook]) -> dict[str, dict[str, Any]]:
    """Every hook's :meth:`~Hook.state_dict` by class name (what a checkpoint stores)."""
    return {type(hook).__name__: state for hook in hooks if (state := hook.state_dict())}

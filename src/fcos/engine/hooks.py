"""Training hooks: everything around the update step (logging, evaluation, checkpoints, plots, the
time budget) is a :class:`Hook`, so a new concern (TensorBoard, early stopping) is a new hook, not
an edit of the loop.

Hooks run on EVERY rank, in list order, at each event. A hook that writes files or prints guards
itself with ``D.is_main()``; a hook that takes a collective (``trainer.save``, ``trainer.evaluate``,
``D.broadcast_object``) takes it on every rank, never under such a guard, and decides from values
that agree across ranks (iteration counts, gathered metrics, broadcast clocks).

Events: ``before_train`` (start of :meth:`Trainer.run`), ``after_step`` (after each optimizer update,
with that update's losses), ``after_epoch``, ``after_eval`` (after each validation, with its
metrics), ``after_train`` (once training reached its total, with the summary; not on a pause).
A hook ends training early with ``trainer.request_stop()``: the run then finishes as a completed one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from tqdm import tqdm

from fcos.engine.plots import plot_loss_curve
from fcos.evaluation.diagnostics import save_diagnostics
from fcos.evaluation.gallery import save_val_predictions
from fcos.utils import distributed as D
from fcos.utils.files import append_line, write_text
from fcos.utils.optional import require

if TYPE_CHECKING:
    from fcos.engine.trainer import Trainer

__all__ = [
    "Checkpointer",
    "CollapseGuard",
    "Diagnostics",
    "EarlyStopping",
    "Evaluation",
    "Hook",
    "MetricsLogger",
    "Plots",
    "TensorBoard",
    "TimeBudget",
    "TrainingCollapsedError",
    "default_hooks",
]

_REFIT_EVERY = 10  # with a time budget, re-fit the schedule's length to the measured speed this often
_CHECK_EVERY = 10  # CollapseGuard pools this many updates per cross-rank check


class Hook:
    """Base class: override the events you need (each gets the trainer first)."""

    def before_train(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None: ...

    def after_epoch(self, trainer: Trainer) -> None: ...

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...


class TimeBudget(Hook):
    """Fits the total number of updates to ``time_budget`` from the measured time per update, re-fitted
    every few updates (a machine that slows down still fits), never beyond ``epochs`` / ``max_iters``
    when given. Rank 0's clock decides for all."""

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        cfg = trainer.cfg
        if not cfg.time_budget or len(trainer.durations) < 2 + _REFIT_EVERY or trainer.iteration % _REFIT_EVERY:
            return
        per_update = float(np.mean(trainer.durations[2:][-5 * _REFIT_EVERY:]))
        remaining = max(0.0, cfg.time_budget - trainer.train_seconds)
        fitted = trainer.iteration + int(remaining / per_update)
        planned = trainer.planned_updates()  # None: the budget alone sets the length
        total = int(D.broadcast_object(max(trainer.iteration, fitted if planned is None else min(planned, fitted))))
        if D.is_main() and abs(total - trainer.total) > 0.1 * trainer.total:
            tqdm.write(f"time budget {cfg.time_budget:.0f} s at {per_update:.3f} s/update -> {total} updates")
        trainer.total = total


class TrainingCollapsedError(RuntimeError):
    """A branch of the head stopped learning (every predicted box of zero size, or no positive point
    scoring above the detection threshold) for longer than ``collapse_patience`` updates."""


class CollapseGuard(Hook):
    """Stops (``on_collapse="stop"``) or warns once when a branch of the head has collapsed, as the
    trainer does on a non-finite loss:

    - box branch: every positive point predicts a box of zero width or height for ``collapse_patience``
      updates. The IoU loss is then pinned at its no-overlap value (GIoU 1.0) and neither it nor the
      relu regression has any gradient: the branch cannot come back by itself (softplus can; it is
      caught the same way if it stays at zero size).
    - classification: no positive point gives its class a probability above the decoder's threshold
      for 4 x ``collapse_patience`` updates (from scratch it takes a few dozen): nothing would be detected.

    The model's per-batch ``last_stats`` (:func:`fcos.losses.positive_stats`) are pooled over windows of
    ``_CHECK_EVERY`` updates and max-reduced across ranks at the same iterations on every rank, so every
    rank reaches the same verdict at the same update.
    """

    def __init__(self) -> None:
        self.live = self.positives = 0
        self.top = 0.0
        self.dead_updates = self.unscored_updates = 0
        self.warned: set[str] = set()

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        patience = trainer.cfg.collapse_patience
        if not patience:
            return
        stats = getattr(trainer.model, "last_stats", {})
        self.positives += int(stats.get("num_positive", 0))
        self.live += int(stats.get("num_positive", 0)) - int(stats.get("dead_boxes", 0))
        self.top = max(self.top, float(stats.get("top_score", 0.0)))
        if trainer.iteration % _CHECK_EVERY:
            return
        any_positive = D.all_reduce_max(float(self.positives > 0), trainer.device) > 0
        any_live = D.all_reduce_max(float(self.live > 0), trainer.device) > 0
        top = D.all_reduce_max(self.top, trainer.device)
        self.live = self.positives = 0
        self.top = 0.0
        if not any_positive:  # a window without objects says nothing about either branch
            return
        self.dead_updates = 0 if any_live else self.dead_updates + _CHECK_EVERY
        threshold = trainer.model.config.decode.score_thresh
        self.unscored_updates = 0 if top > threshold else self.unscored_updates + _CHECK_EVERY
        if self.dead_updates >= patience:
            self._collapsed(trainer, "box", (
                f"the box-regression branch has collapsed: for {self.dead_updates} updates every positive point "
                f"predicted a box of zero size (box loss {losses.get('bbox_regression', float('nan')):.3f}, its "
                "no-overlap value), so the regression gets no gradient and cannot recover"))
        if self.unscored_updates >= 4 * patience:
            self._collapsed(trainer, "classification", (
                f"the classification branch is not learning: for {self.unscored_updates} updates no object's "
                f"point scored its class above the detection threshold {threshold}"))

    def _collapsed(self, trainer: Trainer, branch: str, what: str) -> None:
        fixes = [f"lower the learning rate (--lr, now {trainer.cfg.base_lr(D.world_size()):g})",
                 "lengthen the warm-up (--warmup-iters)"]
        if branch == "box" and getattr(trainer.model.config.head, "regression", "relu") == "relu":
            fixes.append("train with --regression softplus (the cpu recipe's default), whose boxes always get a gradient")
        advice = f"To fix: {'; '.join(fixes)}. --on-collapse warn keeps training."
        where = f"at update {trainer.iteration} (epoch {trainer.epoch})"
        if trainer.cfg.on_collapse == "stop":
            raise TrainingCollapsedError(f"{what}; stopping {where}. {advice}")
        if branch not in self.warned and D.is_main():
            tqdm.write(f"warning: {what} ({where}). {advice}")
        self.warned.add(branch)


class MetricsLogger(Hook):
    """Rank 0 writes ``config.yaml`` and ``metrics.jsonl`` (mean losses every ``log_every`` updates,
    validation metrics, the final summary) and shows the latest losses on the progress bar."""

    def __init__(self) -> None:
        self.window: list[dict[str, float]] = []

    def before_train(self, trainer: Trainer) -> None:
        self.window.clear()
        if D.is_main():
            trainer.out.mkdir(parents=True, exist_ok=True)
            resolved = {"model": trainer.model.config.to_dict(), "train": dataclasses.asdict(trainer.cfg)}
            write_text(trainer.out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self.window.append(losses)
        if trainer.iteration % trainer.cfg.log_every and trainer.iteration != trainer.total:
            return
        record = _mean_record(self.window, trainer.iteration, trainer.epoch)
        self.window.clear()
        if trainer.bar is not None:
            trainer.bar.set_postfix(loss=f"{record['loss']:.3f}", cls=f"{record['classification']:.3f}",
                                    box=f"{record['bbox_regression']:.3f}", ctr=f"{record['bbox_ctrness']:.3f}",
                                    lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.1f}")
        self.write(trainer, record)

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.write(trainer, {"event": "val", "iteration": trainer.iteration, "epoch": trainer.epoch, **metrics})
        if D.is_main():
            tqdm.write(f"val epoch {trainer.epoch}: AP {metrics['AP']:.4f}  AP50 {metrics['AP50']:.4f}  AP75 {metrics['AP75']:.4f}")

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self.write(trainer, summary)

    @staticmethod
    def write(trainer: Trainer, record: dict[str, Any]) -> None:
        if D.is_main():
            append_line(trainer.out / "metrics.jsonl", json.dumps(record))


class Evaluation(Hook):
    """Validates every ``eval_every`` epochs (the run's final evaluation is the trainer's own)."""

    def after_epoch(self, trainer: Trainer) -> None:
        every = trainer.cfg.eval_every
        if trainer.val_data is not None and every and trainer.epoch % every == 0 and trainer.iteration < trainer.total:
            trainer.evaluate()


class Checkpointer(Hook):
    """``last.pt`` every ``checkpoint_every`` updates, at epoch ends (at most every ``checkpoint_interval``
    seconds) and at the end; ``best.pt`` whenever validation AP improves. Every call is on all ranks."""

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if trainer.cfg.checkpoint_every and trainer.iteration % trainer.cfg.checkpoint_every == 0:
            trainer.save("last.pt")

    def after_epoch(self, trainer: Trainer) -> None:
        # Tiny datasets finish an epoch every few updates: do not spend the run writing checkpoints.
        # Clocks differ between processes, so rank 0's clock decides for all (save is a collective).
        if D.broadcast_object(time.perf_counter() - trainer.last_save >= trainer.cfg.checkpoint_interval):
            trainer.save("last.pt")

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        # evaluate() hands every rank the same metrics, so every rank takes this branch and enters
        # save's barrier together.
        if metrics["AP"] > trainer.best_ap:
            trainer.best_ap = metrics["AP"]
            trainer.save("best.pt")

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        trainer.save("last.pt")


class Plots(Hook):
    """Rank 0 draws ``val_predictions.png`` and ``loss_curve.png`` after each validation (the bare
    module, no collectives)."""

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if D.is_main():
            save_val_predictions(trainer.eval_model, trainer.val_data, trainer.out / "val_predictions.png",
                                 trainer.cfg.val_images, trainer.device)
            plot_loss_curve(trainer.out / "metrics.jsonl", trainer.out / "loss_curve.png")


class EarlyStopping(Hook):
    """``--patience N``: ends the run when N evaluations in a row have not raised validation AP above the
    best so far (ultralytics counts epochs, which are evaluations with ``--eval-every 1``). The summary
    (and metrics.jsonl's "done" record) says whether it stopped the run, and the best AP and its update.

    Every rank receives the same metrics from :func:`~fcos.engine.evaluate.run_evaluation`, so every rank
    takes the same decision without a collective. A resumed run (``--resume`` or a torchrun restart)
    counts on from the validation records of metrics.jsonl (read by rank 0, broadcast to all)."""

    def __init__(self) -> None:
        self.best, self.best_iteration, self.since, self.stopped = -math.inf, -1, 0, False

    def before_train(self, trainer: Trainer) -> None:
        self.__init__()
        if not trainer.cfg.patience or not trainer.iteration:  # a fresh start (resumed runs start past update 0)
            return
        history = _val_history(trainer.out / "metrics.jsonl") if D.is_main() else None
        for iteration, ap in D.broadcast_object(history):  # every rank enters (same config everywhere)
            self._record(iteration, ap)

    def _record(self, iteration: int, ap: float) -> None:
        if ap > self.best:
            self.best, self.best_iteration, self.since = ap, iteration, 0
        else:
            self.since += 1

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if not trainer.cfg.patience or trainer.iteration >= trainer.total:  # the final evaluation decides nothing
            return
        self._record(trainer.iteration, float(metrics["AP"]))
        if self.since >= trainer.cfg.patience:
            self.stopped = True
            trainer.request_stop("early_stopping")

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        # Runs before MetricsLogger writes the summary: the "done" record carries this.
        patience = trainer.cfg.patience
        if not patience:
            return
        summary["early_stopping"] = {"patience": patience, "stopped": self.stopped,
                                     "best_AP": None if self.best == -math.inf else self.best,
                                     "best_iteration": self.best_iteration, "evaluations_without_improvement": self.since}
        if self.stopped and D.is_main():
            tqdm.write(f"early stopping: validation AP has not improved for {self.since} evaluations "
                       f"(best {self.best:.4f} at update {self.best_iteration}); stopped at update {trainer.iteration}")


class Diagnostics(Hook):
    """At the end of training, the final evaluation's ``pr_curves.png``, ``confusion_matrix.png`` and
    ``per_class.csv``/``.json`` (:mod:`fcos.engine.diagnostics`); every rank calls (rank 0 writes)."""

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if trainer.val_data is not None and trainer.val_result is not None:
            save_diagnostics(trainer.val_result, trainer.val_data, trainer.out)


class TensorBoard(Hook):
    """``--tensorboard``: rank 0 writes TensorBoard events into the run folder (``tensorboard --logdir
    runs`` compares runs by folder): the mean losses, learning rate and speed every ``log_every`` updates,
    every evaluation's metrics and per-class AP, the drawn validation grid, and at the end the PR curves
    and confusion matrix. A resumed run drops the events logged after its checkpoint (``purge_step``)."""

    def __init__(self) -> None:
        self.writer: Any = None
        self.window: list[dict[str, float]] = []

    def before_train(self, trainer: Trainer) -> None:
        self.window.clear()
        if not trainer.cfg.tensorboard:
            return
        # Checked on every rank: a missing package stops all of them with the same one line.
        tensorboard = require("torch.utils.tensorboard", "--tensorboard")
        if D.is_main():
            trainer.out.mkdir(parents=True, exist_ok=True)
            self.writer = tensorboard.SummaryWriter(str(trainer.out), purge_step=trainer.iteration + 1 if trainer.iteration else None)

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        if self.writer is None:
            return
        self.window.append(losses)
        if trainer.iteration % trainer.cfg.log_every and trainer.iteration != trainer.total:
            return
        record = _mean_record(self.window, trainer.iteration, trainer.epoch)
        self.window.clear()
        for key in ("loss", "classification", "bbox_regression", "bbox_ctrness", "lr", "images_per_s"):
            if key in record:
                self.writer.add_scalar(f"train/{key}", record[key], trainer.iteration)

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            if isinstance(value, float):
                self.writer.add_scalar(f"val/{key}", value, trainer.iteration)
        for name, ap in metrics.get("per_class", {}).items():
            if not math.isnan(ap):
                self.writer.add_scalar(f"val_AP/{name}", ap, trainer.iteration)
        self._image("val/predictions", trainer.out / "val_predictions.png", trainer.iteration)  # Plots drew it
        self.writer.flush()

    def after_epoch(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.flush()  # a paused run (no after_train) keeps its events

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for name in ("pr_curves", "confusion_matrix"):  # the Diagnostics hook ran first
            self._image(f"diagnostics/{name}", trainer.out / f"{name}.png", trainer.iteration)
        self.writer.close()
        self.writer = None

    def _image(self, tag: str, path: Path, step: int) -> None:
        from fcos.data.images import read_image

        if path.is_file():
            self.writer.add_image(tag, np.asarray(read_image(path)), step, dataformats="HWC")


def default_hooks() -> list[Hook]:
    """The built-in hooks, in the order they run: the time budget first (it may shorten the run), early
    stopping before the log (the summary it writes says why the run ended), the log before the checkpoint
    (a resumed run never misses a logged update) and before the collapse check (the log shows the updates
    that led to it), plots after it (they read the log), TensorBoard last (it shows the plots). Hooks whose
    option is off (``--patience``, ``--tensorboard``, ``--collapse-patience 0``) do nothing."""
    return [TimeBudget(), EarlyStopping(), MetricsLogger(), CollapseGuard(), Evaluation(), Checkpointer(), Plots(),
            Diagnostics(), TensorBoard()]


def _val_history(path: Path) -> list[tuple[int, float]]:
    """(update, AP) of each validation record in a metrics.jsonl (the trainer already dropped the records
    past the checkpoint being resumed)."""
    if not path.is_file():
        return []
    history = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "val" and "AP" in record:
            history.append((int(record["iteration"]), float(record["AP"])))
    return history


def _mean_record(window: list[dict[str, float]], iteration: int, epoch: int) -> dict[str, Any]:
    keys = [k for k in window[0] if k not in ("images", "seconds")] if window else []
    record: dict[str, Any] = {"event": "train", "iteration": iteration, "epoch": epoch}
    for key in keys:
        record[key] = float(np.mean([w[key] for w in window]))
    record["loss"] = sum(record.get(k, 0.0) for k in ("classification", "bbox_regression", "bbox_ctrness"))
    seconds = sum(w["seconds"] for w in window)
    record["images_per_s"] = sum(w["images"] for w in window) / seconds if seconds else 0.0
    return record

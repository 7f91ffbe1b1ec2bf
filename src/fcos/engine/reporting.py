"""What a training run reports, computed once and handed to every sink: the run folder (``config.yaml``,
``metrics.jsonl``, ``loss_curve.png``, ``val_predictions.png``, and after the final evaluation
``pr_curves.png``, ``confusion_matrix.png``, ``per_class.csv``/``.json``), the progress bar, and the
experiment trackers (:mod:`fcos.engine.trackers`: TensorBoard, ...).

Rank 0 does the reporting; the other ranks only take part in the one collective (the diagnostics' write,
whose failure stops every rank alike).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from fcos.engine.hooks import Hook
from fcos.engine.plots import plot_loss_curve
from fcos.engine.run_config import run_record, write_run_config
from fcos.engine.run_log import RunLog
from fcos.engine.trackers import Tracker
from fcos.evaluation.diagnostics import save_diagnostics
from fcos.evaluation.gallery import val_gallery
from fcos.utils import distributed as D
from fcos.utils.files import save_image

if TYPE_CHECKING:
    from fcos.engine.trainer import Trainer

__all__ = ["LOSSES", "Reporting", "mean_record"]

LOSSES = ("classification", "bbox_regression", "bbox_ctrness")  # the criterion's terms, summed into "loss"


class Reporting(Hook):
    """Args:
        out: the run folder.
        log_every: updates between training records (and the last update's).
        val_images: validation images drawn into ``val_predictions.png`` (0: none).
        trackers: experiment trackers (built on every rank; only rank 0's are called).
    """

    def __init__(self, out: str | Path, *, log_every: int = 10, val_images: int = 16,
                 trackers: Sequence[Tracker] = ()) -> None:
        self.out, self.log = Path(out), RunLog.of(out)
        self.log_every, self.val_images, self.trackers = log_every, val_images, list(trackers)
        self.window: list[dict[str, float]] = []

    def before_train(self, trainer: Trainer) -> None:
        self.window.clear()
        if not D.is_main():
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if trainer.iteration:  # resumed: the records of updates past the checkpoint are done again
            self.log.rewind(trainer.iteration)
        record = run_record(trainer.model.config, trainer.cfg)
        write_run_config(self.out / "config.yaml", record)
        for tracker in self.trackers:
            tracker.start(self.out, record, trainer.iteration)

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self.window.append(losses)
        if trainer.iteration % self.log_every and trainer.iteration != trainer.total:
            return
        record = mean_record(self.window, trainer.iteration, trainer.epoch)
        self.window.clear()
        if trainer.bar is not None:
            trainer.bar.set_postfix(loss=f"{record['loss']:.3f}", cls=f"{record['classification']:.3f}",
                                    box=f"{record['bbox_regression']:.3f}", ctr=f"{record['bbox_ctrness']:.3f}",
                                    lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.1f}")
        if D.is_main():
            self.log.append(record)
            scalars = {f"train/{k}": record[k] for k in ("loss", *LOSSES, "lr", "images_per_s") if k in record}
            for tracker in self.trackers:
                tracker.log_metrics(scalars, trainer.iteration)

    def after_epoch(self, trainer: Trainer) -> None:
        if D.is_main():
            for tracker in self.trackers:
                tracker.flush()  # a paused run (no after_train) keeps what was logged

    def after_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if not D.is_main():
            return
        self.log.append({"event": "val", "iteration": trainer.iteration, "epoch": trainer.epoch, **metrics})
        tqdm.write(f"val epoch {trainer.epoch}: AP {metrics['AP']:.4f}  AP50 {metrics['AP50']:.4f}  AP75 {metrics['AP75']:.4f}")
        result = trainer.val_result
        gallery = val_gallery(result.predictions, trainer.val_data, self.val_images) if result is not None else None
        if gallery is not None:
            save_image(gallery, self.out / "val_predictions.png")
        plot_loss_curve(self.log, self.out / "loss_curve.png")
        scalars = {f"val/{k}": v for k, v in metrics.items() if isinstance(v, float)}
        scalars |= {f"val_AP/{name}": ap for name, ap in metrics.get("per_class", {}).items() if not math.isnan(ap)}
        for tracker in self.trackers:
            tracker.log_metrics(scalars, trainer.iteration)
            if gallery is not None:
                tracker.log_image("val/predictions", gallery, trainer.iteration)
            tracker.flush()

    def after_train(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        pictures: dict[str, Any] = {}
        if trainer.val_data is not None and trainer.val_result is not None:  # the final evaluation's
            save_diagnostics(trainer.val_result, trainer.val_data, self.out, pictures=pictures)  # every rank
        if not D.is_main():
            return
        self.log.append(summary)
        for tracker in self.trackers:
            for name, picture in pictures.items():
                tracker.log_image(f"diagnostics/{name}", picture, trainer.iteration)
            for name in ("per_class.csv", "best.pt"):
                if (self.out / name).is_file():
                    tracker.log_file(self.out / name)
            tracker.finish()


def mean_record(window: list[dict[str, float]], iteration: int, epoch: int) -> dict[str, Any]:
    """The training record of the updates in ``window``: mean losses and learning rate, their sum, and
    images per second over them."""
    keys = [k for k in window[0] if k not in ("images", "seconds")] if window else []
    record: dict[str, Any] = {"event": "train", "iteration": iteration, "epoch": epoch}
    for key in keys:
        record[key] = float(np.mean([float(w[key]) for w in window]))  # device tensors: read here, when logged
    record["loss"] = sum(record.get(k, 0.0) for k in LOSSES)
    seconds = sum(w["seconds"] for w in window)
    record["images_per_s"] = sum(w["images"] for w in window) / seconds if seconds else 0.0
    return record

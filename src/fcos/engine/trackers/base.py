"""The interface an experiment tracker implements (TensorBoard, MLflow, Weights & Biases): what a run
reports, handed over by :class:`fcos.engine.reporting.Reporting` on rank 0 only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["Tracker"]


class Tracker:
    """Override what the tracker records; every method defaults to doing nothing.

    A tracker is built on every rank, so a missing package stops all of them with the same error
    (build it with :func:`fcos.utils.optional.require`); only rank 0's receives the calls below.
    """

    def start(self, out: Path, params: Mapping[str, Any], resumed_at: int) -> None:
        """The run begins: its folder, its resolved config (``{"model": ..., "train": ..., "fcos": ...}``)
        and the update it resumes after (0 for a fresh run; a tracker drops what it logged past it)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars at an update: ``train/loss``, ``train/lr``, ..., ``val/AP``, ``val_AP/<class>``."""

    def log_image(self, name: str, image: Image.Image, step: int) -> None:
        """A picture: ``val/predictions`` after each validation, ``diagnostics/pr_curves`` and
        ``diagnostics/confusion_matrix`` at the end."""

    def log_file(self, path: Path) -> None:
        """A file of the run folder worth keeping with the run (the best checkpoint, the per-class table)."""

    def flush(self) -> None:
        """Write what is buffered (after each epoch: a paused run keeps its records)."""

    def finish(self) -> None:
        """The run has ended (or paused): close."""

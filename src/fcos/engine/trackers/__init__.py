"""Experiment trackers, one table: ``fcos train --<name>`` turns each on (a ``TrainConfig`` field of the
same name), and :func:`build_trackers` builds the enabled ones. A new tracker is one module here
implementing :class:`~fcos.engine.trackers.base.Tracker` and one line in :data:`TRACKERS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fcos.engine.trackers.base import Tracker
from fcos.engine.trackers.mlflow import MLflowTracker
from fcos.engine.trackers.tensorboard import TensorBoardTracker
from fcos.engine.trackers.wandb import WandbTracker

__all__ = ["TRACKERS", "Tracker", "build_trackers"]

# TrainConfig flag -> the tracker it enables
TRACKERS: dict[str, Callable[[], Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "mlflow": MLflowTracker,
    "wandb": WandbTracker,
}


def build_trackers(config: Any) -> list[Tracker]:
    """The trackers ``config`` (a :class:`~fcos.engine.train_config.TrainConfig`) enables, in table order."""
    return [build() for name, build in TRACKERS.items() if getattr(config, name, False)]

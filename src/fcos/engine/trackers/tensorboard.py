"""``--tensorboard``: TensorBoard events in the run folder (``tensorboard --logdir runs`` compares runs by
folder): the scalars, the validation grid and the diagnostics pictures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fcos.engine.trackers.base import Tracker
from fcos.utils.optional import require

__all__ = ["TensorBoardTracker"]


class TensorBoardTracker(Tracker):
    def __init__(self) -> None:
        self._tensorboard = require("torch.utils.tensorboard", "--tensorboard")
        self.writer: Any = None

    def start(self, out: Path, params: Mapping[str, Any], resumed_at: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        # A resumed run drops the events logged after its checkpoint.
        self.writer = self._tensorboard.SummaryWriter(str(out), purge_step=resumed_at + 1 if resumed_at else None)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, name: str, image: Image.Image, step: int) -> None:
        self.writer.add_image(name, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

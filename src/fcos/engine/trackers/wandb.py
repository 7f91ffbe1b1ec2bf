"""``--wandb``: the run logged to Weights & Biases: the resolved config, the scalars, the pictures and the
best checkpoint. Offline unless ``WANDB_MODE`` says otherwise (runs are written under ``wandb/`` in the
working folder; ``wandb sync`` uploads them later), so training never waits on a network. The project is
``WANDB_PROJECT`` (default ``fcos``), the run named after the run folder. ``pip install wandb``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from fcos.engine.trackers.base import Tracker
from fcos.utils.files import write_text
from fcos.utils.optional import require

__all__ = ["WandbTracker"]


class WandbTracker(Tracker):
    def __init__(self) -> None:
        self.wandb = require("wandb", "--wandb")
        self.run: Any = None

    def start(self, out: Path, params: Mapping[str, Any], resumed_at: int) -> None:
        # The run id lives in the run folder, so --resume continues the same W&B run.
        id_file = out / "wandb_run_id.txt"
        saved = id_file.read_text().strip() if id_file.is_file() else None
        run_id = saved if resumed_at and saved else secrets.token_hex(4)
        if run_id != saved:
            write_text(id_file, run_id + "\n")
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "fcos"), name=out.name, id=run_id,
                                   mode=os.environ.get("WANDB_MODE", "offline"), config=dict(params),
                                   dir=str(Path.cwd()), resume="allow" if resumed_at else None)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_image(self, name: str, image: Image.Image, step: int) -> None:
        self.run.log({name: self.wandb.Image(image)}, step=step)

    def log_file(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

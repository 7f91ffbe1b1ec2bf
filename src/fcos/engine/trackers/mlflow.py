"""``--mlflow``: the run logged to MLflow: its resolved config as params, the scalars per update and per
evaluation, the pictures, the per-class table and the best checkpoint as artifacts.

Where to: ``MLFLOW_TRACKING_URI`` when set (a server, a database), else a local file store ``mlruns/``
in the working folder (MLflow's classic default; ``mlflow ui --backend-store-uri mlruns`` shows it). MLflow
3 keeps its file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which this tracker sets for
a file store only (that default, or a ``file:`` URI or plain folder in ``MLFLOW_TRACKING_URI``). The
experiment is ``MLFLOW_EXPERIMENT_NAME`` (default ``fcos``), the run named after
the run folder. Installed by ``pip install 'fcos[mlflow]'`` (``mlflow-skinny``: the client and the file
store without the server's dependencies; the full ``mlflow`` works the same).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from fcos.engine.trackers.base import Tracker
from fcos.utils.optional import require

__all__ = ["MLflowTracker", "flat_params"]


class MLflowTracker(Tracker):
    def __init__(self) -> None:
        self.mlflow = require("mlflow", "--mlflow")
        self.run: Any = None

    def start(self, out: Path, params: Mapping[str, Any], resumed_at: int) -> None:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns").resolve().as_uri()
        if uri.startswith(("file:", "/", ".")):  # a file store: the default, a file: URI or a folder
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.mlflow.set_tracking_uri(uri)  # also over a URI an earlier run in this process set
        experiment = self.mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "fcos"))
        folder = str(out.resolve())
        earlier = self._run_of(experiment.experiment_id, folder) if resumed_at else None
        if earlier is not None:  # --resume continues the same MLflow run: one curve per training run
            self.run = self.mlflow.start_run(run_id=earlier)
        else:
            self.run = self.mlflow.start_run(run_name=out.name)
            self.mlflow.log_params(flat_params(params))
        self.mlflow.set_tags({"fcos.run_folder": folder, "fcos.resumed_at": str(resumed_at)})

    def _run_of(self, experiment_id: str, folder: str) -> str | None:
        """The newest MLflow run logged from ``folder``, or None."""
        runs = self.mlflow.search_runs([experiment_id], filter_string=f"tags.`fcos.run_folder` = '{folder}'",
                                       order_by=["attributes.start_time DESC"], max_results=1,
                                       output_format="list")
        return runs[0].info.run_id if runs else None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # MLflow keys may hold / but no spaces or other punctuation class names can carry
        self.mlflow.log_metrics({_key(k): float(v) for k, v in metrics.items()}, step=step)

    def log_image(self, name: str, image: Image.Image, step: int) -> None:
        self.mlflow.log_image(image, artifact_file=f"{name}/{step:08d}.png")

    def log_file(self, path: Path) -> None:
        self.mlflow.log_artifact(str(path))

    def finish(self) -> None:
        if self.run is not None:
            self.mlflow.end_run()
            self.run = None


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts as MLflow params: dotted keys, values as text (MLflow's limit: 6000 chars)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def _key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./" else "_" for c in name)

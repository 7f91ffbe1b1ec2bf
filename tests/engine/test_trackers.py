"""Experiment trackers behind one interface (fcos.engine.trackers): a tiny run logged to MLflow is read
back through MLflow's own client (params, per-update losses and learning rate, per-evaluation metrics,
the pictures, the per-class table and the best checkpoint); W&B, where installed, offline."""

from __future__ import annotations

import pytest

from fcos.cli import main
from fcos.engine.trackers import TRACKERS, build_trackers
from fcos.engine.trackers.mlflow import flat_params
from fcos.engine.train_config import TrainConfig

TINY = ["--backbone", "resnet18", "--img-size", "128", "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu",
        "--batch-size", "2", "--workers", "0", "--no-progress", "--warmup-iters", "1", "--log-every", "2",
        "--val-images", "2"]


def test_the_table_builds_what_the_config_enables():
    assert set(TRACKERS) == {"tensorboard", "mlflow", "wandb"}
    assert all(hasattr(TrainConfig(), name) for name in TRACKERS)  # each a TrainConfig flag of its name
    assert build_trackers(TrainConfig()) == []
    assert flat_params({"model": {"fpn": {"channels": 32}}, "train": {"lr": None}}) == {
        "model.fpn.channels": "32", "train.lr": "None"}


def test_mlflow_run_reads_back_through_mlflows_client(shapes, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "fcos-test")
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--max-iters", "4", "--mlflow",
                 "--eval-every", "1", *TINY]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("fcos-test").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.max_iters"] == "4" and params["model.fpn.channels"] == "32" and params["fcos.version"]
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [2, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/lr")] == [2, 4]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "val/AP")} == {4}
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "per_class.csv", "val", "diagnostics"} <= files
    # --resume continues the same MLflow run, params untouched
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--max-iters", "6", "--mlflow",
                 "--eval-every", "1", "--resume", *TINY]) == 0
    (resumed,) = client.search_runs([client.get_experiment_by_name("fcos-test").experiment_id])
    assert resumed.info.run_id == run.info.run_id and resumed.data.tags["fcos.resumed_at"] == "4"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [2, 4, 6]


@pytest.mark.parametrize("as_uri", [True, False])
def test_mlflow_into_a_file_store_named_by_the_environment(shapes, tmp_path, monkeypatch, as_uri):
    """MLFLOW_TRACKING_URI=file:///... or a folder: MLflow 3 refuses its file store unless allowed."""
    mlflow = pytest.importorskip("mlflow")
    store = tmp_path / "store"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri() if as_uri else str(store))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "fcos-uri")
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--max-iters", "2", "--mlflow",
                 "--val-split", "none", *TINY]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("fcos-uri").experiment_id])
    assert run.info.status == "FINISHED" and [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]


def test_wandb_offline_run(shapes, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--max-iters", "2", "--wandb",
                 *TINY]) == 0
    run_id = (tmp_path / "run" / "wandb_run_id.txt").read_text().strip()
    assert [p.name.rsplit("-", 1)[1] for p in (tmp_path / "wandb").glob("offline-run-*")] == [run_id]
    # --resume continues the run of the same id
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--max-iters", "4", "--wandb",
                 "--resume", *TINY]) == 0
    assert {p.name.rsplit("-", 1)[1] for p in (tmp_path / "wandb").glob("offline-run-*")} == {run_id}

"""Training loop: exact resume, run-folder outputs, non-finite handling, time budget."""

from __future__ import annotations

import json

import pytest
import torch

from fcos.engine.checkpoint import load_checkpoint
from fcos.engine.config import TrainConfig, cpu_from_scratch, model_config_for
from fcos.engine.trainer import NonFiniteLossError, Trainer


def tiny(num_classes=1):
    return model_config_for(num_classes, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1)


def config(data, out, **changes) -> TrainConfig:
    base = dict(data=str(data), out=str(out), val_split=None, batch_size=4, max_iters=6, workers=0,
                progress=False, log_every=2, lr=1e-3, warmup_iters=2)
    return cpu_from_scratch(**{**base, **changes})


def weights(path):
    return load_checkpoint(path)["model"]


def test_resume_mid_epoch_is_bit_identical(shared_data, tmp_path):
    # (Same worker count on both sides: photometric jitter reduces over the image, and a worker's
    # single intra-op thread sums in another order than the main process's two.)
    data = shared_data / "fruit"
    straight = Trainer(tiny(3), config(data, tmp_path / "a")).run()
    assert straight["iteration"] == 6
    paused = Trainer(tiny(3), config(data, tmp_path / "b")).run(stop_at=3)
    assert paused["event"] == "paused" and load_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 3
    resumed = Trainer(tiny(3), config(data, tmp_path / "b", resume="auto")).run()
    assert resumed["iteration"] == 6
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if r["event"] == "train"] == [2, 4, 6]


def test_run_folder_contents_and_time_budget(shared_data, tmp_path):
    cfg = config(shared_data / "fruit", tmp_path, val_split="val", max_iters=None, epochs=50, time_budget=8.0,
                 val_images=4, log_every=1)
    summary = Trainer(tiny(3), cfg).run()
    # the schedule was fitted to the budget: far fewer updates than 50 epochs, within ~the budget
    assert 10 <= summary["iteration"] < 50 * (240 // 4) and summary["train_seconds"] < 8.0 * 1.5 + 5
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "val_predictions.png", "last.pt", "best.pt"):
        assert (tmp_path / name).is_file(), name
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["class_names"] == ["apple", "banana", "orange"]
    assert {"optimizer", "scheduler", "scaler", "rng", "epoch", "iteration", "config"} <= set(state)
    assert set(summary["val"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class"}


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(shared_data, tmp_path, monkeypatch):
    cfg = config(shared_data / "fruit", tmp_path, checkpoint_every=2, max_iters=6)
    trainer = Trainer(tiny(3), cfg)
    original = trainer.model.criterion.forward
    calls = {"n": 0}

    def poisoned(outputs, targets):
        calls["n"] += 1
        losses = original(outputs, targets)
        if calls["n"] == 4:
            losses["classification"] = losses["classification"] * float("nan")
        return losses

    monkeypatch.setattr(trainer.model.criterion, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* update 3.*last good checkpoint"):
        trainer.run()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nonfinite_skip_mode_counts_and_continues(shared_data, tmp_path, monkeypatch):
    trainer = Trainer(tiny(3), config(shared_data / "fruit", tmp_path, on_nonfinite="skip", max_iters=4))
    original = trainer.model.criterion.forward
    calls = {"n": 0}

    def poisoned(outputs, targets):
        calls["n"] += 1
        losses = original(outputs, targets)
        return {k: v * float("inf") for k, v in losses.items()} if calls["n"] == 2 else losses

    monkeypatch.setattr(trainer.model.criterion, "forward", poisoned)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary["iteration"] == 4
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())

"""A Trainer built from parts (no dataset on disk) and its hook interface."""

from __future__ import annotations

import json

import torch
from torch.utils.data import Dataset

from fcos.engine.config import cpu_from_scratch, model_config_for
from fcos.engine.hooks import Hook, TimeBudget, default_hooks
from fcos.engine.trainer import Trainer
from fcos.model.detector import FCOS


class Squares(Dataset):
    """In-memory samples: a bright square on a dark 128x128 image, one box per image."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        image = torch.zeros(3, 128, 128)
        x0 = 4 + 16 * index
        image[:, 10:60, x0 : x0 + 30] = 1.0
        target = {"boxes": torch.tensor([[x0, 10.0, x0 + 30, 60]]), "labels": torch.tensor([index % 2])}
        return image, target


class Recorder(Hook):
    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_at = stop_at

    def before_train(self, trainer):
        self.events.append(("before_train", trainer.iteration))

    def after_step(self, trainer, losses):
        self.events.append(("after_step", trainer.iteration, sorted(losses)))
        if trainer.iteration == self.stop_at:
            trainer.request_stop()

    def after_epoch(self, trainer):
        self.events.append(("after_epoch", trainer.epoch))

    def after_train(self, trainer, summary):
        self.events.append(("after_train", summary["iteration"]))


def make_trainer(tmp_path, hooks, **changes):
    model = FCOS(model_config_for(2, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1))
    cfg = cpu_from_scratch(out=str(tmp_path), val_split=None, batch_size=2, max_iters=5, workers=0,
                           progress=False, log_every=2, warmup_iters=1, **changes)
    return Trainer(model, Squares(), cfg, class_names=["a", "b"], hooks=hooks)


def test_trainer_from_parts_runs_the_hooks_in_order(tmp_path):
    recorder = Recorder()
    trainer = make_trainer(tmp_path, [*default_hooks(), recorder])
    assert trainer.updates_per_epoch == 3 and trainer.total == 5  # 6 samples, batch 2
    summary = trainer.run()
    names = [e[0] for e in recorder.events]
    assert names == ["before_train", "after_step", "after_step", "after_step", "after_epoch",
                     "after_step", "after_step", "after_train"]
    assert [e[1] for e in recorder.events if e[0] == "after_step"] == [1, 2, 3, 4, 5]
    assert {"classification", "bbox_regression", "bbox_ctrness", "lr", "images", "seconds"} <= set(recorder.events[1][2])
    assert summary["event"] == "done" and summary["iteration"] == 5 and summary["val"] == {}
    # the built-in hooks did their jobs: the log (every 2 updates and at the end), last.pt, config.yaml
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["iteration"]) for r in records] == [("train", 2), ("train", 4), ("train", 5), ("done", 5)]
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "config.yaml").is_file()


def test_without_hooks_nothing_is_written_and_a_hook_can_stop_early(tmp_path):
    recorder = Recorder(stop_at=2)
    summary = make_trainer(tmp_path, [recorder]).run()
    assert summary["event"] == "done" and summary["iteration"] == 2
    assert [e[0] for e in recorder.events] == ["before_train", "after_step", "after_step", "after_train"]
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "last.pt").exists()


class Clockless:
    """The trainer state TimeBudget reads, with made-up durations (no wall clock)."""

    def __init__(self, durations, train_seconds, budget, planned=1000):
        self.cfg = cpu_from_scratch(time_budget=budget)
        self.durations, self.train_seconds = durations, train_seconds
        self.iteration = len(durations)
        self.total = planned
        self._planned = planned

    def planned_updates(self):
        return self._planned


def test_time_budget_fits_the_total_to_the_measured_speed():
    # 20 updates measured, the first 2 (warm-up) ignored: 0.5 s each; 10 s used of 20 -> 20 more updates
    durations = [5.0, 5.0] + [0.5] * 18
    trainer = Clockless(durations, train_seconds=10.0, budget=20.0)
    TimeBudget().after_step(trainer, {})
    assert trainer.total == 20 + 20
    # never beyond the planned length, never below the updates already done
    capped = Clockless(durations, train_seconds=10.0, budget=20.0, planned=30)
    TimeBudget().after_step(capped, {})
    assert capped.total == 30
    spent = Clockless(durations, train_seconds=25.0, budget=20.0)
    TimeBudget().after_step(spent, {})
    assert spent.total == 20
    # re-fitted every 10 updates only, once 12 are measured
    for measured in (durations[:10], durations[:19]):
        early = Clockless(measured, train_seconds=5.0, budget=20.0)
        TimeBudget().after_step(early, {})
        assert early.total == 1000

"""A Trainer built from parts (no dataset on disk) and its hook interface."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

from fcos.engine.hooks import Hook
from fcos.engine.schedule import RunLength
from fcos.engine.train_config import cpu_from_scratch, official_schedule
from fcos.engine.trainer import Trainer, build_hooks
from fcos.model.detector import FCOS
from fcos.model.options import model_config_for


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
    """``hooks``: a list, or a function of the config giving one (``build_hooks`` and more)."""
    model = FCOS(model_config_for(2, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1))
    base = dict(out=str(tmp_path), val_split=None, batch_size=2, max_iters=5, workers=0, progress=False, log_every=2,
                warmup_iters=1)
    cfg = cpu_from_scratch(**{**base, **changes})
    return Trainer(model, Squares(), cfg, class_names=["a", "b"], hooks=hooks(cfg) if callable(hooks) else hooks)


def test_trainer_from_parts_runs_the_hooks_in_order(tmp_path):
    recorder = Recorder()
    trainer = make_trainer(tmp_path, lambda cfg: [*build_hooks(cfg), recorder])
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


def fitted(durations, train_seconds, budget, planned=1000):
    """The total RunLength fits after ``len(durations)`` updates, or None when it is not due yet."""
    length = RunLength(updates_per_epoch=planned, epochs=1, time_budget=budget)  # planned: 1 epoch of `planned`
    iteration = len(durations)
    if not length.due(iteration, len(durations)):
        return None
    return length.fit(iteration, durations, train_seconds)


def test_time_budget_fits_the_total_to_the_measured_speed():
    # 20 updates measured, the first 2 (warm-up) ignored: 0.5 s each; 10 s used of 20 -> 20 more updates
    durations = [5.0, 5.0] + [0.5] * 18
    assert fitted(durations, train_seconds=10.0, budget=20.0) == 20 + 20
    # never beyond the planned length, never below the updates already done
    assert fitted(durations, train_seconds=10.0, budget=20.0, planned=30) == 30
    assert fitted(durations, train_seconds=25.0, budget=20.0) == 20
    # re-fitted every 10 updates only, once 12 are measured
    for measured in (durations[:10], durations[:19]):
        assert fitted(measured, train_seconds=5.0, budget=20.0) is None


def test_official_recipe_learning_rates_at_updates_0_499_500(tmp_path):
    # Official: constant warm-up at 1/3 for 500 updates, biases at twice the rate (fcos_core solver).
    model = FCOS(model_config_for(2, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1))
    cfg = official_schedule(out=str(tmp_path), val_split=None, batch_size=2, max_iters=90000, workers=0, progress=False)
    trainer = Trainer(model, Squares(), cfg, class_names=["a", "b"], hooks=[])
    base = 0.01 * 2 / 16  # the official linear rule for a batch of 2
    batch = next(iter(trainer.loader))
    seen = {}
    for iteration in (0, 499, 500):
        trainer.iteration = iteration
        trainer.step([batch])
        seen[iteration] = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    for iteration, factor in ((0, 1 / 3), (499, 1 / 3), (500, 1.0)):
        assert seen[iteration]["decay"] == pytest.approx(base * factor)
        assert seen[iteration]["bias"] == pytest.approx(2 * base * factor)
    assert not cfg.photometric and cfg.hflip == 0.5  # official augmentation: resize + flip only


class FakeClock:
    """Each reading is ``step`` seconds after the previous one: every update takes ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def budget_run(tmp_path, **changes):
    trainer = make_trainer(tmp_path, build_hooks, **{"max_iters": None, **changes})
    trainer.clock = FakeClock(0.25)  # start and end readings 0.25 s apart: 0.25 s per update
    return trainer.run()


def test_a_larger_time_budget_extends_a_resumed_run(tmp_path):
    # 10 s at 0.25 s per update: 40 updates; resumed with 15 s, the 5 s left fill 20 more (it ended at once)
    assert budget_run(tmp_path, time_budget=10.0)["iteration"] == 40
    summary = budget_run(tmp_path, time_budget=15.0, resume="auto")
    assert summary["iteration"] == 60 and summary["ended_by"] == "time_budget"
    assert budget_run(tmp_path, time_budget=12.0, resume="auto")["iteration"] == 60  # 15 s trained: nothing left


def test_time_budget_alone_fills_the_budget(tmp_path):
    # 6 samples at batch 2: 3 updates per epoch. 10 s at 0.25 s per update = 40 updates (13+ epochs,
    # beyond the default 12 epochs' 36): the budget alone sets the length.
    summary = budget_run(tmp_path, time_budget=10.0)
    assert summary["iteration"] == 40 and summary["ended_by"] == "time_budget"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "done" and records[-1]["ended_by"] == "time_budget"


def test_with_a_shorter_length_the_length_wins(tmp_path):
    summary = budget_run(tmp_path, time_budget=10.0, epochs=5)
    assert summary["iteration"] == 15 and summary["ended_by"] == "epochs"


@pytest.mark.parametrize(("length", "total", "planned", "ended_by"), [
    ({"time_budget": 10.0}, 40, None, "time_budget"),
    ({"time_budget": 10.0, "max_iters": 100}, 40, 100, "time_budget"),
    ({"time_budget": 10.0, "max_iters": 30}, 30, 30, "max_iters"),
    ({"time_budget": 10.0, "epochs": 5}, 15, 15, "epochs"),
    ({}, 36, 36, "epochs"),  # neither: the default 12 epochs (3 updates each)
])
def test_planned_length_and_the_limit_that_ends_it(tmp_path, length, total, planned, ended_by):
    trainer = make_trainer(tmp_path, [], **{"max_iters": None, **length})
    assert trainer.planned_updates() == planned
    trainer.length.total = total  # what the time budget fits (0.25 s per update in 10 s: 40), capped by the length
    assert trainer.ended_by() == ended_by


def test_a_hook_stop_names_itself(tmp_path):
    class Stopper(Hook):
        def after_step(self, trainer, losses):
            if trainer.iteration == 3:
                trainer.request_stop("early stopping")

    summary = make_trainer(tmp_path, [Stopper()]).run()
    assert summary["iteration"] == 3 and summary["ended_by"] == "early stopping"


def test_workers_default_by_device_when_not_given(tmp_path, capsys):
    from fcos.data.loader import default_workers

    trainer = make_trainer(tmp_path, [], workers=None)
    assert trainer.workers == default_workers("cpu") and trainer.loader.num_workers == trainer.workers
    assert f"data: {trainer.workers} loader workers per process (the default on cpu" in capsys.readouterr().out
    assert make_trainer(tmp_path / "given", [], workers=0).loader.num_workers == 0

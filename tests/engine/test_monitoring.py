"""Early stopping (--patience), TensorBoard (--tensorboard) and the end-of-training diagnostics, in a
real (tiny) run and on made-up evaluation histories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fcos.cli import main
from fcos.engine.hooks import EarlyStopping, Hook
from fcos.engine.trackers.tensorboard import TensorBoardTracker
from fcos.engine.train_config import cpu_from_scratch
from fcos.engine.trainer import Trainer, build_hooks
from fcos.model.options import model_config_for
from fcos.utils.optional import MissingExtraError, require

DIAGNOSTICS = {"pr_curves.png", "confusion_matrix.png", "per_class.csv", "per_class.json"}


class ScriptedAP(Hook):
    """Replaces each evaluation's AP by the next value of a script (runs before the other hooks)."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def after_eval(self, trainer, metrics):
        if self.values:
            metrics["AP"] = self.values.pop(0)


def tiny_run(data: Path, out: Path, first: list[Hook] = (), **changes) -> Trainer:
    """A tiny run with the config's hooks, after ``first``."""
    model_cfg = model_config_for(1, preset="official", backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1)
    cfg = cpu_from_scratch(data=str(data), out=str(out), batch_size=2, workers=0, progress=False, log_every=2,
                           warmup_iters=1, eval_every=1, val_images=2, **changes)
    return Trainer.from_config(model_cfg, cfg, hooks=[*first, *build_hooks(cfg)])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_patience_stops_the_run_says_so_and_writes_the_diagnostics(shapes, tmp_path):
    # AP 0.2, 0.3, then no better for 2 evaluations: stopped after epoch 4 of 10 (update 16).
    trainer = tiny_run(shapes, tmp_path, [ScriptedAP([0.2, 0.3, 0.3, 0.25])], epochs=10, patience=2)
    summary = trainer.run()
    assert summary["iteration"] == 16 and summary["epoch"] == 4
    assert summary["early_stopping"] == {"patience": 2, "stopped": True, "best_AP": 0.3, "best_iteration": 8,
                                         "evaluations_without_improvement": 2}
    logged = records(tmp_path)
    assert [r["iteration"] for r in logged if r["event"] == "val"] == [4, 8, 12, 16]  # no second final evaluation
    assert logged[-1]["event"] == "done" and logged[-1]["early_stopping"]["stopped"] is True
    assert DIAGNOSTICS <= {p.name for p in tmp_path.iterdir()}
    table = json.loads((tmp_path / "per_class.json").read_text())
    assert [c["class"] for c in table["classes"]] == trainer.class_names


def test_early_stopping_counts_evaluations_and_resumes_from_its_checkpoint_state():
    class Fake:
        def __init__(self, resumed_at=0):
            self.iteration, self.total, self.stops = resumed_at, 100, 0

        def request_stop(self, reason="stopped by a hook"):
            self.stops += 1

    hook, trainer = EarlyStopping(3), Fake()
    for iteration, ap in enumerate([0.1, 0.3, 0.3, 0.2, 0.31, 0.3, 0.3], start=1):
        trainer.iteration = iteration
        hook.after_eval(trainer, {"AP": ap})
    assert trainer.stops == 0 and (hook.best, hook.best_iteration, hook.since) == (0.31, 5, 2)
    trainer.iteration = 8
    hook.after_eval(trainer, {"AP": 0.0})
    assert trainer.stops == 1
    trainer.iteration = trainer.total  # the run's final evaluation never stops anything
    hook.stopped, trainer.stops = False, 0
    hook.after_eval(trainer, {"AP": 0.0})
    assert trainer.stops == 0

    # A resumed run (--resume or a torchrun restart) counts on from the checkpoint's record of the hook:
    # evaluations at updates 2, 4, 6 with AP 0.5, 0.4, 0.45.
    before = EarlyStopping(3)
    for iteration, ap in ((2, 0.5), (4, 0.4), (6, 0.45)):
        before.after_eval(Fake(iteration), {"AP": ap})
    checkpoint = {"hooks": {"EarlyStopping": before.state_dict()}}
    resumed, hook = Fake(resumed_at=7), EarlyStopping(3)
    hook.load_state_dict(checkpoint["hooks"]["EarlyStopping"])
    assert (hook.best, hook.best_iteration, hook.since) == (0.5, 2, 2)
    resumed.iteration = 8
    hook.after_eval(resumed, {"AP": 0.45})
    assert resumed.stops == 1
    fresh = EarlyStopping(3)  # not resuming: nothing counted yet
    assert fresh.since == 0 and fresh.best_iteration == -1


def test_tensorboard_logs_losses_lr_metrics_and_pictures(shapes, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tiny_run(shapes, tmp_path, epochs=2, tensorboard=True).run()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/classification", "train/bbox_regression", "train/bbox_ctrness", "train/lr",
            "val/AP", "val/AP50"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]  # every log_every updates
    logged = records(tmp_path)
    train = [r for r in logged if r["event"] == "train"]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([r["lr"] for r in train], rel=1e-6)
    val = [r for r in logged if r["event"] == "val"]
    assert [(e.step, e.value) for e in events.Scalars("val/AP")] == [(r["iteration"], pytest.approx(r["AP"])) for r in val]
    assert {"val/predictions", "diagnostics/pr_curves", "diagnostics/confusion_matrix"} <= set(tags["images"])
    grid = events.Images("val/predictions")
    assert [g.step for g in grid] == [4, 8] and grid[0].width > 100 and grid[0].height > 100


def test_missing_extra_is_one_line_naming_it(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'fcos\[tensorboard\]'"):
        require("torch.utils.tensorboard", "--tensorboard")

    with pytest.raises(MissingExtraError, match="--tensorboard needs the optional package 'tensorboard'"):
        TensorBoardTracker()
    code = main(["train", "--data", str(shapes), "--out", str(tmp_path), "--backbone", "resnet18", "--img-size", "128",
                 "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu", "--max-iters", "2", "--workers", "0",
                 "--no-progress", "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: --tensorboard needs") and "fcos[tensorboard]" in err
    assert not (tmp_path / "last.pt").exists()

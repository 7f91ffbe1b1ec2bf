"""CollapseGuard: a box branch that predicts only zero-size boxes, or a classifier that never scores an
object above the threshold, stops the run (or warns once) with what to change; ranks agree."""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from deploy_helpers import free_port
from fcos.engine.hooks import CollapseGuard, TrainingCollapsedError
from fcos.engine.train_config import cpu_from_scratch
from fcos.engine.trainer import Trainer
from fcos.model.detector import FCOS
from fcos.model.options import model_config_for


class Squares(Dataset):
    """A bright square per 128x128 image (``empty``: no objects at all)."""

    def __init__(self, empty: bool = False) -> None:
        self.empty = empty

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        image = torch.zeros(3, 128, 128)
        if self.empty:
            return image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
        x0 = 8 + 20 * index
        image[:, 20:70, x0 : x0 + 40] = 1.0
        return image, {"boxes": torch.tensor([[x0, 20.0, x0 + 40, 70]]), "labels": torch.tensor([0])}


def make_trainer(tmp_path, *, dead_boxes=False, silent_classes=False, dataset=None, **changes):
    torch.manual_seed(0)
    model = FCOS(model_config_for(1, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1))
    with torch.no_grad():
        if dead_boxes:  # every regression output far below zero: relu gives zero-size boxes, no gradient
            model.head.box_pred.bias.fill_(-1e3)
        if silent_classes:  # every class probability ~0, and it stays there for a few updates at a tiny rate
            model.head.cls_logits.bias.fill_(-60.0)
    base = dict(out=str(tmp_path), val_split=None, batch_size=2, max_iters=60, workers=0, progress=False, log_every=10,
                warmup_iters=1, lr=1e-6, collapse_patience=20)
    cfg = cpu_from_scratch(**{**base, **changes})
    guard = [CollapseGuard(cfg.collapse_patience, action=cfg.on_collapse)] if cfg.collapse_patience else []
    return Trainer(model, dataset or Squares(), cfg, class_names=["square"], hooks=guard)


def test_dead_box_branch_stops_with_advice(tmp_path):
    trainer = make_trainer(tmp_path, dead_boxes=True)
    with pytest.raises(TrainingCollapsedError, match="box-regression branch has collapsed") as caught:
        trainer.run()
    assert trainer.iteration == 20  # patience 20, checked every 10 updates
    message = str(caught.value)
    assert "--lr" in message and "--warmup-iters" in message and "update 20" in message
    assert "--regression softplus" in message  # the model here has the official relu regression


def test_a_live_run_is_not_stopped(tmp_path):
    summary = make_trainer(tmp_path, collapse_patience=10, max_iters=30).run()
    assert summary["iteration"] == 30


def test_silent_classifier_stops_after_four_times_the_patience(tmp_path):
    trainer = make_trainer(tmp_path, silent_classes=True, collapse_patience=5)
    with pytest.raises(TrainingCollapsedError, match="classification branch is not learning"):
        trainer.run()
    assert trainer.iteration == 20


def test_warn_mode_warns_once_and_finishes(tmp_path, capsys):
    summary = make_trainer(tmp_path, dead_boxes=True, on_collapse="warn").run()
    assert summary["iteration"] == 60
    assert capsys.readouterr().out.count("warning: the box-regression branch has collapsed") == 1


def test_patience_zero_never_checks(tmp_path):
    assert make_trainer(tmp_path, dead_boxes=True, collapse_patience=0, max_iters=30).run()["iteration"] == 30


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    # Rank 1 sees no objects at all: alone it would never call the box branch dead, so a rank-local
    # verdict would leave rank 0 stopping while rank 1 waits in DDP's next all-reduce.
    trainer = make_trainer(os.path.join(out, "run"), dead_boxes=True, dataset=Squares(empty=rank == 1))
    try:
        trainer.run()
        verdict = "finished"
    except TrainingCollapsedError:
        verdict = f"stopped at {trainer.iteration}"
    with open(os.path.join(out, f"rank{rank}"), "w") as f:
        f.write(verdict)
    dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_agree_on_the_collapse(tmp_path):
    context = mp.start_processes(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 240  # a healthy run takes ~30 s on 2 cores
    while not context.join(timeout=5):  # False until every rank has ended (raises if one failed)
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("a rank hung: the ranks disagreed on the collapse")
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "stopped at 20"


class Recorder(CollapseGuard):
    def __init__(self) -> None:
        super().__init__()
        self.dead: list[float] = []

    def after_step(self, trainer, losses) -> None:
        stats = trainer.model.last_stats
        self.dead.append(stats["dead_boxes"] / max(1, stats["num_positive"]))


@pytest.mark.parametrize("regression", ["relu", "softplus"])
def test_a_regression_pushed_below_zero_stays_dead_with_relu_and_recovers_with_softplus(tmp_path, regression):
    torch.manual_seed(0)
    model = FCOS(model_config_for(1, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1,
                                  **{"head.regression": regression}))
    with torch.no_grad():
        model.head.box_pred.bias.fill_(-3.0)  # every raw output well below zero
    cfg = cpu_from_scratch(out=str(tmp_path), val_split=None, batch_size=2, max_iters=12, workers=0, progress=False,
                           warmup_iters=0, lr=1e-2, collapse_patience=0)
    recorder = Recorder()
    Trainer(model, Squares(), cfg, class_names=["square"], hooks=[recorder]).run()
    bias = model.head.box_pred.bias.detach()
    if regression == "relu":  # zero-size boxes: no gradient from the IoU loss, none through relu
        assert recorder.dead == [1.0] * 12
        assert torch.equal(bias, torch.full_like(bias, -3.0))  # not one step (biases do not decay here)
    else:  # softplus(-3) is small but positive, with a gradient: the boxes grow back
        assert max(recorder.dead) == 0.0
        assert (bias > -3.0 + 0.01).all()


def test_the_cpu_recipe_trains_a_softplus_regression_and_the_flag_overrides(shapes, tmp_path):
    from fcos.cli import main
    from fcos.weights.checkpoint import load_checkpoint

    common = ["train", "--data", str(shapes), "--val-split", "none", "--backbone", "resnet18", "--img-size", "128", "--fpn-channels", "32",
              "--head-convs", "1", "--max-iters", "1", "--batch-size", "2", "--workers", "0", "--no-progress",
              "--device", "cpu", "--collapse-patience", "0"]
    for extra, expected in ((["--recipe", "cpu"], "softplus"), (["--recipe", "official"], "relu"),
                            (["--recipe", "cpu", "--regression", "relu"], "relu")):
        out = tmp_path / "-".join(extra)
        assert main([*common, *extra, "--out", str(out)]) == 0
        assert load_checkpoint(out / "last.pt")["config"]["head"]["regression"] == expected, extra

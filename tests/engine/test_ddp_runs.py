"""Whole training runs with 2 gloo processes end as a single process does: validation that improves
(best.pt), several evaluations, a time budget, resume and a non-finite stop, through both
`torchrun -m fcos train` and `fcos train --devices 2`. Every run has a timeout: a rank that enters a
collective the others skip hangs (or dies with "Connection closed by peer") instead of finishing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMEOUT = 240  # seconds; a healthy run takes ~20 s on 2 cores
RUN_FILES = {"config.yaml", "metrics.jsonl", "loss_curve.png", "val_predictions.png", "last.pt", "best.pt",
             "pr_curves.png", "confusion_matrix.png", "per_class.csv", "per_class.json"}

pytestmark = pytest.mark.slow


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--backbone", "resnet18", "--img-size", "128",
            "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu", "--workers", "0", "--no-progress",
            "--log-every", "2", "--device", "cpu", "--eval-every", "1", *extra]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fcos", *args]


def fcos(*args: str) -> list[str]:
    return [sys.executable, "-m", "fcos", *args]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung for {TIMEOUT} s: {' '.join(cmd)}\n{(exc.stderr or b'')[-3000:]!r}")


def events(out: Path) -> list[tuple[str, int]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["event"], r["iteration"]) for r in records]


def files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def test_runs_with_validation_resume_and_budget_finish_like_one_process(shapes, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    # 3 epochs, a validation after each: the first always sets best.pt (the bug: rank 0 alone entered
    # the barrier of that save, and the run died at its end).
    one = run(fcos(*train_args(shapes, single, "--batch-size", "2", "--epochs", "3")))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(torchrun(*train_args(shapes, ddp, "--batch-size", "1", "--epochs", "3")))
    assert two.returncode == 0, two.stderr[-3000:]
    assert files(single) == files(ddp) == RUN_FILES
    assert events(ddp) == events(single)  # same updates, logs and evaluations
    assert [e for e, _ in events(ddp)].count("val") == 3
    done = json.loads((ddp / "metrics.jsonl").read_text().splitlines()[-1])
    assert done["event"] == "done" and done["processes"] == 2 and done["iteration"] == 12
    best = torch.load(ddp / "best.pt", weights_only=True)
    assert best["hooks"]["Checkpointer"]["best_ap"] == max(r["AP"] for r in map(json.loads, (ddp / "metrics.jsonl").read_text().splitlines())
                                  if r["event"] == "val")

    # Resume through `fcos train --devices 2`, longer and under a time budget: the schedule is re-fitted
    # from rank 0's clock (every 10 updates after 12), the epoch-end checkpoint decisions likewise.
    resumed = run(fcos(*train_args(shapes, ddp, "--batch-size", "1", "--epochs", "8", "--time-budget", "600",
                                   "--resume", "--devices", "2")))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert torch.load(ddp / "last.pt", weights_only=True)["iteration"] == 32
    assert files(ddp) == RUN_FILES
    assert [e for e, _ in events(ddp)].count("val") == 8


def test_early_stopping_and_tensorboard_agree_across_ranks(shapes, tmp_path):
    # Learning rate 0: the untrained model's scores stay under the decoder's threshold, AP is 0 at every
    # evaluation, so --patience 1 stops both ranks after the second epoch (a rank stopping alone would hang
    # the other in its next collective). Rank 0 alone writes the TensorBoard events.
    pytest.importorskip("tensorboard")
    out = tmp_path / "patience"
    result = run(torchrun(*train_args(shapes, out, "--batch-size", "1", "--epochs", "6", "--lr", "0", "--patience", "1",
                                      "--tensorboard")))
    assert result.returncode == 0, result.stderr[-3000:]
    done = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert done["iteration"] == 8 and done["early_stopping"]["stopped"] and done["early_stopping"]["best_iteration"] == 4
    assert [e for e, _ in events(out)].count("val") == 2
    assert "stopped early" in result.stdout and len(list(out.glob("events.out.tfevents.*"))) == 1
    assert RUN_FILES <= files(out)


def test_nonfinite_stop_exits_with_the_documented_error_on_every_rank(shapes, tmp_path):
    # A learning rate of 1e30 overflows the weights after the first update: every rank sees the
    # non-finite loss through the all-reduced flag and stops with exit code 1 (no hang, no traceback).
    out = tmp_path / "nan"
    result = run(torchrun(*train_args(shapes, out, "--batch-size", "1", "--epochs", "3", "--optimizer", "sgd",
                                      "--lr", "1e30", "--warmup-iters", "0")))
    assert result.returncode == 1
    assert result.stderr.count("error: non-finite loss or gradient") == 2  # one line per rank
    assert "Traceback" not in result.stderr.split("error: non-finite")[0]


def test_failed_checkpoint_write_stops_every_rank(shapes, tmp_path):
    # The file size limit (1 MB, SIGXFSZ ignored: EFBIG as a full disk answers) lets config.yaml and
    # metrics.jsonl through but not a checkpoint: rank 0's write fails, every rank learns it in the
    # collective that ends the save, and all stop with the same one-line error (no hang, no traceback).
    import resource
    import signal

    def file_size_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    out = tmp_path / "full"
    cmd = torchrun(*train_args(shapes, out, "--batch-size", "1", "--max-iters", "4", "--checkpoint-every", "2"))
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=TIMEOUT, preexec_fn=file_size_limit)
    assert result.returncode == 1, result.stderr[-3000:]
    message = f"error: cannot write {out / 'last.pt'}: file size limit reached"
    assert result.stderr.count(message) == 2, result.stderr[-3000:]  # one line per rank
    assert "Traceback" not in result.stderr.split("error: cannot write")[0]
    assert not (out / "last.pt").exists() and not list(out.glob(".last.pt.*"))
    assert [e for e, _ in events(out)] == ["train"]  # update 1 and 2 logged (log-every 2), nothing after

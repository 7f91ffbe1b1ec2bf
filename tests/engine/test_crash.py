"""Crash safety at the process level: `fcos train` killed with SIGKILL resumes to the weights of an
uninterrupted run; a checkpoint write killed half-way leaves the previous last.pt; a corrupt
checkpoint given to --resume is a one-line error with exit code 1."""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from fcos.weights.checkpoint import save_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same intra-op threads in every run: bit-identical sums


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fcos", "train", "--data", str(data), "--out", str(out), "--backbone", "resnet18",
            "--img-size", "128", "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu", "--batch-size", "2",
            "--max-iters", "8", "--workers", "0", "--val-split", "none", "--no-progress", "--seed", "0",
            "--checkpoint-every", "2", "--log-every", "1", *extra]


def read_iteration(path: Path) -> int | None:
    """The checkpoint's update count, or None while there is none (mmap: reads only what it needs)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["iteration"])
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError):
        return None  # not written yet; renames are atomic, so a complete file is never half-read


@pytest.mark.slow
def test_sigkill_during_training_then_resume_equals_uninterrupted_run(shared_data, tmp_path):
    data = shared_data / "fruit"
    straight = subprocess.run(train_command(data, tmp_path / "straight"), capture_output=True, text=True, env=ENV, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(train_command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        # Kill between checkpoints: after last.pt holds update >= 2 and metrics.jsonl has logged a
        # later update, whose work (and log line) the crash then loses.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            iteration = read_iteration(out / "last.pt")
            if iteration is not None and iteration >= 2 and last_logged(out) > iteration:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {proc.returncode} {stderr[-2000:]}"
    killed_at = read_iteration(out / "last.pt")
    assert killed_at is not None and 2 <= killed_at < 8

    resumed = subprocess.run(train_command(data, out, "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'last.pt'} at update {killed_at}" in resumed.stdout
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 8
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # metrics.jsonl: the records of updates lost in the crash are dropped on resume, not repeated
    straight_log, resumed_log = train_records(tmp_path / "straight"), train_records(out)
    assert [r["iteration"] for r in resumed_log] == list(range(1, 9))
    for x, y in zip(straight_log, resumed_log, strict=True):
        assert (x["iteration"], x["loss"], x["lr"]) == (y["iteration"], y["loss"], y["lr"])


def last_logged(out: Path) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return -1
    return max((json.loads(line)["iteration"] for line in lines if line.endswith("}")), default=-1)


def train_records(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == "train"]


_KILLED_WRITER = """
import os, sys, time
import torch
from fcos.weights.checkpoint import save_checkpoint

def stall(fd):  # the new checkpoint's bytes are in the temporary file; it has not replaced last.pt yet
    print("writing", flush=True)
    time.sleep(600)

os.fsync = stall
save_checkpoint({"model": {"w": torch.zeros(1_000_000)}, "config": {}, "iteration": 4}, sys.argv[1])
"""


def test_checkpoint_write_killed_midway_keeps_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}, "iteration": 2}, path)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp") and leftovers[0].stat().st_size > 1_000_000
    state = torch.load(path, weights_only=True)
    assert state["iteration"] == 2 and torch.equal(state["model"]["w"], torch.ones(3))


def test_resume_from_corrupt_checkpoint_is_a_clear_cli_error(shared_data, tmp_path):
    good = save_checkpoint({"model": {"w": torch.zeros(10_000)}, "config": {}, "iteration": 2}, tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated, as a full disk leaves it
    proc = subprocess.run(train_command(shared_data / "fruit", tmp_path / "run", "--resume", str(bad)),
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"error: checkpoint {bad} is corrupt" in proc.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="Linux prlimit")
def test_checkpoint_write_failing_mid_run_stops_cleanly_then_resume_finishes(shared_data, tmp_path):
    """The disk "fills up" after the first checkpoint: the file size limit of the running process drops to
    1 MB (metrics.jsonl stays under it, a checkpoint does not). The run stops with one line naming last.pt,
    exit 1; last.pt is the previous checkpoint, whole; --resume then finishes the run."""
    data, out = shared_data / "fruit", tmp_path / "run"
    proc = subprocess.Popen(train_command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV, preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and (read_iteration(out / "last.pt") or 0) < 2:
            time.sleep(0.02)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (2**20, 2**20))
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (f"error: cannot write {out / 'last.pt'}: file size limit reached "
                                               "(ulimit -f, or the file system's largest file)")
    saved = read_iteration(out / "last.pt")
    assert saved is not None and 2 <= saved < 8
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last.pt", "metrics.jsonl"]  # no stray .tmp

    resumed = subprocess.run(train_command(data, out, "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'last.pt'} at update {saved}" in resumed.stdout
    assert read_iteration(out / "last.pt") == 8
    assert [r["iteration"] for r in train_records(out)] == list(range(1, 9))

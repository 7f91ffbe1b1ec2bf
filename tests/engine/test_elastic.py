"""Faults in multi-process training, with 2 gloo processes on the CPU: a worker SIGKILLed after a
checkpoint makes torchrun restart the group (``fcos train --devices 2 --max-restarts 1``), which resumes
and ends with the weights of an uninterrupted run; a worker that hangs, stopped (SIGSTOP) or stuck
alive, is named by the watchdog and the run stops instead of waiting forever. Every run is bounded by
a subprocess timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from deploy_helpers import free_port

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMEOUT = 240  # seconds; a healthy run takes ~20 s on 2 cores
HANG = 5  # --ddp-timeout of the hang tests

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--backbone", "resnet18", "--img-size", "128",
            "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu", "--workers", "0", "--no-progress",
            "--device", "cpu", "--batch-size", "1", "--val-split", "none", "--seed", "0", "--log-every", "1", *extra]


def read_iteration(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["iteration"])
    except Exception:  # noqa: BLE001 - not written yet (renames are atomic: never half a file)
        return None


def logged(out: Path) -> list[int]:
    """Updates in metrics.jsonl (whole lines only: the writer may be mid-line)."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line)["iteration"] for line in lines if line.endswith("}")]


def workers(root: int) -> dict[int, int]:
    """RANK -> pid of torchrun's workers below process ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
                           if "=" in item)
            except OSError:
                continue
            if "TORCHELASTIC_RUN_ID" in env and "RANK" in env:
                found[int(env["RANK"])] = pid
    return found


def wait_until(condition, proc: subprocess.Popen, what: str, limit: float = TIMEOUT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what}: not reached (exit {proc.poll()}): {proc.communicate()[1][-3000:]}")
        time.sleep(0.02)


def test_a_worker_killed_after_a_checkpoint_is_restarted_and_the_run_ends_as_an_uninterrupted_one(shapes, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = ("--max-iters", "8", "--checkpoint-every", "2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fcos",
           *train_args(shapes, straight, *common)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]

    proc = subprocess.Popen([sys.executable, "-m", "fcos", *train_args(shapes, killed, *common), "--devices", "2",
                             "--max-restarts", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        # Kill rank 1 between checkpoints: last.pt holds update >= 2 and a later update is logged, so
        # the crash loses work (and a log line) that the restarted group must do again.
        def between_checkpoints() -> bool:
            saved = read_iteration(killed / "last.pt")
            return saved is not None and saved >= 2 and max(logged(killed), default=0) > saved

        wait_until(between_checkpoints, proc, "a checkpoint, then a logged update")
        saved = read_iteration(killed / "last.pt")
        os.kill(workers(proc.pid)[1], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert saved is not None and 2 <= saved < 8
    assert f"resumed from {killed / 'last.pt'} at update " in stdout and ", restart 1)" in stdout
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 8
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # The log has every update once: the records of the updates lost with the worker were dropped.
    assert logged(killed) == logged(straight) == [*range(1, 9), 8]  # 8 updates, then the summary


def launch_pair(cmd: list[str]) -> list[subprocess.Popen]:
    """Two processes of ``cmd`` joined through the env:// rendezvous (no torchrun: rank 0 hosts the store)."""
    port = free_port()
    return [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**ENV, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                  "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in range(2)]


def test_a_stopped_worker_is_named_and_the_run_stops(shapes, tmp_path):
    out = tmp_path / "run"
    procs = launch_pair([sys.executable, "-m", "fcos", *train_args(shapes, out, "--max-iters", "400",
                                                                   "--ddp-timeout", str(HANG))])
    try:
        wait_until(lambda: max(logged(out), default=0) >= 2, procs[0], "two logged updates")
        procs[1].send_signal(signal.SIGSTOP)  # alive, not progressing, not answering
        stopped = time.monotonic()
        _, stderr = procs[0].communicate(timeout=60)
        waited = time.monotonic() - stopped
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate(timeout=60)
    assert procs[0].returncode == 1, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: rank 1 is not responding: no heartbeat for {HANG} s"), stderr[-3000:]
    assert errors[0].endswith("Stopping the run (the hang timeout is --ddp-timeout).")
    assert HANG - 1 <= waited < 60
    assert max(logged(out)) < 400


_STUCK_RANK = """
import sys, time
from fcos.engine.train_config import TrainConfig
from fcos.model.options import model_config_for
from fcos.engine.hooks import Hook
from fcos.utils import distributed as D
from fcos.engine.trainer import Trainer, build_hooks

class Stall(Hook):  # rank 1 stops progressing after update 3 but stays alive (its heartbeat goes on)
    def after_step(self, trainer, losses):
        if D.rank() == 1 and trainer.iteration == 3:
            time.sleep(600)

data, out, hang = sys.argv[1:]
cfg = TrainConfig(data=data, out=out, val_split=None, max_iters=400, batch_size=1, workers=0, progress=False,
                  optimizer="adamw", lr=1e-3, warmup_iters=0, ddp_timeout=float(hang))
model = model_config_for(1, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1)
Trainer.from_config(model, cfg, hooks=[*build_hooks(cfg), Stall()]).run()
"""


def test_a_worker_stuck_alive_names_itself_and_the_others_name_it(shapes, tmp_path):
    script = tmp_path / "stall.py"  # a file, not -c: the stack shown then has its source lines
    script.write_text(textwrap.dedent(_STUCK_RANK))
    procs = launch_pair([sys.executable, str(script), str(shapes), str(tmp_path / "run"), str(HANG)])
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for rank, (proc, (_, stderr)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 1, stderr[-3000:]
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, stderr[-3000:]
        assert errors[0].startswith(f"error: rank 1 has made no progress for {HANG} s outside collectives "
                                    "(its last progress: after_step at update 3)"), (rank, errors)
    # The stuck rank shows where it is stuck.
    assert "rank 1 is stuck here:" in outputs[1][1] and "time.sleep(600)" in outputs[1][1]

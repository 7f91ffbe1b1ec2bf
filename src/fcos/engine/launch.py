"""Distributed training's processes: joining the process group torchrun describes, launching torchrun on
this machine (``fcos train --devices``), torchrun's restart count and launch id, and the hang watchdog
around a training run (:mod:`fcos.engine.watchdog`). Rank queries and collectives, which evaluation
uses too, are :mod:`fcos.utils.distributed`.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist

from fcos.engine.watchdog import Watchdog
from fcos.utils.devices import resolve_device
from fcos.utils.distributed import is_distributed, rank, set_monitor, world_size

__all__ = ["cleanup", "init_from_env", "launch_id", "launch_local", "restart_count", "watching"]

# The process group's own collective timeout is the watchdog's plus this: the watchdog names the hung
# rank first; the group's timeout stays as the backstop for what the watchdog cannot see.
BACKSTOP_SECONDS = 60.0

_watchdog: Watchdog | None = None
_watch_runs = 0  # watched runs in this process, the same count on every rank: a fresh key prefix each


def restart_count() -> int:
    """How often torchrun restarted this worker group (``--max-restarts``); 0 on the first attempt."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def launch_id() -> str | None:
    """torchrun's id of this launch (``--rdzv-id``; a fresh uuid with ``--standalone``), the same on
    every rank and across restarts; None outside torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def init_from_env(device: str, timeout: float | None = None) -> torch.device:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this process's device.

    NCCL for CUDA, gloo for CPU. Without torchrun (no WORLD_SIZE) nothing is initialised. ``device`` may
    be ``auto`` (:func:`fcos.utils.devices.resolve_device`). ``timeout``: the hang timeout in seconds (the group's
    collective timeout is ``timeout + BACKSTOP_SECONDS``); None or 0 keeps PyTorch's default.
    """
    device = str(resolve_device(device))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return torch.device(device)
    limit = {} if not timeout else {"timeout": datetime.timedelta(seconds=timeout + BACKSTOP_SECONDS)}
    _warn_shared_store()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank), **limit)
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo", **limit)
    return torch.device(device)


def _warn_shared_store() -> None:
    """torchrun keeps its rendezvous store across restarts and the workers' process group shares it, so a
    restarted worker can read the previous attempt's addresses and fail to connect (pytorch/pytorch#135712;
    seen here with gloo as "connectFullMesh failed ... Connection refused"). A fresh store per attempt
    avoids it: TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's environment (launch_local sets it)."""
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if shared and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and int(os.environ.get("RANK", "0")) == 0:
        print("warning: torchrun --max-restarts with its shared store: a restarted group may fail to connect "
              "(pytorch/pytorch#135712); set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun, as "
              "`fcos train --max-restarts` does", file=sys.stderr, flush=True)


@contextmanager
def watching(timeout: float) -> Iterator[Watchdog | None]:
    """Watch every rank for hangs inside the block (:class:`~fcos.engine.watchdog.Watchdog`): a rank that
    makes no progress for ``timeout`` seconds outside collectives, or whose heartbeat stops, stops the
    run with a message naming it. Needs the env:// rendezvous (torchrun, or MASTER_ADDR/MASTER_PORT);
    otherwise, in one process and with ``timeout`` 0, the block runs unwatched. Every rank must enter it."""
    global _watchdog, _watch_runs
    if timeout <= 0 or not is_distributed() or _watchdog is not None or "MASTER_ADDR" not in os.environ:
        yield None
        return
    _watch_runs += 1
    # A client of the rendezvous store (torchrun's agent hosts it; without torchrun, rank 0's process).
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=datetime.timedelta(seconds=timeout))
    prefix = f"fcos/watchdog/{_watch_runs}"  # each rank overwrites its key first: no stale record lasts
    _watchdog = Watchdog(store, rank(), world_size(), timeout, prefix=prefix).start()
    set_monitor(_watchdog)  # the collectives of fcos.utils.distributed now report to it
    try:
        yield _watchdog
    finally:
        set_monitor(None)
        _watchdog.stop()
        _watchdog = None


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def launch_local(devices: int, argv: Sequence[str], max_restarts: int = 0) -> int:
    """Re-run ``fcos <argv>`` under torchrun with ``devices`` processes on this machine; torchrun restarts
    the whole group up to ``max_restarts`` times when a process fails (the trainer then resumes from
    the run's last checkpoint). ``--standalone`` gives every launch a fresh id (:func:`launch_id`)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}",
           f"--max-restarts={max_restarts}", "-m", "fcos", *argv]
    return subprocess.call(cmd, env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **os.environ})  # see _warn_shared_store

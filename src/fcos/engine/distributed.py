"""torch.distributed helpers: set-up from torchrun's environment, rank queries, collective shortcuts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from fcos.devices import resolve_device

__all__ = [
    "all_gather_objects",
    "all_reduce_max",
    "barrier",
    "broadcast_object",
    "cleanup",
    "init_from_env",
    "is_distributed",
    "is_main",
    "launch_local",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model without its DDP wrapper, in eval mode inside the block, its mode restored after
    (also on errors). Evaluation runs the bare module: DDP's forward would expect a backward pass."""
    base = getattr(model, "module", model)
    was_training = base.training
    base.eval()
    try:
        yield base
    finally:
        base.train(was_training)


def init_from_env(device: str) -> torch.device:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this process's device.

    NCCL for CUDA, gloo for CPU. Without torchrun (no WORLD_SIZE) nothing is initialised.
    ``device`` may be ``auto`` (:func:`fcos.devices.resolve_device`).
    """
    device = str(resolve_device(device))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return torch.device(device)


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_max(value: float, device: torch.device) -> float:
    """The maximum of ``value`` over all processes (flags every rank must agree on)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank: for decisions that must agree across processes but
    rest on per-process state such as wall clocks."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launch_local(devices: int, argv: Sequence[str]) -> int:
    """Re-run ``fcos <argv>`` under torchrun with ``devices`` processes on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}", "-m", "fcos", *argv]
    return subprocess.call(cmd)

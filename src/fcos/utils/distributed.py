"""Process-group queries and collectives for code that runs on every rank (training, evaluation):
rank, world size, object gathers and broadcasts, a max-reduce of flags, and ``evaluating`` (a model
without its DDP wrapper in eval mode). Outside a process group each is the one-process answer.

Every collective here is marked as waiting for the other ranks (:func:`collective`), so a hang monitor
(training's watchdog, :mod:`fcos.engine.watchdog`, registered with :func:`set_monitor`) blames the rank
that does not arrive, not the ones that wait for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_objects",
    "all_reduce_max",
    "all_reduce_max_",
    "barrier",
    "broadcast_object",
    "collective",
    "evaluating",
    "is_distributed",
    "is_main",
    "progress",
    "rank",
    "set_monitor",
    "world_size",
]


class Monitor(Protocol):
    """What a hang monitor offers: progress reports, and a block marked as waiting for the others."""

    def progress(self, where: str) -> None: ...

    def waiting(self) -> Any: ...


_monitor: Monitor | None = None


def set_monitor(monitor: Monitor | None) -> Monitor | None:
    """Register the hang monitor of this process (None: none); returns the previous one."""
    global _monitor
    previous, _monitor = _monitor, monitor
    return previous


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_world_size() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 when not distributed)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if is_distributed() else 1


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


def progress(where: str) -> None:
    """Tell the watchdog (if one runs) that this rank made progress; ``where`` names the step."""
    if _monitor is not None:
        _monitor.progress(where)


def collective() -> Any:
    """A context marking a block that waits for the other ranks (a collective, or code that contains
    them, such as a DDP update), so the watchdog does not take the waiting for a hang of this rank."""
    return _monitor.waiting() if _monitor is not None else nullcontext()


def barrier() -> None:
    if is_distributed():
        with collective():
            dist.barrier()


def all_reduce_max(value: float, device: torch.device) -> float:
    """The maximum of ``value`` over all processes (flags every rank must agree on)."""
    if not is_distributed():
        return value
    return float(all_reduce_max_(torch.tensor([value], dtype=torch.float64, device=device)).item())


def all_reduce_max_(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (on the device) replaced in place by its maximum over all processes, with no host read."""
    if is_distributed():
        with collective():
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    with collective():
        dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank: for decisions that must agree across processes but
    rest on per-process state such as wall clocks."""
    if not is_distributed():
        return obj
    box = [obj]
    with collective():
        dist.broadcast_object_list(box, src=0)
    return box[0]

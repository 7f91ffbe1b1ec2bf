"""Which checkpoint a run resumes from, decided once for every rank, including after torchrun restarts
the worker group.

torchrun ``--max-restarts N`` (and ``fcos train --max-restarts N``) restarts every process of the group
when one fails, with the same command line. A restarted group resumes from ``OUT/last.pt`` when this
launch wrote it, as torchelastic's own training scripts load their checkpoint when it exists. "This
launch" is torchrun's run id (:func:`fcos.utils.distributed.launch_id`, recorded in every checkpoint)
with the same training config, so a ``last.pt`` an earlier run left in the folder is not taken for
this run's. The run id is fresh per launch with ``--standalone`` (and ``fcos train --devices``) or a
job's own ``--rdzv-id``; with torchrun's default id, ``none``, the group must also be a restarted one:
``TORCHELASTIC_RESTART_COUNT`` above 0 on some node (a node whose workers were healthy restarts them
without counting, so rank 0's own count is not enough). Updates after the checkpoint are done again:
``--checkpoint-every`` bounds them.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import torch

from fcos.engine import launch
from fcos.engine.train_config import TrainConfig
from fcos.utils import distributed as D
from fcos.weights.checkpoint import CheckpointError

__all__ = ["agree_on_resumed", "checkpoint_to_resume"]


def checkpoint_to_resume(config: TrainConfig, out: Path) -> Path | None:
    """The checkpoint to resume from, the same on every rank (rank 0 decides; every rank must call this):
    ``out/last.pt`` if this launch wrote it (a torchrun restart); otherwise ``--resume``'s
    (``out/last.pt`` without a value), or None for a fresh start.

    Raises:
        CheckpointError: some ranks do not see the file (the run folder must be one folder every machine sees).
    """
    restarted = max(D.all_gather_objects(launch.restart_count())) > 0
    choice = None
    if D.is_main():
        choice = _choose(config, out, restarted)
    chosen = D.broadcast_object(None if choice is None else str(choice))
    if chosen is None:
        return None
    path = Path(chosen)
    seen = D.all_gather_objects(path.is_file())
    if any(seen) and not all(seen):
        missing = ", ".join(str(r) for r, ok in enumerate(seen) if not ok)
        raise CheckpointError(f"{path} is missing on rank(s) {missing}: to resume, every machine must see the run "
                              "folder (shared storage)")
    return path


def agree_on_resumed(path: Path, iteration: int) -> None:
    """Check that every rank resumed at the same update (a collective: every rank calls it).

    Raises:
        CheckpointError: ranks read different versions of ``path`` (a stale copy on one machine).
    """
    iterations = D.all_gather_objects(iteration)
    if len(set(iterations)) > 1:
        raise CheckpointError(f"the ranks resumed {path} at different updates ({iterations}, by rank): every machine "
                              "must see the same run folder")


def _choose(config: TrainConfig, out: Path, restarted: bool) -> Path | None:
    last = out / "last.pt"
    unique = launch.launch_id() not in (None, "none")
    if (unique or restarted) and last.is_file() and _written_by_this_launch(last, config):
        return last
    if config.resume:
        return last if config.resume == "auto" else Path(config.resume)
    return None


def _written_by_this_launch(path: Path, config: TrainConfig) -> bool:
    try:  # mmap: the header only, the tensors stay on disk
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError):
        return False  # unreadable: not evidence of this launch (an explicit --resume still reports it)
    return (isinstance(state, dict) and state.get("launch") == launch.launch_id()
            and state.get("train_config") == dataclasses.asdict(config))

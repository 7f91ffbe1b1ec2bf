"""Batching: ``collate`` and the one ``DataLoader`` factory, used for training, evaluation and tests.

Sampling is deterministic, resumable and shardable (:mod:`fcos.data.sampling`): the order comes from
(seed, epoch), each sample's augmentations from (seed, epoch, index), so a batch is the same for any
number of workers or processes, and a run resumed mid-epoch continues exactly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fcos.data.sampling import ResumableSampler, SeededSamples

__all__ = ["build_loader", "collate", "default_workers", "seed_worker"]


def collate(
    batch: Sequence[tuple[Tensor, dict[str, Tensor]]],
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """[(image, target), ...] -> ([image, ...], [target, ...]); images differ in size, so no stacking
    (the model pads them into one batch itself)."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs from the seed torch gives each worker (torch seeds only itself)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def default_workers(device: torch.device | str, *, processes: int = 1, cpus: int | None = None) -> int:
    """Loader worker processes per training process when ``--workers`` is not given.

    A GPU step is fast and waits on the host, so CUDA gets the CPUs this process can use (``cpus``:
    its affinity set, shared by ``processes`` training processes on the machine) less one for the
    main loop, at most 8 (torchvision's detection references use 4 per GPU, ultralytics up to 8). On
    the CPU (and MPS) the workers take cores from the step itself: 2, or 1 where a process has only
    one core (``make bench`` row ``feed``: 2 workers load the demo's images several times faster than
    its step uses them, on 2 cores).
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(1, cpus // max(1, processes))
    if torch.device(device).type == "cuda":
        return max(1, min(8, per_process - 1))
    return min(2, per_process)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world: int = 1,
    even: bool = True,
    pin_memory: bool = False,
    persistent: bool = True,
    repeat_factors: Sequence[float] | np.ndarray | None = None,
) -> DataLoader:
    """A DataLoader yielding ``(list[image], list[target])`` batches; ``loader.sampler`` is a
    :class:`ResumableSampler`: call ``loader.sampler.set_epoch(epoch, skip=...)`` before each epoch.

    Reproducible for a fixed ``seed``: the shuffle order derives from (seed, epoch) and the random
    transforms of sample i from (seed, epoch, i), so batches are identical for any ``workers``.
    ``rank`` / ``world``: this process's shard (``even``: the same count on every rank, for training;
    else every item exactly once, for evaluation). Workers are kept across epochs (``persistent``)
    when ``workers > 0``. ``repeat_factors``: [len(dataset)] floats >= 1 for class-balanced training
    (:func:`fcos.data.sampling.repeat_factors`): an epoch then holds ``floor(sum)`` samples.
    """
    sampler = ResumableSampler(len(dataset), seed=seed, shuffle=shuffle, rank=rank, world=world, even=even,  # type: ignore[arg-type]
                               repeat_factors=repeat_factors)
    return DataLoader(
        SeededSamples(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker,
        persistent_workers=persistent and workers > 0,
    )

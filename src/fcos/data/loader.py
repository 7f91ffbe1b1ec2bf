"""Batching: ``collate`` and a seeded, optionally distributed ``DataLoader``."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["build_loader", "collate", "seed_worker"]


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


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int = 0,
    drop_last: bool = False,
    distributed: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding ``(list[image], list[target])`` batches.

    Reproducible for a fixed ``seed``: the shuffle order and each worker's RNG (used by random transforms)
    derive from it. Samples come in the same order for any ``workers``; random augmentations are identical
    for the same ``workers`` (each worker has its own RNG stream).

    With ``distributed=True`` a :class:`DistributedSampler` (needs an initialised process group) gives each
    rank its shard; call ``loader.sampler.set_epoch(epoch)`` every epoch so shuffles differ between epochs.
    Workers are persistent when ``workers > 0`` (no re-spawn each epoch).
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False  # the sampler shuffles
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        persistent_workers=workers > 0,
    )

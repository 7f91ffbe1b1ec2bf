"""Deterministic, resumable, shardable sampling with per-sample augmentation seeds.

The sampler yields ``epoch * N + index`` codes; :class:`SeededSamples` decodes them and draws each
sample's augmentations from an RNG seeded by (seed, epoch, index). A sample therefore looks the same
whatever the number of workers or processes, and a run resumed mid-epoch continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableSampler", "SeededSamples"]


class ResumableSampler(Sampler[int]):
    """Shuffled (per-epoch seed) indices of this rank's shard, starting ``skip`` samples into the epoch.

    With ``even=True`` (training) every rank sees ``num_items // world`` samples per epoch: the
    remainder is dropped so ranks stay in step, as DistributedSampler(drop_last=True). With
    ``even=False`` (evaluation) rank r takes items r, r + world, ...: every item exactly once overall.
    """

    def __init__(
        self, num_items: int, *, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1, even: bool = True
    ) -> None:
        self.num_items, self.seed, self.shuffle, self.rank, self.world = num_items, seed, shuffle, rank, world
        self.even = even
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _per_rank(self) -> int:
        return self.num_items // self.world if self.even else len(range(self.rank, self.num_items, self.world))

    def __len__(self) -> int:
        return self._per_rank() - self.skip

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            order = list(range(self.num_items))
        mine = order[self.rank :: self.world][: self._per_rank()]
        offset = self.epoch * self.num_items
        return iter([offset + i for i in mine[self.skip :]])


class SeededSamples(Dataset):
    """Wraps a dataset: ``self[epoch * N + i]`` is ``dataset[i]`` with augmentations seeded by (seed, epoch, i)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, code: int):
        epoch, index = divmod(code, len(self))
        # fork_rng: the global RNG (which the transforms use) is restored afterwards, so loading in the
        # main process (workers=0) never disturbs the training RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, index)) % (2**63))
            return self.dataset[index]

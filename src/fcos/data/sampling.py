"""Deterministic, resumable, shardable sampling with per-sample augmentation seeds, and class-balanced
repetition (LVIS repeat factors).

The sampler yields ``epoch * N + index`` codes; :class:`SeededSamples` decodes them and draws each
sample's augmentations from an RNG seeded by (seed, epoch, index). A sample therefore looks the same
whatever the number of workers or processes, and a run resumed mid-epoch continues exactly.

Repeat-factor sampling (Gupta et al., "LVIS", CVPR 2019, sec. 4.2; detectron2's
``RepeatFactorTrainingSampler``): image i appears ``r_i`` times per epoch on average, the fractional
part by stochastic rounding drawn from (seed, epoch), so every rank draws the same list before taking
its shard. Two differences from detectron2, both so that the trainer's arithmetic (``updates_per_epoch``,
resuming at ``position * batch`` samples into an epoch) stays exact:

- an epoch has a fixed length, ``L = floor(sum_i r_i)`` samples. detectron2 rounds each image
  independently, so its epochs vary in length; here exactly ``K = floor(S)`` images (``S`` = sum of the
  fractional parts ``f_i``) get their extra copy, chosen by systematic sampling over a seeded
  permutation with inclusion probability ``f_i * K / S`` (>= ``f_i * (1 - 1/S)``, within a few percent
  of detectron2's ``f_i`` once ``S`` is a few dozen);
- copy ``c`` of image ``i`` in epoch ``e`` has the code ``(e * R + c) * N + i`` (``R`` = the largest
  repeat factor, rounded up), so :class:`SeededSamples` augments each copy differently. Without repeat
  factors ``R = 1`` and the codes are the plain ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fcos.data.records import ImageRecord

__all__ = ["ResumableSampler", "SeededSamples", "parse_repeat_threshold", "repeat_factors"]


def repeat_factors(records: Sequence[ImageRecord], threshold: float) -> np.ndarray:
    """LVIS repeat factor of each image: [N] float64, each >= 1.

    ``f_c`` is the fraction of the images holding at least one training box of class c (crowd boxes do
    not count: they are not trained on); a class gets ``r_c = max(1, sqrt(threshold / f_c))`` and an
    image the largest ``r_c`` of its classes (1 without boxes), as detectron2's
    ``repeat_factors_from_category_frequency``. E.g. threshold 0.5, a class in 1 of 8 images: r = 2.

    Raises:
        ValueError: ``threshold`` outside (0, 1].
    """
    check_threshold(threshold)
    num_classes = 1 + max((int(r.labels.max()) for r in records if len(r.labels)), default=-1)
    present = [np.unique(r.labels) for r in records]  # classes of each image
    images_with = np.zeros(num_classes, np.int64)
    for classes in present:
        images_with[classes] += 1
    fraction = images_with / max(len(records), 1)
    with np.errstate(divide="ignore"):
        per_class = np.maximum(1.0, np.sqrt(threshold / fraction))  # inf only for absent classes: never used
    return np.array([per_class[classes].max(initial=1.0) for classes in present], np.float64)


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, or ValueError unless it is a fraction of images in (0, 1]."""
    number = isinstance(threshold, int | float | np.floating) and not isinstance(threshold, bool)
    value = float(threshold) if number else math.nan
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise ValueError(f"the repeat threshold must be a fraction of images in (0, 1], got {threshold!r}")
    return value


def parse_repeat_threshold(text: str) -> float | None:
    """``--repeat-threshold``: a number in (0, 1], or 'none'."""
    if text.strip().lower() == "none":
        return None
    return check_threshold(float(text))


class ResumableSampler(Sampler[int]):
    """Shuffled (per-epoch seed) indices of this rank's shard, starting ``skip`` samples into the epoch.

    With ``even=True`` (training) every rank sees ``epoch_items // world`` samples per epoch: the
    remainder is dropped so ranks stay in step, as DistributedSampler(drop_last=True). With
    ``even=False`` (evaluation) rank r takes items r, r + world, ...: every item exactly once overall.

    ``repeat_factors``: [num_items] floats >= 1 (:func:`repeat_factors`): an epoch then holds
    ``floor(sum)`` samples, image i ``floor(r_i)`` or ``ceil(r_i)`` times (module docstring); training
    only (``even=True``).
    """

    def __init__(
        self,
        num_items: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
        even: bool = True,
        repeat_factors: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.num_items, self.seed, self.shuffle, self.rank, self.world = num_items, seed, shuffle, rank, world
        self.even = even
        self.epoch = 0
        self.skip = 0
        self.factors = None if repeat_factors is None else _checked_factors(repeat_factors, num_items, even)
        self.copies = 1 if self.factors is None else math.ceil(self.factors.max(initial=1.0))
        self.epoch_items = num_items if self.factors is None else _epoch_length(self.factors)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _per_rank(self) -> int:
        if self.even:
            return self.epoch_items // self.world
        return len(range(self.rank, self.num_items, self.world))

    def __len__(self) -> int:
        return self._per_rank() - self.skip

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.factors is not None:
            codes = self._repeated(gen)
        elif self.shuffle:
            offset = self.epoch * self.num_items
            codes = [offset + i for i in torch.randperm(self.num_items, generator=gen).tolist()]
        else:
            codes = [self.epoch * self.num_items + i for i in range(self.num_items)]
        mine = codes[self.rank :: self.world][: self._per_rank()]
        return iter(mine[self.skip :])

    def _repeated(self, gen: torch.Generator) -> list[int]:
        """This epoch's ``epoch_items`` codes, the same on every rank (drawn from (seed, epoch) alone)."""
        assert self.factors is not None
        counts = _rounded(self.factors, gen)  # [N] copies of each image this epoch
        index = np.repeat(np.arange(self.num_items), counts)  # [L] image of each sample
        first = np.cumsum(counts) - counts  # [N] position of each image's first copy in `index`
        copy = np.arange(len(index)) - np.repeat(first, counts)  # [L] 0, 1, ... within an image
        codes = (self.epoch * self.copies + copy) * self.num_items + index
        if self.shuffle:
            codes = codes[torch.randperm(len(codes), generator=gen).numpy()]
        return codes.tolist()


def _checked_factors(factors: Sequence[float] | np.ndarray, num_items: int, even: bool) -> np.ndarray:
    values = np.asarray(factors, np.float64).reshape(-1)
    if len(values) != num_items:
        raise ValueError(f"{len(values)} repeat factors for {num_items} items")
    if not (np.isfinite(values).all() and (values >= 1.0).all()):
        raise ValueError("repeat factors must be finite numbers >= 1")
    if not even:
        raise ValueError("repeat factors are for training (even=True): evaluation reads every item once")
    return values


def _epoch_length(factors: np.ndarray) -> int:
    whole = np.floor(factors)
    # The fractional parts' sum, floored; 1e-9 absorbs the float error of e.g. 0.1 + 0.2 + 0.7.
    return int(whole.sum()) + math.floor((factors - whole).sum() + 1e-9)


def _rounded(factors: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """[N] int64 copies per image: ``floor(r_i)``, plus one for exactly ``K = floor(sum f_i)`` images chosen
    with probability ``f_i * K / S`` each: systematic sampling (points u, u + 1, ..., u + K - 1 on the
    cumulated probabilities) over a seeded permutation, so which images are chosen together varies too."""
    whole = np.floor(factors)
    fraction = factors - whole
    total = fraction.sum()
    extra = math.floor(total + 1e-9)
    counts = whole.astype(np.int64)
    order = torch.randperm(len(factors), generator=gen).numpy()
    u = float(torch.rand((), generator=gen, dtype=torch.float64))
    if extra == 0:
        return counts
    cumulated = np.cumsum(fraction[order] * (extra / total))
    cumulated *= extra / cumulated[-1]
    cumulated[-1] = extra  # exactly: then exactly `extra` points fall below it
    points_below = np.ceil(cumulated - u)  # points u + k < cumulated, k = 0, 1, ...
    chosen = np.diff(points_below, prepend=0.0).astype(np.int64)  # 0 or 1: each probability is <= 1
    counts[order] += chosen
    return counts


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

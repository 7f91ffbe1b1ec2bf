import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from fcos.data.records import ImageRecord
from fcos.data.sampling import ResumableSampler, SeededSamples, parse_repeat_threshold, repeat_factors


def test_epochs_shuffle_differently_and_reproducibly():
    a = ResumableSampler(10, seed=3)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert sorted(i % 10 for i in first) == list(range(10)) and [i // 10 for i in second] == [1] * 10
    assert [i % 10 for i in first] != [i % 10 for i in second]
    b = ResumableSampler(10, seed=3)
    assert list(b) == first


def test_resume_skip_continues_the_same_order():
    s = ResumableSampler(12, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, skip=5)
    assert list(s) == full[5:] and len(s) == 7


def test_ranks_partition_an_epoch():
    parts = []
    for rank in range(3):
        s = ResumableSampler(10, seed=1, rank=rank, world=3)
        parts.append(list(s))
    assert all(len(p) == 3 for p in parts)
    assert len(set(sum(parts, []))) == 9
    # uneven (evaluation): rank r takes r, r + 3, ...; every item once over all ranks
    uneven = [list(ResumableSampler(10, seed=1, shuffle=False, rank=r, world=3, even=False)) for r in range(3)]
    assert uneven == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert [len(ResumableSampler(10, seed=1, rank=r, world=3, even=False)) for r in range(3)] == [4, 3, 3]


class Noise(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(1).item()


def test_seeded_samples_depend_on_epoch_and_index_only_and_keep_global_rng():
    ds = SeededSamples(Noise(), seed=7)
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    a = [ds[i] for i in range(10)]
    assert torch.equal(torch.rand(1), expected_next)  # loading did not consume the global RNG
    assert [ds[i] for i in reversed(range(10))] == list(reversed(a))
    assert a[:5] != a[5:]  # epoch 1 draws differ from epoch 0


# --- repeat-factor sampling (LVIS)

def _records(classes_per_image: list[list[int]]) -> list[ImageRecord]:
    return [ImageRecord(f"{i}.png", i + 1, 10, 10, [[0, 0, 5, 5]] * len(c), c)
            for i, c in enumerate(classes_per_image)]


def test_repeat_factors_by_hand():
    # 8 images: class 0 in 6 (f = 3/4), class 1 in 1 (f = 1/8), class 2 in 2 (f = 1/4); one image empty.
    records = _records([[0], [0, 0], [0, 1, 2], [0], [0], [0, 2], []])
    records.append(ImageRecord("7.png", 8, 10, 10, crowd=[[0, 0, 5, 5]], crowd_labels=[1]))  # crowd: not counted
    # threshold 0.5: r_0 = max(1, sqrt(0.5 / 0.75)) = 1, r_1 = sqrt(0.5 / 0.125) = 2, r_2 = sqrt(2)
    factors = repeat_factors(records, 0.5)
    np.testing.assert_allclose(factors, [1, 1, 2, 1, 1, math.sqrt(2), 1, 1])
    np.testing.assert_allclose(repeat_factors(records, 1.0)[[0, 2, 5]], [math.sqrt(4 / 3), math.sqrt(8), 2])
    for bad in (0, -0.1, 1.5, float("nan"), True, "0.3"):
        with pytest.raises(ValueError, match=r"repeat threshold must be a fraction of images in \(0, 1\]"):
            repeat_factors(records, bad)
    assert parse_repeat_threshold("none") is None and parse_repeat_threshold("0.25") == 0.25


def _counts(codes: list[int], n: int) -> np.ndarray:
    return np.bincount([c % n for c in codes], minlength=n)


def test_epochs_repeat_images_by_stochastic_rounding():
    factors = [1.0, 1.5, 1.5, 2.0, 1.0, 3.25, 1.75]  # whole parts sum to 10, fractional parts to S = 2
    sampler = ResumableSampler(7, seed=5, repeat_factors=factors)
    assert len(sampler) == 12 and sampler.copies == 4  # K = floor(S) = 2 extra copies per epoch
    extra = []
    for epoch in range(400):
        sampler.set_epoch(epoch)
        codes = list(sampler)
        counts = _counts(codes, 7)
        assert len(codes) == 12 and (counts >= np.floor(factors)).all() and (counts <= np.ceil(factors)).all()
        # each copy of an image has its own augmentation seed: (epoch * R + copy) * N + index, copy < R
        assert len(set(codes)) == 12 and {c // 7 for c in codes} <= set(range(4 * epoch, 4 * epoch + 4))
        extra.append(counts - np.floor(factors))
    # K = S = 2: image i gets its extra copy with probability f_i exactly (0.5, 0.5, 0.25, 0.75)
    np.testing.assert_allclose(np.mean(extra, 0), [0, 0.5, 0.5, 0, 0, 0.25, 0.75], atol=0.06)
    again = ResumableSampler(7, seed=5, repeat_factors=factors)
    again.set_epoch(399)
    assert list(again) == codes  # drawn from (seed, epoch) alone
    other = ResumableSampler(7, seed=6, repeat_factors=factors)
    other.set_epoch(399)
    assert list(other) != codes


def test_repeat_epoch_length_is_floored_and_whole_factors_are_exact():
    sampler = ResumableSampler(4, seed=0, repeat_factors=[1.0, 2.0, 3.0, 1.0])
    assert len(sampler) == 7 and sorted(_counts(list(sampler), 4)) == [1, 1, 2, 3]
    # fractional parts sum to 0.9: no extra copy, ever (K = floor(S) = 0)
    assert len(ResumableSampler(3, seed=0, repeat_factors=[1.3, 1.3, 1.3])) == 3
    # a factor of 1 everywhere is a plain shuffle (codes of one copy)
    plain = ResumableSampler(5, seed=2, repeat_factors=[1] * 5)
    assert sorted(plain) == list(range(5))
    with pytest.raises(ValueError, match="3 repeat factors for 4 items"):
        ResumableSampler(4, seed=0, repeat_factors=[1, 1, 1])
    with pytest.raises(ValueError, match=">= 1"):
        ResumableSampler(2, seed=0, repeat_factors=[1, 0.5])
    with pytest.raises(ValueError, match="for training"):
        ResumableSampler(2, seed=0, even=False, repeat_factors=[1, 2])


def test_repeat_shards_cover_the_epoch_and_resume_mid_epoch():
    factors = [1.0, 2.5, 1.0, 1.5, 4.0, 1.0, 1.0]  # floor(12.0) = 12 samples per epoch
    whole = ResumableSampler(7, seed=9, repeat_factors=factors)
    whole.set_epoch(3)
    epoch = list(whole)
    shards = []
    for rank in range(3):
        s = ResumableSampler(7, seed=9, rank=rank, world=3, repeat_factors=factors)
        s.set_epoch(3)
        shards.append(list(s))
    assert [len(s) for s in shards] == [4, 4, 4]
    assert sorted(sum(shards, [])) == sorted(epoch)  # every rank drew the same list, then took its shard
    assert shards[1] == epoch[1::3]
    two = [ResumableSampler(7, seed=9, rank=r, world=5, repeat_factors=factors) for r in range(5)]
    assert [len(s) for s in two] == [2] * 5  # 12 // 5: the remainder is dropped so ranks stay in step
    whole.set_epoch(3, skip=5)
    assert list(whole) == epoch[5:] and len(whole) == 7

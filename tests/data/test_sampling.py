import torch
from torch.utils.data import Dataset

from fcos.data.sampling import ResumableSampler, SeededSamples


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

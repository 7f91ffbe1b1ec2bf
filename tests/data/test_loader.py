import pytest
import torch

from fcos.data.dataset import DetectionDataset
from fcos.data.errors import DatasetError
from fcos.data.layouts import load_annotations
from fcos.data.loader import build_loader, collate, default_workers
from fcos.data.transforms import Compose, PhotometricJitter, RandomHorizontalFlip


@pytest.fixture(scope="module")
def fruit_val(shared_data):
    data = load_annotations(shared_data / "fruit", "val")
    data.records = data.records[:12]  # a few images are enough; keeps worker start-up the dominant cost
    return data


def _run(loader) -> list[tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]]:
    return list(loader)


def _same(a, b) -> bool:
    for (images_a, targets_a), (images_b, targets_b) in zip(a, b, strict=True):
        for x, y in zip(images_a, images_b, strict=True):
            if not torch.equal(x, y):
                return False
        for x, y in zip(targets_a, targets_b, strict=True):
            if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
                return False
    return True


def test_collate_keeps_lists():
    batch = [
        (torch.zeros(3, 4, 5), {"labels": torch.tensor([1])}),
        (torch.zeros(3, 6, 2), {"labels": torch.tensor([])}),
    ]
    images, targets = collate(batch)
    assert [im.shape[-2:] for im in images] == [(4, 5), (6, 2)] and targets[0]["labels"].tolist() == [1]


def test_zero_and_two_workers_give_the_same_batches_in_order(fruit_val):
    dataset = DetectionDataset(fruit_val)
    serial = _run(build_loader(dataset, batch_size=5, shuffle=False, workers=0))
    parallel = build_loader(dataset, batch_size=5, shuffle=False, workers=2)
    assert parallel.persistent_workers and parallel.num_workers == 2
    batches = _run(parallel)
    assert [len(images) for images, _ in serial] == [5, 5, 2]
    assert _same(serial, batches)
    ids = [int(t["image_id"]) for _, targets in batches for t in targets]
    assert ids == [r.image_id for r in fruit_val.records]
    assert _same(batches, _run(parallel))  # second epoch on persistent workers: same again (no shuffle)


def test_seeded_shuffle_and_augmentation_are_reproducible(fruit_val):
    dataset = DetectionDataset(fruit_val, Compose([RandomHorizontalFlip(), PhotometricJitter()]))
    runs = [
        _run(build_loader(dataset, batch_size=4, shuffle=True, workers=2, seed=7, drop_last=True))
        for _ in range(2)
    ]
    assert _same(*runs) and len(runs[0]) == 3
    other = _run(build_loader(dataset, batch_size=4, shuffle=True, workers=2, seed=8, drop_last=True))
    assert not _same(runs[0], other)
    order = [int(t["image_id"]) for _, targets in runs[0] for t in targets]
    assert sorted(order) == sorted(r.image_id for r in fruit_val.records) and order != sorted(order)


def test_worker_errors_arrive_as_dataset_errors(fruit_val, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    record = fruit_val.records[0]
    data = load_annotations(fruit_val.source)
    data.records = [type(record)(broken, 99, record.width, record.height)]
    batches = iter(build_loader(DetectionDataset(data), batch_size=1, shuffle=False, workers=1))
    with pytest.raises(DatasetError) as info:
        next(batches)
    # One line naming the file, as the CLI prints it; the worker's traceback stays available.
    assert str(info.value) == f"{broken}: not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP, GIF)"
    assert "Caught DatasetError in DataLoader worker process 0" in info.value.worker_traceback
    # The traceback's frames form a cycle with the iterator; left to the cyclic GC, torch's worker shutdown
    # may find its queues already finalised and wait 5 s. Break the cycle and shut down now instead.
    info.value.__traceback__ = None
    del info, batches


def test_ranks_read_disjoint_shards_and_epochs_reshuffle(fruit_val):
    def ids(loader):
        return [int(t["image_id"]) for _, targets in loader for t in targets]

    dataset = DetectionDataset(fruit_val)
    loaders = [build_loader(dataset, batch_size=3, shuffle=True, seed=4, rank=r, world=2) for r in range(2)]
    first = [ids(loader) for loader in loaders]
    assert len(first[0]) == len(first[1]) == 6 and not set(first[0]) & set(first[1])
    assert sorted(first[0] + first[1]) == sorted(r.image_id for r in fruit_val.records)
    for loader in loaders:
        loader.sampler.set_epoch(1)
    second = [ids(loader) for loader in loaders]
    assert sorted(second[0] + second[1]) == sorted(first[0] + first[1]) and second != first
    loaders[0].sampler.set_epoch(1, skip=4)  # resuming mid-epoch continues the same order
    assert ids(loaders[0]) == second[0][4:]


@pytest.mark.parametrize(("device", "cpus", "processes", "expected"), [
    ("cuda", 16, 1, 8),   # capped at 8
    ("cuda", 16, 4, 3),   # 4 CPUs per process, one left for the main loop
    ("cuda:1", 2, 1, 1),  # never 0 on a GPU: the main process would decode
    ("cpu", 16, 1, 2),    # the step needs the cores
    ("cpu", 2, 2, 1),     # two processes on two cores
    ("mps", 8, 1, 2),
])
def test_default_workers_by_device(device, cpus, processes, expected):
    assert default_workers(device, processes=processes, cpus=cpus) == expected


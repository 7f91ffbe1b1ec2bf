"""Distributed data parallel on CPU (gloo): two processes with one image each produce the gradients
of one process with both images, because the loss is normalised by positives summed over ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from fcos import FCOS, official

IMAGES = [(200, 240), (160, 200)]


def model_and_batch():
    torch.manual_seed(0)
    # Frozen BatchNorm: with trainable BN, per-rank batch statistics legitimately differ.
    cfg = official(num_classes=3, backbone="resnet18", **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1,
                                                          "input.min_size": 160, "input.max_size": 256, "backbone.norm": "frozen"})
    model = FCOS(cfg).train()
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, h, w, generator=gen) for h, w in IMAGES]
    targets = [
        {"boxes": torch.tensor([[10.0, 20, 150, 180], [30, 40, 90, 100]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[5.0, 5, 60, 70]]), "labels": torch.tensor([1])},
    ]
    return model, images, targets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, images, targets = model_and_batch()
    ddp = DistributedDataParallel(model)
    losses = ddp([images[rank]], [targets[rank]])
    sum(losses.values()).backward()
    if rank == 0:
        torch.save({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, out)
    dist.destroy_process_group()


def test_two_processes_one_image_each_equal_one_process_two_images(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.start_processes(_worker, args=(2, free_port(), out), nprocs=2, join=True, start_method="spawn")
    ddp_grads = torch.load(out)
    model, images, targets = model_and_batch()
    sum(model(images, targets).values()).backward()
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(single) == set(ddp_grads)
    for name, grad in single.items():
        torch.testing.assert_close(ddp_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.slow
def test_torchrun_smoke_train_and_resume(shared_data, tmp_path):
    base = [sys.executable, "-m", "fcos", "train", "--data", str(shared_data / "fruit"), "--out", str(tmp_path),
            "--backbone", "resnet18", "--img-size", "128", "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu",
            "--batch-size", "2", "--max-iters", "4", "--workers", "0", "--val-split", "none", "--no-progress",
            "--devices", "2", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(base, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 4
    resumed = subprocess.run(base + ["--resume", "--max-iters", "6"], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 6

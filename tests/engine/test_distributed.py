"""Distributed data parallel on CPU (gloo): two processes with one image each produce the gradients
of one process with both images, because the loss is normalised by positives summed over ranks;
evaluation sharded over two processes scores like one process; `fcos train --devices 2` runs and resumes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from deploy_helpers import free_port
from fcos import FCOS, official
from fcos.data import load_annotations
from fcos.evaluation.evaluator import evaluate
from fcos.model.options import model_config_for
from fcos.utils import distributed as D

# Both resize to 160 x 224, a multiple of 32, so no image is padded. The one-process batch pads every
# image to the batch's largest size, and padding is not neutral: the padded points join the
# classification loss and the padded pixels enter the receptive fields (and GroupNorm statistics)
# of points near the border. Images of different sizes are therefore *not* expected to match.
IMAGES = [(200, 280), (160, 224)]


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
    assert all(g.abs().sum() > 0 for g in single.values() if g.dim() > 1)
    for name, grad in single.items():
        torch.testing.assert_close(ddp_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def eval_model_and_data(shared_data):
    torch.manual_seed(0)
    cfg = model_config_for(3, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1, **{"decode.score_thresh": 0.0})
    model = FCOS(cfg).eval()
    with torch.no_grad():
        # A random head predicts small boxes at ~1% confidence that match no fruit (every metric 0, a
        # vacuous comparison): widen the boxes and lift the scores so some detections overlap the fruit.
        model.head.box_pred.bias.fill_(3.0)
        model.head.cls_logits.bias.zero_()
    data = load_annotations(shared_data / "fruit", "val")
    return model, data  # 13 images, all 3 classes: shards of 7 and 6


def _eval_worker(rank: int, world: int, port: int, shared_data, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, data = eval_model_and_data(shared_data)
    # batch 1: a batch pads its images to a common size, which shifts the outputs slightly, and the
    # shards pair up different images than one process does.
    metrics = evaluate(model, data, batch_size=1, progress=False)
    with open(f"{out}.{rank}.json", "w") as f:
        json.dump(metrics, f)
    dist.destroy_process_group()


def test_evaluation_sharded_over_two_processes_equals_one_process(shared_data, tmp_path):
    out = str(tmp_path / "metrics")
    mp.start_processes(_eval_worker, args=(2, free_port(), shared_data, out), nprocs=2, join=True, start_method="spawn")
    ranks = [json.loads(open(f"{out}.{r}.json").read()) for r in range(2)]
    model, data = eval_model_and_data(shared_data)
    single = evaluate(model, data, batch_size=1, progress=False)
    assert single["AP"] > 0 and single["AR100"] > 0 and all(v > 0 for v in single["per_class"].values())
    for metrics in ranks:  # every rank returns the metrics of the whole split
        assert set(metrics) == set(single)
        for name, value in single.items():
            if name == "per_class":
                assert metrics[name] == pytest.approx(value, abs=1e-12)
            elif name == "backend":
                assert metrics[name] == value
            else:
                assert math.isclose(metrics[name], value, abs_tol=1e-12), name


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
    done = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert done["event"] == "done" and done["processes"] == 2
    resumed = subprocess.run(base + ["--resume", "--max-iters", "6"], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 6


def test_evaluating_unwraps_and_restores_mode_even_on_errors():
    class Wrapper(torch.nn.Module):  # stands in for DDP: the model is its `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

    inner = torch.nn.Linear(2, 2).train()
    with D.evaluating(Wrapper(inner)) as base:
        assert base is inner and not inner.training
    assert inner.training
    with pytest.raises(RuntimeError), D.evaluating(inner):
        raise RuntimeError("boom")
    assert inner.training


def _fetch_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 0's download fails: every rank must stop with an error, none may wait forever."""
    import datetime

    from fcos.engine import trainer
    from fcos.utils.hub import WeightsUnavailableError

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    fetched = []

    def offline(backbone, weights):
        fetched.append(rank)
        raise WeightsUnavailableError("offline: put the file at /cache/x.pth")

    trainer.prefetch = offline
    cfg = official(num_classes=1, backbone="resnet18", **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1})
    try:
        trainer._build_model(cfg, None, ["a"], torch.device("cpu"))
        result = "built"
    except WeightsUnavailableError as exc:
        result = f"{type(exc).__name__}: {exc}"
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"fetched": fetched, "result": result}, f)
    dist.destroy_process_group()


def test_a_failed_download_on_the_main_process_stops_every_rank(tmp_path):
    out = str(tmp_path / "fetch")
    mp.start_processes(_fetch_worker, args=(2, free_port(), out), nprocs=2, join=True, start_method="spawn")
    main, other = (json.loads(open(f"{out}.{rank}").read()) for rank in (0, 1))
    assert main["fetched"] == [0] and other["fetched"] == []  # one process downloads
    assert main["result"] == "WeightsUnavailableError: offline: put the file at /cache/x.pth"
    assert other["result"].startswith("WeightsUnavailableError: the main process could not fetch")

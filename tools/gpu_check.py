"""``make gpu-check``: what only a CUDA machine can show, in a few minutes, as JSON lines and a verdict.

Checks (each one JSON line: ``{"check", "ok", ...figures}``, or ``"skipped"`` with the reason):

1. ``environment``: torch / CUDA / cuDNN versions, the GPUs.
2. ``train``: ``fcos train`` 20 updates on the device (--amp: bf16 autocast on Ampere and later, else fp16 + GradScaler; pinned memory,
   validation on the device) on a generated shapes set: finite losses, a checkpoint that reloads.
3. ``torchvision_parity``: torchvision's FCOS (ResNet-18 FPN, seeded random init, scores spread) and
   ``fcos.weights.from_torchvision`` of the same weights on the device: training losses within 1e-4 relative,
   detections matched as sets (same label, boxes within 0.05 px, scores within 1e-3; TF32 off, and
   cuDNN picks its own kernels, so not bit-exact); the fast execution (NHWC) alike.
4. ``amp_fp16``: the same batch in fp32 and under fp16 autocast: losses finite and within 2% (the
   classification loss sums ~10^5 terms), detection scores within 0.02.
5. ``no_sync``: one training update (the trainer's ``UpdateStep``: bf16/fp32, fused AdamW, EMA) inside
   ``torch.cuda.set_sync_debug_mode("error")``: any host-device synchronisation raises (issue 31); then
   a poisoned update must be skipped on the device (weights unchanged). On the CPU it runs the update only.
6. ``ddp``: one DDP update per GPU (NCCL) with different data per rank; the updated weights must be
   identical on every rank (the gradients were all-reduced).
7. ``onnxruntime_cuda``: the exported ONNX model under onnxruntime's CUDA provider against the PyTorch
   model on the device (skipped without onnxruntime-gpu).

``python tools/gpu_check.py`` exits 0 when every check that ran passed, 1 otherwise, and 2 (with one
line saying so, no traceback) on a machine without CUDA. ``--device cpu`` runs the same checks on the
CPU (gloo instead of NCCL, bf16 instead of fp16): a dry run of this script's logic, not a GPU result.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):  # runnable from a clone without installing; ROOT holds bench/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def emit(record: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(record), flush=True)
    return record


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-12))


def tv_model(num_classes: int = 5) -> torch.nn.Module:
    """torchvision's FCOS on a ResNet-18 FPN, seeded random init, scores spread so NMS has work."""
    from torchvision.models import resnet18
    from torchvision.models.detection import FCOS as TorchvisionFCOS
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    backbone = BackboneWithFPN(resnet18(weights=None), return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
                               in_channels_list=[128, 256, 512], out_channels=64, extra_blocks=LastLevelP6P7(64, 64))
    model = TorchvisionFCOS(backbone, num_classes, min_size=320, max_size=512, score_thresh=0.05)
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.uniform_(-4.0, -1.0)
    return model


def batch(device: torch.device, seed: int = 0, n: int = 2) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 320, 448, generator=gen).to(device) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(6, 2, generator=gen) * 300
        wh = torch.rand(6, 2, generator=gen) * 120 + 8
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(device), "labels": torch.randint(0, 5, (6,), generator=gen).to(device)})
    return images, targets


def check_environment(device: torch.device, work: Path) -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device.type == "cuda" else []
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if gpus else None,
            "gpus": gpus, "device": str(device), "ok": True}


def check_train(device: torch.device, work: Path) -> dict[str, Any]:
    from fcos.cli import main
    from fcos.data import generate_shapes
    from fcos.engine.run_log import RunLog
    from fcos.weights.checkpoint import load_model

    data = generate_shapes(work / "shapes", num_train=16, num_val=8, image_size=160)
    out = work / "train"
    start = time.perf_counter()
    code = main(["train", "--data", str(data), "--out", str(out), "--recipe", "cpu", "--backbone", "resnet18",
                 "--img-size", "160", "--fpn-channels", "64", "--head-convs", "2", "--batch-size", "4", "--amp",
                 "--max-iters", "20", "--workers", "2", "--device", str(device), "--no-progress", "--log-every", "5"])
    seconds = time.perf_counter() - start
    losses = [r["loss"] for r in RunLog.of(out).records("train")]
    model, _ = load_model(out / "last.pt")
    finite = all(abs(v) < 1e6 for v in losses)  # NaN fails the comparison too
    ok = code == 0 and len(losses) == 4 and finite and model is not None
    return {"ok": ok, "exit_code": code, "losses": [round(v, 4) for v in losses], "seconds": round(seconds, 1)}


def _match(ours: list[dict[str, torch.Tensor]], theirs: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Detections compared as sets (``bench.common.nearest_detections``): counts per image, reference
    detections with no detection of ours of the same label, and the largest box / score gap of the rest."""
    from bench.common import nearest_detections

    box_gap, score_gap = nearest_detections(ours, theirs)
    found = box_gap.isfinite()
    return {"counts_equal": all(len(o["boxes"]) == len(t["boxes"]) for o, t in zip(ours, theirs, strict=True)),
            "unmatched": int((~found).sum()), "box_px": float(box_gap[found].max()) if found.any() else 0.0,
            "score": float(score_gap[found].max()) if found.any() else 0.0}


def check_torchvision_parity(device: torch.device, work: Path) -> dict[str, Any]:
    from fcos.weights import from_torchvision

    # True fp32 on both sides: cuDNN's default TF32 convolutions round to 10 mantissa bits, and the
    # NCHW and NHWC kernels round differently, which would hide a real difference under ~1e-3 noise.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        tv = tv_model().to(device)
        images, targets = batch(device)
        result: dict[str, Any] = {}
        ok = True
        for exact in (True, False):
            ours = from_torchvision(tv.cpu().train(), exact=exact).to(device)
            tv.to(device)
            tv_losses, our_losses = tv(images, targets), ours(images, targets)
            loss_rel = max(_rel(our_losses[k].detach(), tv_losses[k].detach()) for k in tv_losses)
            tv.eval(), ours.eval()
            with torch.no_grad():
                tv_dets, our_dets = tv(images), ours(images)
            tv.train()
            match = _match(our_dets, tv_dets)
            detections = sum(len(t["boxes"]) for t in tv_dets)
            result["exact" if exact else "fast"] = {"loss_rel": loss_rel, **match, "detections": detections}
            ok &= (loss_rel < 1e-4 and match["counts_equal"] and match["unmatched"] == 0 and match["box_px"] < 0.05
                   and match["score"] < 1e-3 and detections > 0)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"ok": ok, **result}


def check_amp(device: torch.device, work: Path) -> dict[str, Any]:
    from fcos import FCOS, official

    torch.manual_seed(0)
    model = FCOS(official(num_classes=5, backbone="resnet18", **{"input.min_size": 320, "input.max_size": 512})).to(device)
    images, targets = batch(device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    full = model(images, targets)
    with torch.autocast(device.type, dtype=dtype):
        half = model(images, targets)
    finite = all(torch.isfinite(v).item() for v in half.values())
    loss_rel = max(_rel(half[k].detach().float(), full[k].detach()) for k in full)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    scaler.scale(sum(half.values())).backward()
    grads_finite = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        with torch.autocast(device.type, dtype=dtype):
            half_logits = model.head_outputs(model.transform(images)[0].tensor).cls_logits.float().sigmoid()
        full_logits = model.head_outputs(model.transform(images)[0].tensor).cls_logits.sigmoid()
    score_diff = float((half_logits - full_logits).abs().max())
    return {"ok": finite and grads_finite and loss_rel < 0.02 and score_diff < 0.02, "dtype": str(dtype),
            "loss_rel": loss_rel, "score_abs": score_diff, "finite": finite, "grads_finite": grads_finite}


def check_no_sync(device: torch.device, work: Path) -> dict[str, Any]:
    from fcos import FCOS, official
    from fcos.engine.ema import ModelEMA
    from fcos.engine.precision import Precision
    from fcos.engine.step import UpdateStep

    torch.manual_seed(0)
    model = FCOS(official(num_classes=5, backbone="resnet18", **{"input.min_size": 320, "input.max_size": 512})).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    precision = Precision(device, amp=device.type == "cuda" and torch.cuda.is_bf16_supported())
    step = UpdateStep(model, optimizer, precision, device, ema=ModelEMA(model))
    images, targets = batch(torch.device("cpu"))
    if device.type == "cuda":
        images = [image.pin_memory() for image in images]  # the trainer's loader pins them on CUDA
    micro = [(images, targets)]
    step(micro)  # warm-up: optimizer state, cuDNN's choices
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
    try:
        losses, finite = step(micro)
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    hook = model.head.cls_logits.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    _, poisoned = step(micro)
    hook.remove()
    unchanged = all(torch.equal(weights[k], v) for k, v in model.named_parameters())
    return {"ok": bool(finite) and not bool(poisoned) and unchanged and step.skips_on_device,
            "precision": precision.name, "skips_on_device": step.skips_on_device,
            "sync_debug_mode": "error" if device.type == "cuda" else "not on the CPU",
            "poisoned_update_skipped": not bool(poisoned) and unchanged,
            "losses": {k: float(v) for k, v in losses.items()}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, device_type: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from fcos import FCOS, official

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world)
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = FCOS(official(num_classes=5, backbone="resnet18", **{"input.min_size": 320, "input.max_size": 512,
                                                                  "backbone.norm": "frozen"})).to(device)
    ddp = DistributedDataParallel(model, device_ids=[rank] if device_type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = batch(device, seed=100 + rank, n=1)  # different data per rank
    sum(ddp(images, targets).values()).backward()
    optimizer.step()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
        Path(out).write_text(json.dumps({"world": world, "backend": dist.get_backend(), "max_weight_spread": spread}))
    dist.destroy_process_group()


def check_ddp(device: torch.device, work: Path) -> dict[str, Any]:
    import torch.multiprocessing as mp

    world = torch.cuda.device_count() if device.type == "cuda" else 2
    out = work / "ddp.json"
    context = mp.start_processes(_ddp_worker, args=(world, _free_port(), device.type, str(out)), nprocs=world,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            return {"ok": False, "reason": "a rank hung for 300 s"}
    result = json.loads(out.read_text())
    return {"ok": result["max_weight_spread"] == 0.0, **result}


def check_onnxruntime(device: torch.device, work: Path) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"skipped": "onnxruntime is not installed (pip install 'fcos[onnx]')"}
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        return {"skipped": f"this onnxruntime has no {provider} (pip install onnxruntime-gpu)",
                "providers": ort.get_available_providers()}
    from fcos import FCOS, official
    from fcos.export import export_onnx
    from fcos.predict import Predictor
    from fcos.weights.checkpoint import model_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = FCOS(official(num_classes=5, backbone="resnet18", **{"input.min_size": 320, "input.max_size": 512}))
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-4.0, -1.0)
    weights = save_checkpoint(model_checkpoint(model, [f"c{i}" for i in range(5)]), work / "model.pt")
    onnx_file = export_onnx(weights, work / "model.onnx")
    image = torch.rand(3, 300, 420, generator=torch.Generator().manual_seed(1))
    ours = Predictor(weights, device=str(device), conf=0.05)([image])[0]
    theirs = Predictor(onnx_file, device=str(device), conf=0.05)([image])[0]
    same = torch.equal(torch.as_tensor(ours["labels"]), torch.as_tensor(theirs["labels"]))
    box = float((torch.as_tensor(ours["boxes"]) - torch.as_tensor(theirs["boxes"])).abs().max()) if same and len(ours["boxes"]) else 0.0
    return {"ok": same and box < 0.05 and len(ours["boxes"]) > 0, "detections": len(ours["boxes"]), "box_px": box}


CHECKS: dict[str, Callable[[torch.device, Path], dict[str, Any]]] = {
    "environment": check_environment,
    "train": check_train,
    "torchvision_parity": check_torchvision_parity,
    "amp_fp16": check_amp,
    "no_sync": check_no_sync,
    "ddp": check_ddp,
    "onnxruntime_cuda": check_onnxruntime,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu: a dry run of the logic, proves nothing about CUDA")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run these checks only")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        emit({"verdict": "no-cuda", "ok": False, "torch": torch.__version__, "cuda": torch.version.cuda,
              "reason": "no CUDA device on this machine; make gpu-check needs one (--device cpu: a dry run)"})
        print("gpu-check: no CUDA device here, nothing was checked", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    failed, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="fcos-gpu-check-") as tmp:
        for name, check in CHECKS.items():
            if args.only and name not in args.only and name != "environment":
                continue
            start = time.perf_counter()
            try:
                record = check(device, Path(tmp))
            except Exception as exc:  # a check that crashes is a failed check, reported, not a traceback
                record = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "where": traceback.format_exc(limit=-3).strip().splitlines()[-3:]}
            emit({"check": name, **record, "seconds": round(time.perf_counter() - start, 1)})
            if "skipped" in record:
                skipped.append(name)
            elif not record.get("ok"):
                failed.append(name)
    verdict = "pass" if not failed else "fail"
    emit({"verdict": verdict, "ok": not failed, "failed": failed, "skipped": skipped, "device": str(device),
          "dry_run": device.type != "cuda"})
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

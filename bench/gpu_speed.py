"""GPU speed: fcos against torchvision's FCOS on the same CUDA device, weights and inputs.

``python -m bench.gpu_speed`` (``make gpu-check`` runs it after the correctness checks) prints JSON
lines in ``make bench``'s format (``ratio`` > 1: fcos is faster):

- ``gpu_inference``: ``model(images)`` in eval mode, preprocessing, network, decoding and NMS included,
  R50-FPN at 800x1088, batch 1 and 8, fp32 and fp16 autocast on both sides.
- ``gpu_train_step``: forward, loss, backward and an SGD step (lr 0, so the weights stay equal), batch 8,
  fp32 and fp16 AMP (autocast + GradScaler) on both sides, with each side's peak CUDA memory and fcos's
  MFU (``bench.flops``: 3x the network forward's counted FLOPs over the step time, against the GPU's
  dense peak; fp32 rows against the TF32 peak when cuDNN allows TF32).
- ``gpu_feed``: can the host keep the GPU fed? fcos's training loader alone (JPEG decoding and the
  augmentations on the CPU, ``fcos.data.loader.default_workers`` for CUDA, pinned memory, asynchronous
  copies to the device) against the ``gpu_train_step`` AMP row's images/s; extras: JPEG decoding alone,
  one CPU thread against nvjpeg on the GPU (``torchvision.io.decode_jpeg(device="cuda")``, batches of
  8), which says whether decoding on the GPU is worth wiring into the pipeline (it decodes on the CPU
  workers until a measurement says otherwise: docs/performance.md).
- ``gpu_throughput``: fcos alone, images/s and MFU of inference at batch 8 and 16, fp32 / fp16 / bf16,
  eager and compiled (``model.compile()``, CUDA graphs at this fixed size).

The reference is ``fcos_resnet50_fpn`` (seeded random init, the classification bias spread so every
image keeps detections and NMS has work, as with a trained model); ours is
``fcos.weights.from_torchvision`` of that very model, run the way fcos runs by default (channels_last). Times
are medians of alternating rounds (``bench.common.compare_rounds``), each call ending in
``torch.cuda.synchronize()``. ``--device cpu --quick`` is a dry run of this script's logic on a
ResNet-18 at small sizes; it says nothing about a GPU.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from bench.common import compare_rounds, emit, nearest_detections, time_ms
from bench.flops import count_flops, mfu, peak_tflops
from bench.model_speed import _batch, _models
from fcos.model.compiled import default_mode
from fcos.model.detector import FCOS


def _synced(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    def call() -> Any:
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return call


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _peak_name(precision: str) -> str:
    """The peak-table column of a row: fp32 convolutions run as TF32 on tensor cores when cuDNN allows it."""
    if precision == "fp32":
        return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return "bf16" if precision == "bf16" else "fp16"


def throughput(device: torch.device, quick: bool, rounds: int) -> list[dict[str, Any]]:
    """fcos alone: images/s and MFU of inference at batch 8 and 16, fp32 / fp16 / bf16, eager and compiled
    (``model.compile()``: CUDA graphs at this fixed size). FLOPs: the network's forward, counted once."""
    height, width = (160, 224) if quick else (800, 1088)
    _, ours = _pair(height, quick, device)
    ours.eval()
    compiled = copy.deepcopy(ours).compile(mode=default_mode(device, fixed_size=True),
                                          backend="aot_eager" if device.type == "cpu" else "inductor")
    precisions = ["fp32", "fp16"] + (["bf16"] if device.type != "cuda" or torch.cuda.is_bf16_supported() else [])
    records = []
    for batch in (8, 16):
        images, _ = _on(*_batch(batch, height, width, 1), device)
        with torch.inference_mode():
            tensor = ours.transform(images)[0].tensor
            flops = count_flops(lambda tensor=tensor: ours.network(tensor))
        for precision in precisions:
            for name, model in (("eager", ours), ("compiled", compiled)):
                def run(model=model, precision=precision, images=images):
                    with torch.inference_mode(), _autocast(device, precision):
                        return model(images)

                fn = _synced(run, device)
                ms = time_ms(fn, warmup=3, repeat=max(3, rounds))
                peak = peak_tflops(_name(device), _peak_name(precision))
                params = {"backbone": "resnet18-fpn64" if quick else "resnet50", "batch": batch, "image": [height, width],
                          "precision": precision, "execution": name, "device": _name(device)}
                records.append(emit("gpu_throughput", batch * 1000.0 / ms, None, "images/s", params,
                                    higher_is_better=True, ms=ms, network_gflops=flops / 1e9, peak_tflops=peak,
                                    mfu=mfu(flops, ms, peak)))
    return records


def _peak_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _pair(size: int, quick: bool, device: torch.device) -> tuple[torch.nn.Module, FCOS]:
    tv, ours = _models(size, quick)
    with torch.no_grad():  # scores spread over the threshold: decoding and NMS do real work
        ours.head.cls_logits.bias.copy_(tv.head.classification_head.cls_logits.bias.uniform_(-4.0, -1.0))
    return tv.to(device), ours.to(device)


def _on(images, targets, device):
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return images, targets


def _matched_fraction(ours: list[dict], reference: list[dict], px: float = 1.0) -> float:
    """Fraction of the reference's detections that ours has too: same label, every coordinate within ``px``."""
    box_gap, _ = nearest_detections(ours, reference)
    return float((box_gap <= px).float().mean()) if len(box_gap) else 1.0


def inference(device: torch.device, quick: bool, rounds: int) -> list[dict[str, Any]]:
    height, width = (160, 224) if quick else (800, 1088)
    tv, ours = _pair(height, quick, device)
    tv.eval(), ours.eval()
    records = []
    for batch in (1, 8):
        images, _ = _on(*_batch(batch, height, width, 1), device)
        for precision in ("fp32", "fp16"):
            def run(model, precision=precision, images=images):
                with torch.inference_mode(), _autocast(device, precision):
                    return model(images)

            a, b = run(ours), run(tv)
            matched = _matched_fraction(a, b)
            ours_rounds, ref_rounds = compare_rounds(_synced(lambda: run(ours), device), _synced(lambda: run(tv), device),
                                                     rounds=rounds, warmup=3, repeat=5)
            params = {"backbone": "resnet18-fpn64" if quick else "resnet50", "batch": batch, "image": [height, width],
                      "precision": precision, "device": _name(device),
                      "tf32_conv": torch.backends.cudnn.allow_tf32}
            records.append(emit("gpu_inference", statistics.median(ours_rounds), statistics.median(ref_rounds), "ms", params,
                                detections_per_image=sum(len(x["boxes"]) for x in b) / batch, matched=matched,
                                ours_rounds=[round(v, 2) for v in ours_rounds],
                                reference_rounds=[round(v, 2) for v in ref_rounds]))
    return records


def train_step(device: torch.device, quick: bool, rounds: int) -> list[dict[str, Any]]:
    height, width = (160, 224) if quick else (800, 1088)
    batch = 2 if quick else 8
    tv, ours = _pair(height, quick, device)
    tv.train(), ours.train()
    images, targets = _on(*_batch(batch, height, width, 10), device)
    records = []
    for precision in ("fp32", "amp_fp16"):
        amp = precision != "fp32" and device.type == "cuda"
        steps = {}
        for side, model in (("ours", ours), ("reference", tv)):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
            scaler = torch.amp.GradScaler("cuda", enabled=amp)

            def step(model=model, optimizer=optimizer, scaler=scaler, precision=precision):
                with _autocast(device, precision):
                    losses = model(images, targets)
                total = sum(losses.values())
                scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                return total.detach().float()

            steps[side] = _synced(step, device)
        a, b = steps["ours"](), steps["reference"]()
        loss_rel = float((a - b).abs() / b.abs())
        peaks = {f"{side}_peak_mib": _peak_mib(fn, device) for side, fn in steps.items()}
        with torch.no_grad():  # a training step ~ 3x the forward's FLOPs (backward: input + weight gradients)
            tensor = ours.transform(images)[0].tensor
            step_flops = 3 * count_flops(lambda tensor=tensor: ours.network(tensor))
        ours_rounds, ref_rounds = compare_rounds(steps["ours"], steps["reference"], rounds=rounds, warmup=2, repeat=3)
        params = {"backbone": "resnet18-fpn64" if quick else "resnet50", "batch": batch, "image": [height, width],
                  "boxes_per_image": 10, "precision": precision, "device": _name(device),
                  "tf32_conv": torch.backends.cudnn.allow_tf32}
        peak = peak_tflops(_name(device), "fp32" if precision == "fp32" else "fp16")
        peak = peak if precision != "fp32" or not torch.backends.cudnn.allow_tf32 else peak_tflops(_name(device), "tf32")
        records.append(emit("gpu_train_step", statistics.median(ours_rounds), statistics.median(ref_rounds), "ms", params,
                            loss_rel_diff=loss_rel, **peaks, step_gflops=step_flops / 1e9, peak_tflops=peak,
                            mfu=mfu(step_flops, statistics.median(ours_rounds), peak), ours_rounds=[round(v, 2) for v in ours_rounds],
                            reference_rounds=[round(v, 2) for v in ref_rounds]))
    return records


def feed(device: torch.device, quick: bool, step_images_per_s: float | None) -> list[dict[str, Any]]:
    """``gpu_feed`` (module doc): the real training images (the whole fruit set where present, else the
    subset vendored in tests/assets), resized by the R50 rule (shorter side 800)."""
    import time

    from torchvision.io import decode_jpeg, read_file

    from bench.common import dataset_path
    from fcos.config import InputConfig
    from fcos.data import DetectionDataset, build_loader, load_annotations
    from fcos.data.loader import default_workers
    from fcos.data.pipeline import training_transforms

    try:
        root = dataset_path("fruit", quick=False)
    except FileNotFoundError:
        root = dataset_path("fruit", quick=True)
    data = load_annotations(root, "train")
    size = (160, 224) if quick else (800, 1333)
    dataset = DetectionDataset(data, training_transforms(InputConfig(min_size=size[0], max_size=size[1])))
    workers = default_workers(device)
    loader = build_loader(dataset, 8, shuffle=True, workers=workers, drop_last=True, pin_memory=device.type == "cuda")
    count, start, epoch = 0, 0.0, 0
    while count < (16 if quick else 400):
        loader.sampler.set_epoch(epoch)
        for images, _ in loader:
            images = [image.to(device, non_blocking=True) for image in images]
            if epoch > 0:  # the first epoch starts the workers
                count += len(images)
        if epoch == 0:
            start = time.perf_counter()
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loader_ips = count / (time.perf_counter() - start)
    files = [read_file(str(r.path)) for r in data.records if r.path.suffix.lower() in (".jpg", ".jpeg")][:64]
    cpu_ms = time_ms(lambda: [decode_jpeg(f) for f in files], warmup=1, repeat=3)
    gpu_ips = None
    if device.type == "cuda":
        batches = [files[i:i + 8] for i in range(0, len(files), 8)]
        gpu_ms = time_ms(_synced(lambda: [decode_jpeg(b, device=device) for b in batches], device), warmup=2, repeat=5)
        gpu_ips = len(files) * 1000.0 / gpu_ms
    params = {"dataset": str(root.name), "images": len(data.records), "resize": list(size), "workers": workers,
              "batch": 8, "device": _name(device), "step": "gpu_train_step amp_fp16 row (R50 800x1088, batch 8)"}
    return [emit("gpu_feed", loader_ips, step_images_per_s, "images/s", params, higher_is_better=True,
                 cpu_decode_1_thread_images_per_s=len(files) * 1000.0 / cpu_ms, gpu_decode_images_per_s=gpu_ips)]


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run with --quick)")
    parser.add_argument("--quick", action="store_true", help="ResNet-18 at 160x224: checks that the script runs")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per row (default 6)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_speed: no CUDA device here, nothing was measured")
        return 2
    device = torch.device(args.device)
    steps = train_step(device, args.quick, args.rounds)
    feed(device, args.quick, steps[-1]["params"]["batch"] * 1000.0 / steps[-1]["ours"])
    inference(device, args.quick, args.rounds)
    throughput(device, args.quick, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

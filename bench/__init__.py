"""Benchmarks: each module's ``run(quick)`` prints JSON lines ``{"name", "ours", "reference", "unit",
"ratio", "params", ...}`` with the reference measured in the same process on the same inputs.

Run from the repository root: ``python -m bench [names] [--quick]`` (``make bench`` runs them all).
They live outside the installed package: they measure it, they are not part of it."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BENCHMARKS", "run_benchmarks"]

# name -> module under bench/
BENCHMARKS: dict[str, str] = {
    "assign_loss": "assign_loss",
    "scaling": "scaling",
    "postprocess": "postprocess",
    "model_speed": "model_speed",  # train_step, train_memory, inference
    "dataloader": "dataloader",
    "eval": "coco_eval",
    "onnx_runtime": "onnx_runtime",
    "deploy_inference": "deploy",  # ONNX Runtime / OpenVINO, fp32 / int8, against torchvision's PyTorch FCOS
    "soak": "soak",
    "backbones": "backbones",  # params, PyTorch / onnxruntime inference and train step per backbone
    "tracking": "tracking",  # one ByteTrack update against one detection per frame
    "serve_load": "serve_load",  # fcos serve batched / unbatched / sequential at 1-16 clients
    "fast_paths": "fast_paths",  # bf16 inference vs fp32; torch.compile vs eager (inference, train step)
}


def run_benchmarks(names: list[str] | None = None, quick: bool = False) -> list[dict[str, Any]]:
    unknown = set(names or []) - set(BENCHMARKS)
    if unknown:
        raise ValueError(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    records: list[dict[str, Any]] = []
    for name in names or list(BENCHMARKS):
        records += importlib.import_module(f"bench.{BENCHMARKS[name]}").run(quick=quick)
    return records

"""onnx_runtime: CPU inference latency, onnxruntime on the exported graph vs eager PyTorch.

Both sides run the whole :class:`fcos.predict.Predictor` call on the same image, batch 1: host
preprocessing, network, decoding, NMS and mapping boxes back. onnxruntime gets PyTorch's intra-op
thread count. "ours" is onnxruntime, "reference" is PyTorch (ratio > 1: onnxruntime is faster).

Two decoding loads on randomly initialised weights: ``sparse`` (the focal-loss prior bias: no point
passes the score threshold, so the time is the network's) and ``dense`` (every point passes: the full
top-1000-per-level, 5000-candidate NMS path, the decoder's worst case).
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import compare_ms, emit
from fcos.config import official
from fcos.export import export_onnx
from fcos.model.detector import FCOS
from fcos.predict import Predictor
from fcos.weights.checkpoint import model_checkpoint, save_checkpoint


def _checkpoint(path: Path, backbone: str, size: int, dense: bool, **changes: Any) -> Path:
    torch.manual_seed(0)
    config = official(num_classes=80, backbone=backbone, **{"input.min_size": size, "input.max_size": size, **changes})
    model = FCOS(config).eval()
    if dense:
        with torch.no_grad():
            model.head.cls_logits.bias.fill_(-2.0)  # sigmoid 0.12 > score_thresh 0.05 everywhere
    return save_checkpoint(model_checkpoint(model, [f"class{i}" for i in range(80)]), path)


def _compare(weights: Path, onnx_path: Path, image: np.ndarray, quick: bool) -> tuple[float, float, int]:
    ours, reference = Predictor(onnx_path), Predictor(weights)
    a, b = ours(image)[0], reference(image)[0]
    if len(a["scores"]) != len(b["scores"]) or not np.allclose(a["scores"], b["scores"], atol=1e-4):
        raise AssertionError("onnxruntime and PyTorch detections differ")
    ours_ms, ref_ms = compare_ms(partial(ours, image), partial(reference, image), rounds=1 if quick else 3,
                                 warmup=1 if quick else 2, repeat=3 if quick else 5)
    return ours_ms, ref_ms, len(a["scores"])


def run(quick: bool = False) -> list[dict[str, Any]]:
    if quick:  # checks that the benchmark runs, nothing more
        backbone, size, changes = "resnet18", 160, {"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1}
    else:  # the full FCOS-R50 at 512 x 512
        backbone, size, changes = "resnet50", 512, {}
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    records = []
    for load in ("sparse", "dense"):
        with tempfile.TemporaryDirectory() as tmp:
            weights = _checkpoint(Path(tmp) / "model.pt", backbone, size, dense=load == "dense", **changes)
            onnx_path = export_onnx(weights, Path(tmp) / "model.onnx")
            ours_ms, ref_ms, detections = _compare(weights, onnx_path, image, quick)
        params = {"backbone": backbone, "image": [size, size], "batch": 1, "decode": load,
                  "threads": torch.get_num_threads(), "device": "cpu"}
        records.append(emit("onnx_runtime_predict", ours_ms, ref_ms, "ms", params, detections=detections))
    return records


if __name__ == "__main__":
    run()

"""Model FLOP utilisation: FLOPs counted from one forward (``torch.utils.flop_counter``), against the
dense peak of known GPUs. A training step is counted as 3x its forward (backward ~ 2x forward: the
input and the weight gradients), the usual convention (PaLM's MFU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["DENSE_PEAK_TFLOPS", "count_flops", "mfu", "peak_tflops"]

# Dense (no structured sparsity) peak TFLOP/s from the vendors' datasheets: fp16/bf16 tensor cores with
# fp32 accumulation, tf32 tensor cores, plain fp32. The longest matching name wins ("H100 PCIe" before "H100").
DENSE_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp16": 989.0, "bf16": 989.0, "tf32": 494.5, "fp32": 66.9},
    "H100 PCIe": {"fp16": 756.0, "bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"fp16": 989.0, "bf16": 989.0, "tf32": 494.5, "fp32": 66.9},  # SXM
    "A100": {"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"fp16": 362.0, "bf16": 362.0, "tf32": 183.0, "fp32": 91.6},
    "L4": {"fp16": 121.0, "bf16": 121.0, "tf32": 60.0, "fp32": 30.3},
    "A10": {"fp16": 125.0, "bf16": 125.0, "tf32": 62.5, "fp32": 31.2},
    "RTX 4090": {"fp16": 165.2, "bf16": 165.2, "tf32": 82.6, "fp32": 82.6},
    "V100": {"fp16": 125.0, "fp32": 15.7},
    "T4": {"fp16": 65.0, "fp32": 8.1},
}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The table's peak for a GPU name (``torch.cuda.get_device_name``) and "fp16" | "bf16" | "tf32" |
    "fp32"; None for a GPU or precision not in the table."""
    matches = [name for name in DENSE_PEAK_TFLOPS if name.lower() in device_name.lower()]
    if not matches:
        return None
    return DENSE_PEAK_TFLOPS[max(matches, key=len)].get(precision)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (a multiply-add counts 2), as torch's flop counter sees them:
    matrix products and convolutions (the rest is memory-bound and not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def mfu(flops: float, ms: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over the peak (``peak`` in TFLOP/s)."""
    if not peak or ms <= 0:
        return None
    return flops / (ms / 1e3) / (peak * 1e12)

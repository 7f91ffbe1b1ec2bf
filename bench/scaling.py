"""scaling: target assignment time and peak memory as boxes per image and image size grow.

Ours is :func:`fcos.model.assign.assign_targets` (windowed, chunked under ``max_pairs``); the reference is
torchvision's matching loop in ``FCOS.compute_loss`` (its head loss stubbed out). Batch 4. The
growth is summarised as the exponent k of time ~ n^k between the first and last point of each sweep.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bench.assign_loss import Case
from bench.common import compare_ms, emit, peak_memory_mb
from fcos.model.assign import assign_targets, stack_targets
from fcos.ops.sizing import pad_to_multiple


def _measure(batch: int, height: int, width: int, boxes: int, quick: bool) -> dict[str, Any]:
    case = Case(batch, height, width, boxes)
    padded = stack_targets(case.targets)

    def ours() -> torch.Tensor:
        return assign_targets(case.points, *padded, case.config.assign).matched_index

    tv = case.tv
    original = tv.head.compute_loss
    tv.head.compute_loss = lambda targets, outputs, anchors, matched: matched  # matching only

    def reference():
        return tv.compute_loss(case.targets, {}, case.anchors, case.num_per_level)

    try:
        if not torch.equal(ours(), torch.stack(reference())):
            raise AssertionError("assignments differ")
        ours_ms, ref_ms = compare_ms(ours, reference, rounds=1 if quick else 3, warmup=1, repeat=3 if quick or boxes >= 1000 else 5)
        return {"ours_ms": ours_ms, "reference_ms": ref_ms, "ours_mb": peak_memory_mb(ours), "reference_mb": peak_memory_mb(reference)}
    finally:
        tv.head.compute_loss = original


def _exponent(xs: list[float], ys: list[float]) -> float:
    return math.log(ys[-1] / ys[0]) / math.log(xs[-1] / xs[0])


def run(quick: bool = False) -> list[dict[str, Any]]:
    records = []
    batch = 1 if quick else 4
    box_counts = [5, 50] if quick else [5, 50, 200, 1000]
    sizes = [320, 480] if quick else [320, 512, 800, 1088, 1333]
    sweeps = {
        "scaling_boxes": [(b, (256 if quick else 800), (320 if quick else 1088)) for b in box_counts],
        "scaling_image": [(50, pad_to_multiple(s * 3 // 4, 32), pad_to_multiple(s, 32)) for s in sizes],
    }
    for name, points in sweeps.items():
        results = []
        xs = [b for b, _, _ in points] if name == "scaling_boxes" else [h * w for _, h, w in points]
        for i, (boxes, height, width) in enumerate(points):
            m = _measure(batch, height, width, boxes, quick)
            results.append(m)
            params = {"batch": batch, "image": [height, width], "boxes_per_image": boxes}
            growth = {}
            if i == len(points) - 1:  # summarise the sweep on its last point
                growth = {"growth_over": "boxes per image" if name == "scaling_boxes" else "pixels",
                          "ours_time_exponent": round(_exponent(xs, [r["ours_ms"] for r in results]), 2),
                          "reference_time_exponent": round(_exponent(xs, [r["reference_ms"] for r in results]), 2)}
            records.append(emit(name, m["ours_ms"], m["reference_ms"], "ms", params, ours_peak_mb=m["ours_mb"],
                                reference_peak_mb=m["reference_mb"], **growth))
    return records


if __name__ == "__main__":
    run()

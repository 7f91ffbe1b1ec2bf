"""Measurement helpers: warmed-up median wall time and peak resident memory of a callable.

Peak memory is the rise of the process's resident-set high-water mark (VmHWM) over its resident
size just before the call, after returning freed heap pages to the OS (malloc_trim) and resetting
the mark (/proc/self/clear_refs, Linux >= 4.0). Both sides of a comparison are measured the same way.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "compare_ms", "compare_rounds", "dataset_path", "emit", "level_shapes", "nearest_detections", "peak_memory_mb", "rss_mib",
    "time_ms",
]

REPO = Path(__file__).resolve().parents[1]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def time_ms(fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 7, min_time_s: float = 0.0) -> float:
    """Median milliseconds of ``fn()`` over ``repeat`` runs (at least ``min_time_s`` in total) after warm-up."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < repeat or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
        if len(samples) >= 10 * repeat:
            break
    return statistics.median(samples)


def level_shapes(height: int, width: int, levels: int = 5) -> list[tuple[int, int]]:
    """P3..P7 feature sizes of a padded input of ``height`` x ``width`` (stride-2 convs round up)."""
    shapes, h, w = [], height // 8, width // 8
    for _ in range(levels):
        shapes.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return shapes


def compare_rounds(
    ours: Callable[[], Any], reference: Callable[[], Any], *, rounds: int = 5, warmup: int = 2, repeat: int = 3
) -> tuple[list[float], list[float]]:
    """Per-round milliseconds (ours, reference) of alternating rounds, each round the median of ``repeat``
    calls of one side. Both sides are warmed up first; the order within a round swaps every round (ABBA),
    so drift and load from other processes on a shared machine hit both sides alike."""
    for _ in range(warmup):
        ours()
        reference()
    ours_rounds: list[float] = []
    ref_rounds: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            ours_rounds.append(time_ms(ours, warmup=0, repeat=repeat))
            ref_rounds.append(time_ms(reference, warmup=0, repeat=repeat))
        else:
            ref_rounds.append(time_ms(reference, warmup=0, repeat=repeat))
            ours_rounds.append(time_ms(ours, warmup=0, repeat=repeat))
    return ours_rounds, ref_rounds


def compare_ms(
    ours: Callable[[], Any], reference: Callable[[], Any], *, rounds: int = 5, warmup: int = 2, repeat: int = 3
) -> tuple[float, float]:
    """(ours, reference) milliseconds: the MEDIAN over alternating rounds (:func:`compare_rounds`) of each
    side's round medians. Not each side's best round: a best-of keeps whichever side got lucky with the
    machine's load, the median is what a user sees."""
    ours_rounds, ref_rounds = compare_rounds(ours, reference, rounds=rounds, warmup=warmup, repeat=repeat)
    return statistics.median(ours_rounds), statistics.median(ref_rounds)


def nearest_detections(ours: list[dict[str, Any]], reference: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Detections compared as sets, image by image: for every reference detection (all images in order),
    the largest coordinate gap (px) to the nearest of ours with the same label (inf where ours has none
    of that label) and the score gap to that one. Index by index would compare different detections
    wherever two scores tie to within rounding (fp16, TF32, another kernel), and IoU cannot match the
    zero-area boxes of a random-init model.

    Returns:
        (box_gap [N], score_gap [N]), N = the reference's detections over all images.
    """
    import torch

    box_gaps, score_gaps = [], []
    for o, r in zip(ours, reference, strict=True):
        n = len(r["boxes"])
        if not len(o["boxes"]):
            box_gaps.append(torch.full((n,), float("inf")))
            score_gaps.append(torch.full((n,), float("inf")))
            continue
        gap = (r["boxes"].float()[:, None] - o["boxes"].float()[None]).abs().amax(-1)
        gap = gap.masked_fill(r["labels"][:, None] != o["labels"][None], float("inf"))
        best, index = gap.min(1)
        box_gaps.append(best.cpu())
        score_gaps.append((r["scores"].float() - o["scores"].float()[index]).abs().masked_fill(best.isinf(), float("inf")).cpu())
    return torch.cat(box_gaps) if box_gaps else torch.zeros(0), torch.cat(score_gaps) if score_gaps else torch.zeros(0)


def _status_kb(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_mib() -> float | None:
    """The process's resident set size now (VmRSS, MiB); None where /proc is unavailable."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def peak_memory_mb(fn: Callable[[], Any]) -> float | None:
    """Peak additional resident memory (MiB) while running ``fn()`` once; None where unsupported."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    if before is None or peak is None:
        return None
    return max(0.0, (peak - before) / 1024.0)


def emit(
    name: str, ours: float, reference: float | None, unit: str, params: dict[str, Any], *, higher_is_better: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Print one JSON line. ratio > 1 means ours is better: reference / ours for times and sizes,
    ours / reference for throughputs (``higher_is_better``)."""
    ratio = None
    if reference and ours:
        ratio = round(ours / reference if higher_is_better else reference / ours, 3)
    record: dict[str, Any] = {
        "name": name,
        "ours": round(ours, 3),
        "reference": None if reference is None else round(reference, 3),
        "unit": unit,
        "ratio": ratio,
        "params": params,
    }
    if unit == "ms":
        record["ours_ms"], record["reference_ms"] = record["ours"], record["reference"]
    record.update({k: (_round(v) if isinstance(v, float) else v) for k, v in extra.items()})
    print(json.dumps(record), flush=True)
    sys.stdout.flush()
    return record


def _round(value: float) -> float:
    """3 decimals, but 4 significant digits for small values (differences like 1.8e-06 stay visible)."""
    return round(value, 3) if abs(value) >= 1 else float(f"{value:.4g}")


def dataset_path(name: str, quick: bool) -> Path:
    """A real dataset: the whole one in ``$FCOS_SHARED_DATA`` or ``../shared/data`` beside the checkout;
    ``--quick`` runs (a smoke check, no figures) fall back to the subset vendored under tests/assets."""
    shared = Path(os.environ.get("FCOS_SHARED_DATA", REPO.parent / "shared" / "data")) / name
    if shared.is_dir():
        return shared
    if quick:
        return REPO / "tests" / "assets" / name
    raise FileNotFoundError(
        f"the whole {name} dataset was not found at {shared}: this benchmark measures on the full dataset "
        "(set FCOS_SHARED_DATA to the folder holding it; only --quick runs use the subset in tests/assets)"
    )

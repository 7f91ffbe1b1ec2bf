"""``fcos benchmark``: one table for the user's own model, like ultralytics' benchmark mode: every
deployment format x precision with its file size, latency (ms, batch 1, one image at the model's input
size, host pre/post-processing included) and COCO AP on a dataset split, each row measured by the code
the user would run (:class:`fcos.predict.Predictor`, :func:`fcos.evaluation.evaluate`).

Rows are ``format/precision`` (:func:`default_rows`, from :data:`fcos.export.FORMATS`): ``torch/fp32``
(the checkpoint itself), ``onnx/fp32``, ``onnx/int8``, ``openvino/fp32``, ``openvino/int8``. int8 is
calibrated on ``calib_images`` training images of the same dataset; a format that converts another's
files (OpenVINO: ONNX) converts that row's file when it was measured too (one calibration, the same graph). A row whose runtime is not installed is reported as such, not dropped.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fcos.data import load_annotations, load_image, remap_classes
from fcos.evaluation.evaluator import evaluate
from fcos.export import (
    DEFAULT_CALIB_IMAGES,
    FORMATS,
    Calibration,
    MissingExtraError,
    export,
    format_for,
    input_shape,
)
from fcos.predict.options import InferenceOptions
from fcos.predict.predictor import Predictor
from fcos.utils.files import write_json
from fcos.utils.flags import SettingError

__all__ = ["default_rows", "format_table", "run_benchmark"]

def default_rows() -> tuple[str, ...]:
    """``torch/fp32`` (the checkpoint itself), then every export format in each of its precisions."""
    return ("torch/fp32", *(f"{name}/{p}" for name, fmt in FORMATS.items() for p in fmt.precisions))


def _parse(row: str) -> tuple[str, str]:
    fmt, _, precision = row.partition("/")
    precision = precision or "fp32"
    if f"{fmt}/{precision}" not in default_rows():
        raise SettingError(f"unknown benchmark row {row!r}; choose from {', '.join(default_rows())}")
    return fmt, precision


def _export_row(weights: str | Path, fmt: str, precision: str, out: Path, done: dict[tuple[str, str], Path],
                img_size: Sequence[int] | None, calibration: Calibration, conv3x3: str) -> Path:
    if fmt == "torch":
        return Path(weights)
    path = out / f"model_{precision}{FORMATS[fmt].suffix}"
    source = (FORMATS[fmt].converts, precision)
    if source in done:
        return export(done[source], path, fmt)  # the same graph, one calibration
    if precision == "int8":
        return export(weights, path, fmt, img_size=img_size, int8=calibration)
    return export(weights, path, fmt, img_size=img_size, conv3x3=conv3x3)


def _latency_ms(predictor: Predictor, image: torch.Tensor, runs: int) -> float:
    for _ in range(2):
        predictor(image)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor(image)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _size_mb(path: Path) -> float | None:
    fmt = format_for(path)
    files = fmt.files(path) if fmt is not None else [path]
    return sum(f.stat().st_size for f in files) / 1e6 if path.is_file() else None


def run_benchmark(
    weights: str | Path,
    data: str | Path,
    out: str | Path = "runs/benchmark",
    *,
    rows: Sequence[str] | None = None,
    split: str = "val",
    img_size: Sequence[int] | None = None,
    calib_images: int | None = None,
    calib_split: str = "train",
    runs: int = 20,
    threads: int | None = None,
    conv3x3: str = "auto",
    options: InferenceOptions | None = None,
) -> list[dict[str, Any]]:
    """Export ``weights`` to each row's format and precision under ``out``, then measure each: file size,
    median latency of ``runs`` calls on one image at the model's input size, COCO metrics on ``split``.
    Prints the table, writes ``out/benchmark.json`` and ``out/benchmark.csv``; returns the rows.
    ``img_size`` and ``conv3x3`` (fp32 rows) are :func:`fcos.export.export`'s; ``options``: slicing and
    test-time augmentation of every row (latency then on the first image at its own size)."""
    parsed = [_parse(r) for r in rows or default_rows()]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or torch.get_num_threads()
    calibration = Calibration(data, calib_images or DEFAULT_CALIB_IMAGES, calib_split)
    done: dict[tuple[str, str], Path] = {}
    results: list[dict[str, Any]] = []
    val = image = None
    for fmt, precision in parsed:
        row: dict[str, Any] = {"format": fmt, "precision": precision, "file": None, "size_mb": None,
                               "latency_ms": None, "AP": None, "AP50": None, "note": ""}
        results.append(row)
        try:
            path = _export_row(weights, fmt, precision, out, done, img_size, calibration, conv3x3)
        except MissingExtraError as exc:
            row["note"] = f"skipped: {exc}"
            continue
        done[(fmt, precision)] = path
        predictor = Predictor(path, num_threads=threads, options=options)
        if val is None:  # the class order of the first model (all rows share it)
            val = remap_classes(load_annotations(data, split), predictor.class_names)
            image = load_image(val.records[0])
            if predictor.plain:  # one image at the model's input size: the network and its host side
                shape = input_shape(image.shape[-2], image.shape[-1], predictor.input_config, predictor.img_size)
                image = F.interpolate(image[None], size=shape, mode="bilinear", align_corners=False)[0]
        metrics = evaluate(predictor.as_detector(), val, batch_size=1, workers=0)
        row.update(file=str(path), size_mb=_size_mb(path), latency_ms=_latency_ms(predictor, image, runs),
                   AP=metrics["AP"], AP50=metrics["AP50"])
    conditions = {"threads": threads, "image": None if image is None else list(image.shape[-2:]),
                  "views": (options or InferenceOptions()).describe(),
                  "split": split, "images": 0 if val is None else len(val), "runs": runs,
                  "calibration": calibration.describe()}
    print(format_table(results, conditions))
    write_json(out / "benchmark.json", {"conditions": conditions, "rows": results})
    with (out / "benchmark.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    return results


def format_table(rows: Sequence[dict[str, Any]], conditions: dict[str, Any]) -> str:
    """The rows as a Markdown table (AP difference against the first measured row), conditions above it."""
    base = next((r["AP"] for r in rows if r["AP"] is not None), None)
    lines = [f"benchmark: batch 1, {conditions['threads']} threads, image {conditions['image']} "
             f"({conditions.get('views', 'whole image')}), median of {conditions['runs']} runs; AP on "
             f"{conditions['images']} images of split {conditions['split']!r}",
             "", "| format | precision | size (MB) | latency (ms) | AP | AP50 | AP change |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["AP"] is None:
            lines.append(f"| {r['format']} | {r['precision']} | - | - | - | - | {r['note']} |")
            continue
        change = "" if base is None else f"{r['AP'] - base:+.4f}"
        lines.append(f"| {r['format']} | {r['precision']} | {r['size_mb']:.1f} | {r['latency_ms']:.1f} | "
                     f"{r['AP']:.4f} | {r['AP50']:.4f} | {change} |")
    return "\n".join(lines)

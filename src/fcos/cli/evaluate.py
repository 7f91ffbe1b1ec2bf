"""``fcos eval``: COCO metrics of a checkpoint, pretrained name or exported model on a dataset split,
whole-image, sliced or with test-time augmentation (``--compare``: the whole image and the mode asked
side by side, with the time per image of each), and the PR curves, confusion matrix and per-class table."""

from __future__ import annotations

import argparse
import dataclasses
import time

from fcos.cli.common import (
    Command,
    add_inference_flags,
    add_runtime_flags,
    build_predictor,
    fraction,
    non_negative_int,
    positive_int,
)

__all__ = ["EVAL"]


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml: its COCO AP as deployed) or a pretrained name")
    p.add_argument("--data", required=True, help="dataset directory or data YAML")
    p.add_argument("--split", default="val")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--out", default="runs/eval",
                   help="folder for pr_curves.png, confusion_matrix.png, per_class.csv and per_class.json")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the PR curves, confusion matrix and per-class table (--no-plots: metrics only)")
    p.add_argument("--matrix-conf", type=fraction, default=None, metavar="X",
                   help="confusion matrix: minimum detection score (default 0.25)")
    p.add_argument("--matrix-iou", type=fraction, default=None, metavar="X",
                   help="confusion matrix: minimum IoU of a detection and the box it finds (default 0.5)")
    p.add_argument("--compare", action="store_true",
                   help="evaluate the whole image and the mode the inference flags ask for side by side, with the "
                        "time per image of each")
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per forward pass of a whole-image checkpoint")
    p.add_argument("--workers", type=non_negative_int, default=2)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_runtime_flags(p)
    add_inference_flags(p)


def _eval(args: argparse.Namespace) -> int:
    import json

    from fcos.data import load_annotations, remap_classes
    from fcos.evaluation import METRIC_NAMES, run_evaluation
    from fcos.utils.files import write_text

    predictor = build_predictor(args)
    device, options = predictor.device, predictor.options
    data = remap_classes(load_annotations(args.data, args.split), predictor.class_names)
    print(f"{len(data)} images, {data.report.boxes} boxes, {data.num_classes} classes")
    modes = [predictor]
    if args.compare and predictor.plain:  # the mode asked for is the whole image: one row, said so
        print("--compare: the model predicts the whole image at these settings (no tiles, no TTA): one mode to "
              "evaluate; add --slice SIZE or --tta to compare")
    elif args.compare:
        modes = [predictor.with_options(dataclasses.replace(options, slice="none", tta=False)), predictor]
    results = []
    for mode in modes:
        # A whole-image checkpoint evaluates in batches; exported, sliced or augmented: each image by its views.
        model = mode.model if mode.plain and mode.backend == "torch" else mode.as_detector()
        start = time.perf_counter()
        result = run_evaluation(model, data, batch_size=args.batch_size, workers=args.workers, device=device,
                                amp_dtype=mode.dtype if mode.plain and mode.backend == "torch" else None,
                                progress=args.progress)
        ms = (time.perf_counter() - start) * 1000 / max(1, len(data))
        results.append((mode.options.describe(mode.tile), result, ms))
    if len(results) > 1:
        print(f"  {'mode':56s} " + " ".join(f"{n:>6s}" for n in METRIC_NAMES[:6]) + "  ms/image")
        for name, result, ms in results:
            print(f"  {name:56s} " + " ".join(f"{result.metrics[n]:6.4f}" for n in METRIC_NAMES[:6]) + f"  {ms:8.1f}")
    name, result, ms = results[-1]
    metrics = result.metrics
    print(f"  {name}: {ms:.1f} ms per image")
    for metric in METRIC_NAMES[:6]:
        print(f"  {metric:5s} {metrics[metric]:.4f}")
    width = max(len(n) for n in metrics["per_class"])
    print("  per-class AP (IoU .50:.95)")
    for class_name, ap in metrics["per_class"].items():
        print(f"    {class_name:{width}s} {ap:.4f}")
    if args.json:
        doc = {n: {**r.metrics, "ms_per_image": t} for n, r, t in results} if args.compare else metrics
        write_text(args.json, json.dumps(doc, indent=2))
    if args.plots:
        from fcos.evaluation.diagnostics import MATRIX_CONF, MATRIX_IOU, write_diagnostics

        conf = MATRIX_CONF if args.matrix_conf is None else args.matrix_conf
        iou = MATRIX_IOU if args.matrix_iou is None else args.matrix_iou
        written = write_diagnostics(result, data, args.out, conf=conf, iou=iou)
        print(f"wrote {', '.join(p.name for p in written)} to {args.out}")
    return 0


EVAL = Command("COCO evaluation (faster-coco-eval / pycocotools) of a checkpoint on a dataset split", _eval_args, _eval)

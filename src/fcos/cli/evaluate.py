"""``fcos eval``: COCO metrics of a checkpoint, pretrained name or exported model on a dataset split,
with the PR curves, confusion matrix and per-class table."""

from __future__ import annotations

import argparse

from fcos.cli.common import DEVICE_HELP, Command, announce_device, predictor_device

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
    p.add_argument("--matrix-conf", type=float, default=None, metavar="X",
                   help="confusion matrix: minimum detection score (default 0.25)")
    p.add_argument("--matrix-iou", type=float, default=None, metavar="X",
                   help="confusion matrix: minimum IoU of a detection and the box it finds (default 0.5)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _eval(args: argparse.Namespace) -> int:
    import json

    from fcos.data import load_annotations, remap_classes
    from fcos.evaluation import METRIC_NAMES, run_evaluation
    from fcos.export import format_for
    from fcos.utils.files import write_text
    from fcos.weights import load_weights

    if format_for(args.weights):  # an exported model: the same evaluation through its Predictor
        from fcos.predict import Predictor

        device = predictor_device(args)
        predictor = Predictor(args.weights, device=device)
        model, class_names = predictor.as_detector(), predictor.class_names
    else:
        device = announce_device(args.device)
        model, state = load_weights(args.weights, device)
        class_names = state["class_names"]
    data = remap_classes(load_annotations(args.data, args.split), class_names)
    result = run_evaluation(model, data, batch_size=args.batch_size, workers=args.workers, device=device)
    metrics = result.metrics
    print(f"{len(data)} images, {data.report.boxes} boxes, {data.num_classes} classes")
    for name in METRIC_NAMES[:6]:
        print(f"  {name:5s} {metrics[name]:.4f}")
    width = max(len(n) for n in metrics["per_class"])
    print("  per-class AP (IoU .50:.95)")
    for name, ap in metrics["per_class"].items():
        print(f"    {name:{width}s} {ap:.4f}")
    if args.json:
        write_text(args.json, json.dumps(metrics, indent=2))
    if args.plots:
        from fcos.evaluation.diagnostics import MATRIX_CONF, MATRIX_IOU, write_diagnostics

        conf = MATRIX_CONF if args.matrix_conf is None else args.matrix_conf
        iou = MATRIX_IOU if args.matrix_iou is None else args.matrix_iou
        written = write_diagnostics(result, data, args.out, conf=conf, iou=iou)
        print(f"wrote {', '.join(p.name for p in written)} to {args.out}")
    return 0


EVAL = Command("COCO evaluation (faster-coco-eval / pycocotools) of a checkpoint on a dataset split", _eval_args, _eval)

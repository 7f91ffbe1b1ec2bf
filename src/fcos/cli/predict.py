"""``fcos predict``: detections on images, folders, glob patterns and videos."""

from __future__ import annotations

import argparse

from fcos.cli.common import (
    Command,
    add_inference_flags,
    add_runtime_flags,
    build_predictor,
    fraction,
    positive_int,
)

__all__ = ["PREDICT"]


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml) or a pretrained name")
    p.add_argument("--source", required=True,
                   help="an image, a video, a folder of them, or a glob pattern (quoted: 'photos/**/*.jpg')")
    p.add_argument("--out", default="runs/predict", help="output folder: drawn images and videos, predictions.json")
    p.add_argument("--conf", type=fraction, default=0.3, help="minimum score of reported detections")
    add_runtime_flags(p)
    p.add_argument("--recursive", action="store_true", help="a folder source: its subfolders too (outputs mirror them)")
    p.add_argument("--save-txt", action="store_true",
                   help="YOLO labels in OUT/labels/: class cx cy w h score per line, normalised")
    p.add_argument("--save-crops", action="store_true", help="each detection's crop in OUT/crops/<class>/")
    p.add_argument("--hide-labels", action="store_true", help="draw boxes without class tags")
    p.add_argument("--hide-conf", action="store_true", help="tags without scores")
    p.add_argument("--line-width", type=positive_int, metavar="N", help="box line width in px (default: from the image size)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_inference_flags(p)


def _predict(args: argparse.Namespace) -> int:
    from fcos.predict import predict_source

    predictor = build_predictor(args)
    out = predict_source(predictor, args.source, args.out, conf=args.conf, recursive=args.recursive,
                         save_txt=args.save_txt, save_crops=args.save_crops, line_width=args.line_width,
                         show_labels=not args.hide_labels, show_conf=not args.hide_conf, progress=args.progress)
    print(f"wrote {out / 'predictions.json'} and drawn images to {out}")
    return 0


PREDICT = Command("detect objects in images, folders, glob patterns or videos; write drawn images and videos, "
                  "COCO-format JSON, optionally YOLO labels and crops", _predict_args, _predict)

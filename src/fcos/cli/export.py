"""``fcos export`` (a checkpoint to each format of :data:`fcos.export.FORMATS`, fp32 or int8) and
``fcos benchmark`` (every format x precision: size, latency, AP)."""

from __future__ import annotations

import argparse

from fcos.cli.common import Command, add_inference_flags, inference_options, number, positive_int

__all__ = ["BENCHMARK", "EXPORT"]


def _export_args(p: argparse.ArgumentParser) -> None:
    from fcos.config import CONV3X3_ALGORITHMS
    from fcos.export import FORMATS
    from fcos.export.onnx import OPSETS

    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt) or a pretrained name (fcos models)")
    p.add_argument("--format", choices=tuple(FORMATS), default="onnx",
                   help="; ".join(f"{f.name}: {f.suffix}{''.join(' + ' + s for s in f.sidecars)} ({f.runtime})"
                                  for f in FORMATS.values()))
    p.add_argument("--out", default=None, help="file to write (default: model + the format's suffix)")
    p.add_argument("--img-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="fixed input size (multiples of 32; fp32 graphs then get Winograd convolutions, faster on "
                        "CPUs: --conv3x3); default: dynamic height and width")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch axis (default: batch 1)")
    p.add_argument("--nms", action=argparse.BooleanOptionalAction, default=True,
                   help="class-aware NMS inside the graph (--no-nms: output candidates for the caller's NMS)")
    p.add_argument("--opset", type=number(int, OPSETS), default=None, help="ONNX opset (default: fcos.export.DEFAULT_OPSET, 17)")
    p.add_argument("--conv3x3", choices=CONV3X3_ALGORITHMS, default="auto",
                   help="3x3 convolutions in the graph (head, FPN outputs, ResNet blocks of >= 256 channels): "
                        "auto = Winograd operators on maps of >= 32x32 points of a fixed-size (--img-size) fp32 "
                        "export (faster on CPU runtimes); direct = plain Conv nodes (for GPU runtimes); "
                        "winograd = on every level")
    g = p.add_argument_group("int8 (static post-training quantization)")
    g.add_argument("--int8", action="store_true", help="quantize the network to int8, calibrated on --calib-data")
    g.add_argument("--calib-data", help="dataset whose training images calibrate int8 (any layout fcos reads)")
    g.add_argument("--calib-images", type=positive_int, default=None, help="calibration images (default: fcos.export.DEFAULT_CALIB_IMAGES, 32)")
    g.add_argument("--calib-split", default="train", help="split of --calib-data to calibrate on")
    g.add_argument("--seed", type=int, default=0, help="picks the calibration images (same seed, same int8 model)")


def _calibration(args: argparse.Namespace):
    """The int8 calibration the flags ask for, None for fp32; calibration flags without --int8 are an error."""
    from fcos.export import DEFAULT_CALIB_IMAGES, Calibration

    if not args.int8:
        if args.calib_data or args.calib_images is not None:
            raise SystemExit("error: --calib-data / --calib-images calibrate int8: add --int8")
        return None
    if not args.int8 or not args.calib_data:
        raise SystemExit("error: --int8 needs --calib-data DATA (training images that set the int8 ranges)")
    return Calibration(args.calib_data, args.calib_images or DEFAULT_CALIB_IMAGES, args.calib_split, args.seed)


def _export(args: argparse.Namespace) -> int:
    from fcos.export import DEFAULT_OPSET, FORMATS, export

    fmt = FORMATS[args.format]
    out = args.out or "model" + fmt.suffix
    path = export(args.weights, out, args.format, img_size=args.img_size, dynamic=args.dynamic, nms=args.nms,
                  opset=args.opset or DEFAULT_OPSET, int8=_calibration(args), conv3x3=args.conv3x3)
    print(f"wrote {' and '.join(str(f) for f in fmt.files(path))}")
    return 0


def _benchmark_args(p: argparse.ArgumentParser) -> None:
    from fcos.config import CONV3X3_ALGORITHMS
    from fcos.predict.benchmark import default_rows

    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt) or a pretrained name")
    p.add_argument("--data", required=True, help="dataset: AP on --split, int8 calibration on --calib-split")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="runs/benchmark", help="folder for the exported files and benchmark.json / .csv")
    p.add_argument("--formats", nargs="+", default=list(default_rows()), metavar="FORMAT/PRECISION",
                   help=f"rows to measure (default: {' '.join(default_rows())})")
    p.add_argument("--img-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="fixed export input size (default: dynamic, as fcos export)")
    p.add_argument("--conv3x3", choices=CONV3X3_ALGORITHMS, default="auto",
                   help="3x3 convolutions of the fp32 graphs, as fcos export --conv3x3")
    p.add_argument("--calib-images", type=positive_int, default=None, help="int8 calibration images (default 32)")
    p.add_argument("--calib-split", default="train")
    p.add_argument("--runs", type=positive_int, default=20, help="timed runs per row (median reported)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: PyTorch's)")
    add_inference_flags(p)


def _benchmark(args: argparse.Namespace) -> int:
    from fcos.predict.benchmark import run_benchmark

    run_benchmark(args.weights, args.data, args.out, rows=args.formats, split=args.split, img_size=args.img_size,
                  calib_images=args.calib_images, calib_split=args.calib_split, runs=args.runs, threads=args.threads,
                  conv3x3=args.conv3x3, options=inference_options(args))
    return 0


EXPORT = Command("export a checkpoint to ONNX or OpenVINO (network + decoding + NMS), fp32 or int8", _export_args,
                 _export)
BENCHMARK = Command("export to every format and precision; table of file size, latency and COCO AP", _benchmark_args,
                    _benchmark)

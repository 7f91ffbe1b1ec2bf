"""Command line: ``fcos <command>``. Each command parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

# name -> (help, add_arguments, run); commands register themselves in their own modules' functions below.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, add_arguments, run)
        return run

    return register


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder")


@command("demo", "run the main job end to end on built-in data", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    from fcos.demo import run_demo

    run_demo(args.out)
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")


@command("bench", "run benchmarks (JSON lines, ours vs torchvision measured in the same run)", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    from fcos.bench import run_benchmarks

    run_benchmarks(args.names or None, quick=args.quick)
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt) or exported model (.onnx)")
    p.add_argument("--source", required=True, help="an image file or a directory of images")
    p.add_argument("--out", default="runs/predict", help="output folder: drawn images + predictions.json")
    p.add_argument("--conf", type=float, default=0.3, help="minimum score of reported detections")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default=None, help="default: by the weights suffix")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


@command("predict", "detect objects in an image or a folder; write drawn images and COCO-format JSON", _predict_args)
def _predict(args: argparse.Namespace) -> int:
    from fcos.predict import Predictor, predict_source

    predictor = Predictor(args.weights, device=args.device, backend=args.backend)
    out = predict_source(predictor, args.source, args.out, conf=args.conf)
    print(f"wrote {out / 'predictions.json'} and drawn images to {out}")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt)")
    p.add_argument("--out", default="model.onnx", help="ONNX file to write")
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="fixed input size (multiples of 32); default: dynamic height and width")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch axis (default: batch 1)")
    p.add_argument("--nms", action=argparse.BooleanOptionalAction, default=True,
                   help="class-aware NMS inside the graph (--no-nms: output candidates for the caller's NMS)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: fcos.export.DEFAULT_OPSET, 17)")


@command("export", "export a checkpoint to ONNX (network + decoding + NMS)", _export_args)
def _export(args: argparse.Namespace) -> int:
    from fcos.export import DEFAULT_OPSET, export_onnx

    out = export_onnx(args.weights, args.out, img_size=args.img_size, dynamic=args.dynamic, nms=args.nms,
                      opset=args.opset or DEFAULT_OPSET)
    print(f"wrote {out}")
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt) or exported model (.onnx)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default=None, help="default: by the weights suffix")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload")
    p.add_argument("--max-concurrency", type=int, default=2, help="inferences running at once")


@command("serve", "serve predictions over HTTP with an upload page at /", _serve_args)
def _serve(args: argparse.Namespace) -> int:
    from fcos.serve import serve

    serve(args.weights, host=args.host, port=args.port, backend=args.backend, device=args.device,
          max_upload_mb=args.max_upload_mb, max_concurrency=args.max_concurrency)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``fcos serve``: the prediction web service."""

from __future__ import annotations

import argparse

from fcos.cli.common import DEVICE_HELP, Command, add_inference_flags, inference_options, predictor_device
from fcos.cli.predict import add_backend_flag

__all__ = ["SERVE"]


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml) or a pretrained name")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    add_backend_flag(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload")
    p.add_argument("--max-concurrency", type=int, default=2, help="inferences running at once")
    add_inference_flags(p)


def _serve(args: argparse.Namespace) -> int:
    from fcos.serve import serve

    options = inference_options(args)
    # The service's own pixel limit (40 M) stays unless --max-pixels is given: it faces a network.
    limit = {"max_pixels": options.max_pixels} if hasattr(args, "max_pixels") else {}
    serve(args.weights, host=args.host, port=args.port, backend=args.backend, device=predictor_device(args),
          max_upload_mb=args.max_upload_mb, max_concurrency=args.max_concurrency, options=options, **limit)
    return 0


SERVE = Command("serve predictions over HTTP with an upload page at /", _serve_args, _serve)

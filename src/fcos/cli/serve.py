"""``fcos serve``: the prediction web service."""

from __future__ import annotations

import argparse
import sys

from fcos.cli.common import (
    Command,
    add_config_flags,
    add_inference_flags,
    add_runtime_flags,
    config_values,
    inference_options,
    predictor_device,
)

__all__ = ["SERVE"]


def _serve_args(p: argparse.ArgumentParser) -> None:
    from fcos.serve.config import API_KEY_ENV, SERVICE, ServeConfig

    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml) or a pretrained name")
    add_runtime_flags(p)
    service = p.add_argument_group(SERVICE)
    add_config_flags({SERVICE: service}, ServeConfig)
    service.add_argument("--api-key-file", metavar="PATH",
                         help=f"require 'Authorization: Bearer KEY' with the key in this file (or in ${API_KEY_ENV})")
    service.add_argument("--api-key", metavar="KEY",
                         help="the key itself (visible to other users in the process list: prefer --api-key-file)")
    add_inference_flags(p)


def _serve(args: argparse.Namespace) -> int:
    from fcos.serve import ServeConfig, ServeConfigError, read_api_key, serve

    options = inference_options(args)
    # The service's own pixel limit (40 M) stays unless --max-pixels is given: it faces a network.
    limit = {"max_pixels": options.max_pixels} if hasattr(args, "max_pixels") else {}
    try:
        api_key, _ = read_api_key(args.api_key, args.api_key_file)
        given = {k: v for k, v in config_values(args, ServeConfig).items() if k != "api_key"}  # the flag's, raw
        config = ServeConfig(**given, **limit, api_key=api_key)
        serve(args.weights, config=config, backend=args.backend, device=predictor_device(args), options=options)
    except ServeConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


SERVE = Command("serve predictions over HTTP with an upload page at /", _serve_args, _serve)

"""``fcos models``: the pretrained names for ``--weights`` and the backbones, with the files they need."""

from __future__ import annotations

import argparse

from fcos.cli.common import Command

__all__ = ["MODELS"]


def _models(args: argparse.Namespace) -> int:
    from fcos.weights import describe_models

    print(describe_models())
    return 0


MODELS = Command("list the pretrained names for --weights and the backbones, with the files they need",
                 lambda p: None, _models)

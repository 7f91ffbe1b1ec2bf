"""``torch.compile`` of the detector's tensor work: what is compiled, with which settings, at which sizes.

The detector compiles two pure tensor functions, not its whole ``forward``: the network (backbone -> fpn
-> head) for inference, and network + points + assignment + losses for training. Both trace without a
graph break (``tests/model/test_compiled.py`` checks it with ``torch._dynamo.explain``). Outside them stay
the per-image host work (resizing into a padded batch, mapping boxes back) and decoding, whose output
sizes depend on the scores (``nonzero``, NMS): compiling those would only add graph breaks.

Input sizes are bucketed: with compilation on, a batch is zero-padded at the bottom/right to a multiple of
``bucket`` px (on top of ``size_divisible``), so multi-scale training and per-image sizes meet a few
shapes; dynamo's automatic dynamic shapes (``dynamic=None``) then compile one shape-generic graph after the
second shape instead of one per shape. Extra padding changes features near the right/bottom edge the way
any batch padding does (torchvision pads a batch to its largest image).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CompileOptions", "bucket_pad", "compiled"]

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class CompileOptions:
    """How :meth:`fcos.FCOS.compile` compiles.

    ``mode``: torch.compile's (``reduce-overhead`` = CUDA graphs: only worth it on a GPU at fixed sizes,
    :func:`default_mode` picks it there). ``dynamic``: torch.compile's (None: static first, shape-generic
    after a second shape). ``bucket``: pad input height and width up to a multiple of this (px; 0: off).
    ``backend``: inductor, or e.g. "eager"/"aot_eager" for debugging.
    """

    mode: CompileMode = "default"
    dynamic: bool | None = None
    bucket: int = 128
    backend: Any = "inductor"  # a name, or a backend callable (tests count compilations with one)

    def __post_init__(self) -> None:
        if self.bucket < 0:
            raise ValueError(f"bucket must be >= 0 px, got {self.bucket}")


def default_mode(device: torch.device | str, fixed_size: bool) -> CompileMode:
    """CUDA graphs (``reduce-overhead``) for inference on a GPU at one input size; ``default`` elsewhere
    (CUDA graphs record one graph per shape and copy the inputs in: on the CPU there is nothing to win)."""
    return "reduce-overhead" if torch.device(device).type == "cuda" and fixed_size else "default"


def bucket_pad(tensor: Tensor, bucket: int) -> Tensor:
    """[B, C, H, W] zero-padded at the bottom/right to multiples of ``bucket`` (unchanged if already)."""
    if bucket <= 0:
        return tensor
    h, w = tensor.shape[-2:]
    ph, pw = -h % bucket, -w % bucket
    if ph == 0 and pw == 0:
        return tensor
    padded = F.pad(tensor, (0, pw, 0, ph))
    if tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        padded = padded.contiguous(memory_format=torch.channels_last)
    return padded


@functools.cache
def compiled(fn: Callable[..., Any], options: CompileOptions) -> Callable[..., Any]:
    """``torch.compile(fn)`` with ``options``, one per (function, options): models share it (a deep copy,
    e.g. the EMA's, reuses it; dynamo guards on the module it is given)."""
    kwargs: dict[str, Any] = {"dynamic": options.dynamic, "backend": options.backend}
    if options.backend == "inductor":
        kwargs["mode"] = options.mode
    return torch.compile(fn, **kwargs)

"""``torch.compile`` of the detector's tensor work: what is compiled, with which settings, at which sizes.

The detector compiles two pure tensor functions, not its whole ``forward``: the network (backbone -> fpn
-> head) for inference, and network + points + assignment + losses for training. Both trace without a
graph break (``tests/model/test_compiled.py`` checks it with ``torch._dynamo.explain``). Outside them stay
the per-image host work (resizing into a padded batch, mapping boxes back) and decoding, whose output
sizes depend on the scores (``nonzero``, NMS): compiling those would only add graph breaks.

Input sizes are bucketed: with compilation on, each side of a batch is zero-padded at the bottom/right to
the next of ``buckets`` sizes per octave (multiples of 2^(k-3) px between 2^k and 2^(k+1) for the default
8: at most 12.5% more pixels per side), so multi-scale training and per-image sizes meet a few shapes.
The step grows with the size: a fixed step of 128 px padded the demo's 160 px batches to 256 px and made
the compiled training step 2.2x slower than eager (docs/performance.md). Dynamo's automatic dynamic
shapes (``dynamic=None``) then compile one shape-generic graph after the second shape instead of one per
shape. Extra padding changes features near the right/bottom edge the way
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

__all__ = ["CompileOptions", "bucket_pad", "bucket_size", "compiled"]

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class CompileOptions:
    """How :meth:`fcos.FCOS.compile` compiles.

    ``mode``: torch.compile's (``reduce-overhead`` = CUDA graphs: only worth it on a GPU at fixed sizes,
    :func:`default_mode` picks it there). ``dynamic``: torch.compile's (None: static first, shape-generic
    after a second shape). ``buckets``: input sizes per octave that height and width are padded up to
    (0: off; :func:`bucket_pad`).
    ``backend``: inductor, or e.g. "eager"/"aot_eager" for debugging.
    """

    mode: CompileMode = "default"
    dynamic: bool | None = None
    buckets: int = 8
    backend: Any = "inductor"  # a name, or a backend callable (tests count compilations with one)

    def __post_init__(self) -> None:
        if self.buckets < 0:
            raise ValueError(f"buckets must be >= 0, got {self.buckets}")


def default_mode(device: torch.device | str, fixed_size: bool) -> CompileMode:
    """CUDA graphs (``reduce-overhead``) for inference on a GPU at one input size; ``default`` elsewhere
    (CUDA graphs record one graph per shape and copy the inputs in: on the CPU there is nothing to win)."""
    return "reduce-overhead" if torch.device(device).type == "cuda" and fixed_size else "default"


def bucket_size(side: int, buckets: int) -> int:
    """The smallest of ``buckets`` sizes per octave that holds ``side``: a multiple of
    2^k / buckets for 2^k <= side < 2^(k+1) (``buckets`` a power of two; 0: ``side``)."""
    if buckets <= 0 or side <= buckets:
        return side
    step = max(1, (1 << (side.bit_length() - 1)) // buckets)
    return -(-side // step) * step


def bucket_pad(tensor: Tensor, buckets: int) -> Tensor:
    """[B, C, H, W] zero-padded at the bottom/right to :func:`bucket_size` (unchanged if already)."""
    h, w = tensor.shape[-2:]
    ph, pw = bucket_size(h, buckets) - h, bucket_size(w, buckets) - w
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

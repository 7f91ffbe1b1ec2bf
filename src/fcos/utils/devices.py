"""The one device resolver: every command's ``--device`` (default ``auto``) goes through :func:`resolve_device`.

``auto`` picks CUDA if a CUDA device is available, then Apple's MPS, then the CPU; an explicit device
that is not there is a :class:`DeviceError` naming what is, never a traceback from deep inside torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["DEVICE_KINDS", "DeviceError", "autocast_dtype", "cpu_has_native_bf16", "cuda_has_native_bf16", "describe_device", "half_dtype",
           "resolve_device"]

DEVICE_KINDS = ("cuda", "mps", "cpu")  # auto's order of preference


class DeviceError(ValueError):
    """A device that does not exist on this machine, or a name torch does not know."""


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _available(kind: str) -> bool:
    return {"cuda": torch.cuda.is_available, "mps": _mps_available}.get(kind, lambda: kind == "cpu")()


def resolve_device(name: str | torch.device = "auto", *, kinds: Sequence[str] = DEVICE_KINDS) -> torch.device:
    """``auto`` -> the first available of ``kinds`` (CUDA, MPS, CPU); anything else is checked and returned.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (or a ``torch.device``).
        kinds: the device types the caller can run on, in order of preference (an ONNX Runtime session
            without CUDA: ``("cpu",)``). ``auto`` picks among them; an explicit other type is an error.

    Raises:
        DeviceError: unknown name, a device type the caller cannot use, or a device not present.
    """
    if isinstance(name, torch.device):
        device = name
    elif name.strip().lower() == "auto":
        return torch.device(next((k for k in kinds if _available(k)), "cpu"))
    else:
        try:
            device = torch.device(name.strip().lower())
        except RuntimeError:
            raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in kinds:
        raise DeviceError(f"device {name!r} cannot run this (usable here: {', '.join(kinds)}); use --device auto")
    if not _available(device.type):
        raise DeviceError(f"device {name!r} is not available on this machine ({_found()}); use --device auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _found() -> str:
    cuda = f"CUDA devices: {torch.cuda.device_count()}" if torch.cuda.is_available() else (
        "no CUDA device" + ("" if torch.version.cuda else f": torch {torch.__version__} is built without CUDA"))
    return cuda + (", MPS available" if _mps_available() else "")


def describe_device(device: torch.device) -> str:
    """One line for the start of a command: ``cuda:0 (NVIDIA H200, 140 GiB)``, ``cpu (16 threads)``."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads of {os.cpu_count()} cores)"
    return str(device)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: AVX512-BF16 or AMX on x86, the BF16 extension on Arm.

    Without it oneDNN emulates bf16 and autocast is far slower than fp32 (a ResNet-18 FCOS training
    update on an AVX2 AMD EPYC: 13x slower), so mixed precision there would only cost time.
    """
    if torch.cpu._is_avx2_supported():  # x86: the instructions that make bf16 fast
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: torch.device, amp: bool) -> tuple[torch.dtype | None, str]:
    """What ``--amp`` means on ``device``: the autocast dtype (None: fp32) and a line saying why.

    CUDA: bf16 on GPUs with native bf16 (compute capability 8.0+: A100, H100, L4, RTX 30xx and later), where
    it needs no GradScaler (fp32's exponent range), else fp16 with a GradScaler; MPS: bf16; CPU: bf16 where
    the CPU computes it natively (:func:`cpu_has_native_bf16`), else fp32, said once rather than training
    several times slower.
    """
    if not amp:
        return None, "precision: fp32"
    if device.type == "cuda":
        if cuda_has_native_bf16(device):
            return torch.bfloat16, "precision: bf16 autocast (--amp; native on this GPU, no GradScaler needed)"
        return torch.float16, "precision: fp16 autocast with a GradScaler (--amp; this GPU has no native bf16)"
    if device.type == "cpu" and not cpu_has_native_bf16():
        return None, ("precision: fp32: --amp asks for bf16, but this CPU has no native bf16 (AVX512-BF16, AMX "
                      "or Arm BF16), where bf16 autocast runs several times slower than fp32")
    return torch.bfloat16, "precision: bf16 autocast (--amp)"


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bf16 in its tensor cores: compute capability 8.0 or later (Ampere on)."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def half_dtype(device: torch.device | str) -> tuple[torch.dtype | None, str]:
    """What inference's ``--half`` means on ``device``: the autocast dtype (None: fp32) and a line saying so.

    CUDA and MPS: fp16 (inference needs no loss scaling); a CPU with native bf16 (AVX512-BF16, AMX,
    Arm BF16): bf16. A CPU without it would emulate bf16 several times slower than fp32
    (:func:`cpu_has_native_bf16`), so ``--half`` there runs fp32, and the line says why.
    """
    device = torch.device(device)
    if device.type in ("cuda", "mps"):
        return torch.float16, "precision: fp16 autocast (--half)"
    if not cpu_has_native_bf16():
        return None, ("precision: fp32: --half asks for bf16, but this CPU has no native bf16 (AVX512-BF16, AMX or "
                      "Arm BF16), where bf16 runs several times slower than fp32")
    return torch.bfloat16, "precision: bf16 autocast (--half; native on this CPU)"

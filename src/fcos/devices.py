"""The one device resolver: every command's ``--device`` (default ``auto``) goes through :func:`resolve_device`.

``auto`` picks CUDA if a CUDA device is available, then Apple's MPS, then the CPU; an explicit device
that is not there is a :class:`DeviceError` naming what is, never a traceback from deep inside torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["DEVICE_KINDS", "DeviceError", "describe_device", "resolve_device"]

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

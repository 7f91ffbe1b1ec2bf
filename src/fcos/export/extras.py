"""Optional runtimes: import them by name, or fail with one line naming the extra that installs them.

ONNX Runtime (``fcos[onnx]``) and OpenVINO (``fcos[openvino]``) are optional: the core library (training,
evaluation, PyTorch prediction) works without them, and only the commands that need one ask for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

# importable module -> (pip package, the fcos extra that installs it)
EXTRAS = {
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
}


class MissingExtraError(ImportError):
    """An optional runtime is not installed; the message names the extra that installs it."""


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or raise :class:`MissingExtraError`: "<purpose> needs <package>: pip install 'fcos[extra]'"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = EXTRAS.get(module.split(".")[0], (module, module))
        raise MissingExtraError(
            f"{purpose} needs the optional package {package!r} ({exc}); install it with: pip install 'fcos[{extra}]'"
        ) from None

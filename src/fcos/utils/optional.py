"""Optional dependencies ("extras"): import one by name, or stop with one line naming the extra that
installs it.

The core library (training, evaluation, PyTorch prediction) needs none of them; only the commands that
use one ask for it: ONNX export and ONNX Runtime (``fcos[onnx]``), OpenVINO (``fcos[openvino]``),
TensorBoard (``fcos[tensorboard]``, ``fcos train --tensorboard``), PyAV (``fcos[video]``, videos as
``fcos predict`` sources). ``make setup`` installs them all.
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
    "torch.utils.tensorboard": ("tensorboard", "tensorboard"),
    "av": ("av", "video"),
    "mlflow": ("mlflow-skinny", "mlflow"),
    "wandb": ("wandb", "wandb"),
    "ensemble_boxes": ("ensemble-boxes", "wbf"),
    "scipy": ("scipy", "track"),
    "trackeval": ("trackeval", "track"),
}


class MissingExtraError(ImportError):
    """An optional package is not installed, e.g. ``"ONNX export needs the optional package 'onnx' (...);
    install it with: pip install 'fcos[onnx]'"``; the CLI prints it as one line."""


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or raise :class:`MissingExtraError` saying ``purpose`` needs its package and extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = EXTRAS.get(module, EXTRAS.get(module.split(".")[0], (module, module)))
        raise MissingExtraError(
            f"{purpose} needs the optional package {package!r} ({exc}); install it with: pip install 'fcos[{extra}]'"
        ) from None

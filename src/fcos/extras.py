"""Optional dependencies ("extras"): import one, or stop with one line naming the extra to install.

``pip install 'fcos[tensorboard]'`` brings TensorBoard (``fcos train --tensorboard``), ``'fcos[video]'``
PyAV (videos as ``fcos predict`` sources); ``make setup`` installs both.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional package is not installed, e.g. ``"--tensorboard needs the 'tensorboard' package: pip
    install 'fcos[tensorboard]'"``; the CLI prints it as one line."""


def require(module: str, *, package: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or raise :class:`MissingExtraError` saying ``purpose`` needs ``package`` from ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the {package!r} package, which is not installed ({exc}): "
            f"pip install 'fcos[{extra}]' (make setup installs it)") from None

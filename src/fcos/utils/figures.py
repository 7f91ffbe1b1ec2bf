"""Matplotlib figures written as PNGs: the one place that loads pyplot (headless, lazily: a heavy import
only plotting needs) and saves a figure atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fcos.utils.files import atomic_write

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> bytes:
    """Render ``fig`` to PNG once, close it, write the bytes atomically to ``path``; returns them. The
    figure is rendered before the file is opened: a failed render leaves no file behind."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        pyplot().close(fig)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return buffer.getvalue()

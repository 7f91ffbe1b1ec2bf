"""Config fields that are command-line flags: :func:`option` (a field with its help text and flag group,
read by the CLI's flag builder) and the text parsers of flags whose values are not plain numbers."""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["option", "parse_fraction", "parse_scale_range", "parse_size_range"]


def option(default: Any, help: str = "", *, group: str, **cli: Any) -> Any:
    """A config field with its help text and CLI group (read by the CLI's flag builder,
    ``fcos.cli.flags.add_config_flags``); extra keys tune the flag (``required``, ``const`` for an
    optional value, ``parse`` and ``metavar`` for a value parsed from text)."""
    return field(default=default, metadata={"help": help, "group": group, **cli})


def parse_size_range(text: str) -> tuple[int, int] | None:
    """``"640-800"`` -> (640, 800); ``"800"`` -> (800, 800); ``"none"`` -> None (the ``--multi-scale`` flag)."""
    low, high = _parse_range(text, int)
    return None if low is None else (int(low), int(high))


def parse_scale_range(text: str) -> tuple[float, float] | None:
    """``"0.5-2.0"`` -> (0.5, 2.0); ``"none"`` -> None (the ``--scale-jitter`` flag)."""
    low, high = _parse_range(text, float)
    return None if low is None else (float(low), float(high))


def parse_fraction(text: str) -> float:
    """A number in [0, 1] (``--mosaic``, ``--min-visible``)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a number in [0, 1], got {text}")
    return value


def _parse_range(text: str, kind: type) -> tuple[Any, Any]:
    if text.strip().lower() == "none":
        return None, None
    parts = text.split("-")
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected LOW-HIGH, e.g. {'640-800' if kind is int else '0.5-2.0'}, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ValueError(f"expected LOW-HIGH with 0 < LOW <= HIGH, got {text!r}")
    return values[0], values[1]



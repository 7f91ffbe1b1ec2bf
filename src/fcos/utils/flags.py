"""Config fields that are command-line flags: :func:`option` (a field with its help text, flag group and
valid range, read by the CLI's flag builder), :func:`check_bounds` (a config's numbers against their
ranges) and the text parsers of flags whose values are not plain numbers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AT_LEAST_1", "FRACTION", "IMAGE_SIDE", "NON_NEGATIVE", "POSITIVE", "Bound", "SettingError", "check_bounds", "option",
           "parse_fraction", "parse_scale_range", "parse_size_range"]


class SettingError(ValueError):
    """A setting (a config field, or an argument of a function that generates or exports) outside what it
    can be, found before any work: the CLI prints it as argparse's kind of error (exit 2), no traceback."""


@dataclass(frozen=True)
class Bound:
    """The interval a number must lie in, e.g. ``Bound(0, 1, high_open=True)`` is [0, 1); None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN compares false with everything: it would pass every bound
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"> {self.low:g}" if self.low_open else f"at least {self.low:g}"
        if self.low is None:
            return f"< {self.high:g}" if self.high_open else f"at most {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def check(self, value: Any, name: str = "") -> Any:
        """``value`` (each element of a tuple) if it lies in the interval, else SettingError naming ``name``."""
        for v in value if isinstance(value, tuple) else (value,):
            if v not in self:
                raise SettingError(f"{name + ' ' if name else ''}must be {self}, got {v:g}")
        return value


POSITIVE, NON_NEGATIVE, AT_LEAST_1, FRACTION = Bound(0, low_open=True), Bound(0), Bound(1), Bound(0, 1)
IMAGE_SIDE = Bound(32)  # px: the smallest input size or tile side a setting may ask for


def option(default: Any, help: str = "", *, group: str, bound: Bound | None = None, **cli: Any) -> Any:
    """A config field with its help text and CLI group (read by the CLI's flag builder,
    ``fcos.cli.common.add_config_flags``); ``bound``: the interval its value (None allowed) must lie in,
    checked by the flag's parser and by :func:`check_bounds`; extra keys tune the flag (``required``,
    ``const`` for an optional value, ``parse`` and ``metavar`` for a value parsed from text)."""
    return field(default=default, metadata={"help": help, "group": group, "bound": bound, **cli})


def check_bounds(config: Any) -> None:
    """SettingError naming the first field of the dataclass ``config`` outside its ``bound`` (None passes),
    e.g. ``"TrainConfig.lr must be > 0, got -1"``: called by configs' ``__post_init__``."""
    for f in dataclasses.fields(config):
        value, bound = getattr(config, f.name), f.metadata.get("bound")
        if bound is not None and value is not None:
            bound.check(value, f"{type(config).__name__}.{f.name}")


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



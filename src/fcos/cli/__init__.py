"""Command line: ``fcos <command>``. The commands are one table (:data:`COMMANDS`), each a module of this
package whose function parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fcos.cli import data, evaluate, export, models, predict, serve, track, train
from fcos.cli.common import Command, add_config_flags, config_values

__all__ = ["COMMANDS", "add_config_flags", "build_parser", "config_values", "main"]

COMMANDS: dict[str, Command] = {
    "train": train.TRAIN,
    "eval": evaluate.EVAL,
    "demo": train.DEMO,
    "data": data.DATA,
    "predict": predict.PREDICT,
    "track": track.TRACK,
    "export": export.EXPORT,
    "benchmark": export.BENCHMARK,
    "models": models.MODELS,
    "serve": serve.SERVE,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcos", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fcos.data import DatasetError
    from fcos.data.images import ImageError
    from fcos.export import ExportedModelError
    from fcos.model.backbones import BackboneError
    from fcos.predict import PredictInputError
    from fcos.predict.video import VideoError
    from fcos.track import TrackInputError
    from fcos.utils.devices import DeviceError
    from fcos.utils.files import WriteError
    from fcos.utils.flags import SettingError
    from fcos.utils.optional import MissingExtraError
    from fcos.weights import CheckpointError

    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    try:
        with _one_line_warnings():
            return int(args.run(args) or 0)
    except SettingError as exc:  # a value no flag type could check alone (two flags together, a generator's rule)
        command = " ".join(filter(None, ("fcos", args.command, getattr(args, "data_command", None))))
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    # Problems of the inputs, not bugs: one line, no traceback (WeightsUnavailableError is a FileNotFoundError).
    except (DatasetError, ImageError, CheckpointError, BackboneError, WriteError, DeviceError, FileNotFoundError,
            ExportedModelError, MissingExtraError, VideoError, TrackInputError, PredictInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if type(exc).__name__ not in ("NonFiniteLossError", "TrainingCollapsedError"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """fcos's own warnings (a skipped file, slicing at another scale) as ``warning: <message>`` lines, not
    Python's ``path.py:155: UserWarning: <message>`` followed by a line of fcos's source; others as usual."""
    package = str(Path(__file__).resolve().parents[1])
    default = warnings.formatwarning

    def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 line: str | None = None) -> str:
        if str(Path(filename).resolve()).startswith(package) and issubclass(category, UserWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = default


if __name__ == "__main__":
    sys.exit(main())

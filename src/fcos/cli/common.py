"""What the commands share: flags generated from typed configs (:func:`add_config_flags`), the device
a command runs on, and small argument helpers."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from types import UnionType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin, get_type_hints

from fcos.utils.flags import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Bound, parse_fraction

__all__ = ["DEVICE_HELP", "Command", "add_config_flags", "add_inference_flags", "announce_device", "config_values",
           "drop_flag", "fraction", "inference_options", "non_negative_int", "number", "positive_float", "positive_int",
           "predictor_device"]

DEVICE_HELP = "auto (default: CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps"


class Command(NamedTuple):
    """One ``fcos <command>``: its help line, the function adding its flags, and the function running it
    (returns the exit code)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_config_flags(groups: dict[str, argparse._ArgumentGroup], config_class: type, *,
                     optional: Sequence[str] = ()) -> None:
    """One flag per field of a config dataclass (``--max-iters`` for ``max_iters``) whose group is in
    ``groups``, with the help its ``metadata`` names; type, choices (``Literal``) and ``--x/--no-x``
    (``bool``) follow the annotation, or ``metadata["parse"]`` (text -> value, ValueError when bad) and
    ``metavar`` (with ``metadata["nargs"]``: the words parsed together). Unset flags are absent from the
    namespace: the recipe's default applies. Fields in
    ``optional`` are not required even when their metadata says so (the command checks them itself)."""
    hints = get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if f.metadata.get("group", "options") not in groups:
            continue
        kind, is_optional = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata.get("help")}
        if f.metadata.get("required") and f.name not in optional:
            kwargs["required"] = True
        bound = f.metadata.get("bound")
        if "parse" in f.metadata and "nargs" in f.metadata:  # several words, parsed together
            kwargs.update(nargs=f.metadata["nargs"], action=_ParsedList, parse=_bounded(f.metadata["parse"], bound),
                          metavar=f.metadata.get("metavar"))
        elif "parse" in f.metadata:
            kwargs.update(type=_parser(_bounded(f.metadata["parse"], bound)), metavar=f.metadata.get("metavar"))
        elif kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(kind) is Literal:
            kwargs["choices"] = get_args(kind)
        elif get_origin(kind) is tuple:
            kwargs.update(type=number(get_args(kind)[0], bound), nargs="+")
        else:
            kwargs["type"] = number(_none_or(kind) if is_optional else kind, bound)
            kwargs["metavar"] = f.metadata.get("metavar") or {int: "N", float: "X"}.get(kind)
        if "const" in f.metadata:
            kwargs.update(nargs="?", const=f.metadata["const"])
        groups[f.metadata.get("group", "options")].add_argument("--" + f.name.replace("_", "-"), **kwargs)


class _ParsedList(argparse.Action):
    """A flag of several words (``nargs``) whose field parses them together (``metadata["parse"]``)."""

    def __init__(self, *args: Any, parse: Callable[[list[str]], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parse = parse

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            setattr(namespace, self.dest, self.parse(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


def config_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of ``config_class`` given on the command line (tuples for multi-value flags)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    args = [a for a in get_args(kind) if a is not type(None)]
    if get_origin(kind) in (Union, UnionType) and len(args) == 1:
        return args[0], True
    return kind, False


def _parser(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` with its ValueError's message shown by argparse as it is."""
    def run(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return run


def _bounded(parse: Callable[[Any], Any], bound: Bound | None) -> Callable[[Any], Any]:
    """``parse``, then the field's ``bound`` checked on what it gives (None passes)."""
    if bound is None:
        return parse

    def run(text: Any) -> Any:
        value = parse(text)
        return value if value is None else bound.check(value)

    return run


def _none_or(kind: type) -> Callable[[str], Any]:
    """Parse ``kind``, or the word 'none' as None (an optional field set to nothing)."""
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def number(kind: Callable[[str], Any], bound: Bound | None) -> Callable[[str], Any]:
    """argparse's ``type`` for a number flag in ``bound``, e.g. ``number(int, AT_LEAST_1)``: a value out of
    it is argparse's error naming the flag (exit 2), before any work. No bound: ``kind`` itself."""
    if bound is None:
        return kind

    def typed(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"invalid {kind.__name__} value: {text!r}") from None

    return _parser(_bounded(typed, bound))


positive_int = number(int, AT_LEAST_1)
non_negative_int = number(int, NON_NEGATIVE)
positive_float = number(float, POSITIVE)


def fraction(text: str) -> float:
    """A number in [0, 1] (a share), argparse's error naming the flag otherwise."""
    return _parser(parse_fraction)(text)


def drop_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag v`` or ``--flag=v``)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == flag:
            skip = True
        elif not item.startswith(flag + "="):
            out.append(item)
    return out


def announce_device(name: str, kinds: Sequence[str] | None = None) -> Any:
    """The command's device (:func:`fcos.utils.devices.resolve_device`), announced by the main process."""
    from fcos.utils.devices import DEVICE_KINDS, describe_device, resolve_device

    device = resolve_device(name, kinds=kinds or DEVICE_KINDS)
    if os.environ.get("RANK", "0") == "0":
        print(f"device: {describe_device(device)}")
    return device


def add_inference_flags(p: argparse.ArgumentParser) -> None:
    """The inference options (:class:`~fcos.predict.options.InferenceOptions`: slicing, test-time
    augmentation) as a flag group: predict, eval, serve and benchmark share them."""
    from fcos.predict.options import INFERENCE, InferenceOptions

    add_config_flags({INFERENCE: p.add_argument_group(INFERENCE)}, InferenceOptions)


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    """``--backend`` (torch or an export format's runtime, :data:`fcos.export.FORMATS`) and ``--device``:
    where every command that runs a model (predict, eval, track, serve) runs it."""
    from fcos.predict.predictor import backends

    p.add_argument("--backend", choices=backends(), default=None, help="default: by the weights suffix")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def build_predictor(args: argparse.Namespace) -> Any:
    """The :class:`~fcos.predict.Predictor` of ``--weights`` with the runtime and inference flags."""
    from fcos.predict import Predictor

    return Predictor(args.weights, device=predictor_device(args), backend=args.backend,
                     options=inference_options(args), progress=getattr(args, "progress", True))


def inference_options(args: argparse.Namespace) -> Any:
    """The :class:`~fcos.predict.options.InferenceOptions` the flags give."""
    from fcos.predict.options import InferenceOptions

    return InferenceOptions(**config_values(args, InferenceOptions))


def predictor_device(args: argparse.Namespace) -> str:
    """Predict, eval and serve: an exported model runs where its format's runtime can run it
    (:data:`fcos.export.FORMATS`: ONNX Runtime on CUDA only with its CUDA provider, OpenVINO on the CPU)."""
    from fcos.export import format_for, format_named

    backend = getattr(args, "backend", None)
    fmt = format_named(backend, runtime=True) if backend and backend != "torch" else None
    fmt = fmt or (None if backend == "torch" else format_for(args.weights))
    if fmt is None:
        return str(announce_device(args.device))
    return str(announce_device(args.device, fmt.devices()))

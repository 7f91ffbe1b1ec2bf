"""Command line: ``fcos <command>``. Each command parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

# name -> (help, add_arguments, run); commands register themselves in their own modules' functions below.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, add_arguments, run)
        return run

    return register


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder")


@command("demo", "run the main job end to end on built-in data", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    from fcos.demo import run_demo

    run_demo(args.out)
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")


@command("bench", "run benchmarks (JSON lines, ours vs torchvision measured in the same run)", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    from fcos.bench import run_benchmarks

    run_benchmarks(args.names or None, quick=args.quick)
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True)
    check = sub.add_parser("check", help="load a split as training would and decode every image")
    check.add_argument("--data", required=True, help="dataset folder (COCO, VOC or YOLO layout), .json or .yaml")
    check.add_argument("--split", default="train")
    shapes = sub.add_parser("shapes", help="write the synthetic shapes dataset in COCO layout")
    shapes.add_argument("--out", required=True, help="output folder")
    # None = the library's default (fcos.data.generate_shapes), so defaults live in one place.
    shapes.add_argument("--train", type=int, help="training images")
    shapes.add_argument("--val", type=int, help="validation images")
    shapes.add_argument("--size", type=int, help="image side, pixels")
    shapes.add_argument("--seed", type=int)


@command("data", "check a dataset, or generate the synthetic shapes dataset", _data_args)
def _data(args: argparse.Namespace) -> int:
    from fcos.data import DatasetError, check_dataset, generate_shapes

    if args.data_command == "shapes":
        given = {"num_train": args.train, "num_val": args.val, "image_size": args.size, "seed": args.seed}
        out = generate_shapes(args.out, **{k: v for k, v in given.items() if v is not None})
        print(f"wrote the shapes dataset to {out}")
        return 0
    try:
        check_dataset(args.data, args.split)
    except DatasetError as e:  # a problem in the data, not a bug: the message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

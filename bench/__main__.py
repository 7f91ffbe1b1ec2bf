"""``python -m bench [names] [--quick]``: run benchmarks, print JSON lines."""

from __future__ import annotations

import argparse

from bench import BENCHMARKS, run_benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    run_benchmarks(args.names or None, quick=args.quick)


if __name__ == "__main__":
    main()

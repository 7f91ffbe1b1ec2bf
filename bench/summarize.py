"""``python -m bench.summarize RUN.jsonl [RUN.jsonl ...]``: the range of each benchmark over several
``make bench`` runs, as a Markdown table.

Each run's line already holds the median of alternating rounds for each side; this prints, per
benchmark and params, the lowest and highest of those medians over the runs for fcos, the reference
and their ratio (one value when the runs agree to the digit). README and docs quote these ranges, never
one run's figure: this machine's speed drifts 10-30% between runs.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["load_runs", "ranges", "render"]


def load_runs(paths: list[Path]) -> list[list[dict[str, Any]]]:
    """The JSON lines of each file (other lines, such as progress output, are skipped)."""
    runs = []
    for path in paths:
        records = []
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        runs.append([r for r in records if "name" in r and "ours" in r])
    return runs


def ranges(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (name, params) in first-seen order: ``{"name", "params", "unit", "runs", "ours",
    "reference", "ratio"}``, each of the last three a (low, high) pair over the runs (None if absent)."""
    seen: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for records in runs:
        for record in records:
            key = json.dumps([record["name"], record.get("params", {})], sort_keys=True)
            seen.setdefault(key, {"name": record["name"], "params": record.get("params", {}), "unit": record.get("unit")})
            for field in ("ours", "reference", "ratio"):
                if record.get(field) is not None:
                    values[key][field].append(float(record[field]))
    rows = []
    for key, row in seen.items():
        counts = values[key]
        row = {**row, "runs": len(counts["ours"])}
        for field in ("ours", "reference", "ratio"):
            got = counts[field]
            row[field] = (min(got), max(got)) if got else None
        rows.append(row)
    return rows


def _span(pair: tuple[float, float] | None, digits: int) -> str:
    if pair is None:
        return ""
    low, high = (f"{v:,.{digits}f}" for v in pair)
    return low if low == high else f"{low}-{high}"


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | params | runs | fcos | reference | ratio |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        digits = 1 if row["unit"] in ("ms", "MB", "MiB") else 2
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        unit = f" {row['unit']}" if row["unit"] else ""
        lines.append(f"| `{row['name']}` | {params} | {row['runs']} | {_span(row['ours'], digits)}{unit} | "
                     f"{_span(row['reference'], digits)}{unit if row['reference'] else ''} | {_span(row['ratio'], 2)}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.summarize", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="files holding one `make bench` run's output each")
    args = parser.parse_args(argv)
    print(render(ranges(load_runs(args.runs))))


if __name__ == "__main__":
    main()

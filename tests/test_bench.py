"""Benchmarks are not timed tests: check only that each runs on tiny sizes and emits valid JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import BENCHMARKS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_runs_quick_and_prints_json(name):
    proc = subprocess.run([sys.executable, "-m", "bench", name, "--quick"], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert records
    for r in records:
        assert {"name", "ours", "reference", "unit", "ratio", "params"} <= set(r)
        assert r["ours"] > 0

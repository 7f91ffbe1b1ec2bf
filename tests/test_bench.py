"""Benchmarks are not timed tests: check only that each runs on tiny sizes and emits valid JSON."""

import json
import subprocess
import sys

import pytest

from fcos.bench import BENCHMARKS


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_runs_quick_and_prints_json(name):
    proc = subprocess.run([sys.executable, "-m", "fcos", "bench", name, "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert records
    for r in records:
        assert {"name", "ours", "reference", "unit", "ratio", "params"} <= set(r)
        assert r["ours"] > 0

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


def test_compare_reports_the_median_of_alternating_rounds(monkeypatch):
    """Each side's figure is the median of its round medians (not its best round), and the order within
    a round swaps every round so drift hits both sides alike."""
    import bench.common as common

    times = {"ours": iter([10.0, 100.0, 12.0]), "reference": iter([20.0, 21.0, 200.0])}
    order = []

    def fake_time_ms(fn, *, warmup, repeat):
        order.append(fn.__name__)
        return next(times[fn.__name__])

    def ours():
        pass

    def reference():
        pass

    monkeypatch.setattr(common, "time_ms", fake_time_ms)
    assert common.compare_ms(ours, reference, rounds=3, warmup=0) == (12.0, 21.0)  # best rounds would be (10, 20)
    assert order == ["ours", "reference", "reference", "ours", "ours", "reference"]


def test_summarize_gives_the_range_over_runs(tmp_path):
    from bench.summarize import load_runs, ranges, render

    def line(ours, ref, ratio, boxes=50):
        return json.dumps({"name": "assign_loss", "ours": ours, "reference": ref, "unit": "ms", "ratio": ratio,
                           "params": {"boxes": boxes}})

    files = []
    for i, (ours, ref) in enumerate([(10.0, 30.0), (12.0, 30.0), (11.0, 33.0)]):
        path = tmp_path / f"run{i}.jsonl"
        path.write_text(f"progress noise\n{line(ours, ref, round(ref / ours, 3))}\n{line(5.0, 5.0, 1.0, boxes=5)}\n")
        files.append(path)
    rows = ranges(load_runs(files))
    assert [r["params"] for r in rows] == [{"boxes": 50}, {"boxes": 5}]
    assert rows[0]["runs"] == 3 and rows[0]["ours"] == (10.0, 12.0) and rows[0]["reference"] == (30.0, 33.0)
    assert rows[0]["ratio"] == (2.5, 3.0)
    table = render(rows)
    assert "| `assign_loss` | boxes=50 | 3 | 10.0-12.0 ms | 30.0-33.0 ms | 2.50-3.00x |" in table
    assert "| `assign_loss` | boxes=5 | 3 | 5.0 ms | 5.0 ms | 1.00x |" in table  # runs that agree: one value


def test_gpu_speed_matches_detections_as_sets_and_needs_cuda(monkeypatch, capsys):
    import torch

    from bench import gpu_speed

    boxes = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 10.0, 30.0, 30.0], [5.0, 5.0, 8.0, 8.0]])  # a zero-area one too
    scores = torch.tensor([0.9, 0.8, 0.7])
    reference = [{"boxes": boxes, "labels": torch.tensor([0, 0, 1]), "scores": scores}]
    reordered = [{"boxes": boxes[[1, 0, 2]] + 0.5, "labels": torch.tensor([0, 0, 1]), "scores": scores[[1, 0, 2]]}]
    assert gpu_speed._matched_fraction(reordered, reference) == 1.0
    moved = [{"boxes": boxes + torch.tensor([0.0, 0.0, 0.0, 2.0]), "labels": torch.tensor([0, 0, 1]), "scores": scores}]
    assert gpu_speed._matched_fraction(moved, reference) == 0.0  # every box 2 px off
    relabelled = [{"boxes": boxes, "labels": torch.tensor([0, 0, 2]), "scores": scores}]
    assert gpu_speed._matched_fraction(relabelled, reference) == pytest.approx(2 / 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_speed.main([]) == 2 and "no CUDA device" in capsys.readouterr().out

"""tools/gpu_check.py (make gpu-check): a clear verdict without CUDA, and its checks' logic as a CPU dry run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_without_cuda_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load().main([]) == 2
    captured = capsys.readouterr()
    (verdict,) = lines(captured.out)
    assert verdict["verdict"] == "no-cuda" and "needs one" in verdict["reason"]
    assert "no CUDA device here" in captured.err and "Traceback" not in captured.err


def test_detections_are_matched_as_sets_not_by_index():
    gpu_check = load()
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [5.0, 5.0, 9.0, 9.0]])
    theirs = [{"boxes": boxes, "labels": torch.tensor([1, 1, 2]), "scores": torch.tensor([0.5, 0.5, 0.4])}]
    swapped = [{"boxes": boxes[[1, 0, 2]] + 0.01, "labels": torch.tensor([1, 1, 2]),
                "scores": torch.tensor([0.5, 0.5, 0.4]) + 1e-4}]  # a near-tie reordered
    match = gpu_check._match(swapped, theirs)
    assert match["counts_equal"] and match["unmatched"] == 0
    assert match["box_px"] == pytest.approx(0.01, abs=1e-5) and match["score"] == pytest.approx(1e-4, abs=1e-6)
    relabelled = [{**theirs[0], "labels": torch.tensor([1, 1, 3])}]  # the third box under another class
    assert gpu_check._match(relabelled, theirs)["unmatched"] == 1
    assert not gpu_check._match([{k: v[:2] for k, v in theirs[0].items()}], theirs)["counts_equal"]


@pytest.mark.slow
def test_cpu_dry_run_passes_and_a_failing_check_is_reported(monkeypatch, capsys):
    gpu_check = load()
    assert gpu_check.main(["--device", "cpu", "--only", "torchvision_parity", "amp_fp16", "no_sync"]) == 0
    records = lines(capsys.readouterr().out)
    assert [r.get("check") for r in records[:-1]] == ["environment", "torchvision_parity", "amp_fp16", "no_sync"]
    assert records[3]["skips_on_device"] and records[3]["poisoned_update_skipped"]
    parity = records[1]
    assert parity["exact"]["loss_rel"] < 1e-6 and parity["exact"]["counts_equal"] and parity["exact"]["unmatched"] == 0
    assert parity["exact"]["detections"] > 0
    assert records[-1]["verdict"] == "pass" and records[-1]["dry_run"]

    def broken(device, work):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setitem(gpu_check.CHECKS, "amp_fp16", broken)
    assert gpu_check.main(["--device", "cpu", "--only", "amp_fp16"]) == 1
    records = lines(capsys.readouterr().out)
    assert records[1]["ok"] is False and "illegal memory access" in records[1]["error"]
    assert records[-1] == {**records[-1], "verdict": "fail", "failed": ["amp_fp16"]}

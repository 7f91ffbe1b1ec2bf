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


@pytest.mark.slow
def test_cpu_dry_run_passes_and_a_failing_check_is_reported(monkeypatch, capsys):
    gpu_check = load()
    assert gpu_check.main(["--device", "cpu", "--only", "torchvision_parity", "amp_fp16"]) == 0
    records = lines(capsys.readouterr().out)
    assert [r.get("check") for r in records[:-1]] == ["environment", "torchvision_parity", "amp_fp16"]
    parity = records[1]
    assert parity["exact"]["loss_rel"] < 1e-6 and parity["exact"]["labels_equal"] and parity["exact"]["detections"] > 0
    assert records[-1]["verdict"] == "pass" and records[-1]["dry_run"]

    def broken(device, work):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setitem(gpu_check.CHECKS, "amp_fp16", broken)
    assert gpu_check.main(["--device", "cpu", "--only", "amp_fp16"]) == 1
    records = lines(capsys.readouterr().out)
    assert records[1]["ok"] is False and "illegal memory access" in records[1]["error"]
    assert records[-1] == {**records[-1], "verdict": "fail", "failed": ["amp_fp16"]}

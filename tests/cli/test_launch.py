"""``fcos train --devices N --max-restarts M`` relaunches itself under torchrun, without those two flags
(the workers must not launch again); under torchrun they are refused with a usage error."""

from __future__ import annotations

import pytest

from fcos.cli import main
from fcos.engine import launch


@pytest.fixture
def launches(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "launch_local", lambda *args: calls.append(args) or 0)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    return calls


def test_devices_and_restarts_launch_torchrun_without_the_launcher_flags(launches):
    assert main(["train", "--data", "d", "--devices", "2", "--max-restarts=3", "--max-iters", "5"]) == 0
    assert main(["train", "--data", "d", "--max-restarts", "2"]) == 0  # one process, restarted when it dies
    assert launches == [(2, ["train", "--data", "d", "--max-iters", "5"], 3), (1, ["train", "--data", "d"], 2)]


def test_under_torchrun_the_launcher_flags_are_a_usage_error(launches, monkeypatch, capsys):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-a")
    assert main(["train", "--data", "d", "--max-restarts", "2"]) == 2
    assert "under torchrun, give them to torchrun" in capsys.readouterr().err
    assert launches == []

"""Which checkpoint a run resumes from (one process: the decision is rank 0's, broadcast to the others):
a fresh start, --resume, and a torchrun restart that takes this launch's last.pt but never an earlier
run's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fcos.engine.resume import checkpoint_to_resume
from fcos.engine.train_config import TrainConfig
from fcos.weights.checkpoint import save_checkpoint


@pytest.fixture
def torchrun(monkeypatch):
    """Set torchrun's run id and this node's restart count."""
    def launched(run_id: str, restarts: int = 0) -> None:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", run_id)
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(restarts))

    for name in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    return launched


def write_last(out: Path, launch: str | None, config: TrainConfig) -> Path:
    state = {"model": {}, "config": {}, "iteration": 4, "launch": launch, "train_config": dataclasses.asdict(config)}
    return save_checkpoint(state, out / "last.pt")


def test_fresh_start_and_explicit_resume(tmp_path, torchrun):
    cfg = TrainConfig(data="d", out=str(tmp_path))
    last = write_last(tmp_path, None, cfg)  # an earlier run's, outside torchrun
    assert checkpoint_to_resume(cfg, tmp_path) is None
    assert checkpoint_to_resume(dataclasses.replace(cfg, resume="auto"), tmp_path) == last
    assert checkpoint_to_resume(dataclasses.replace(cfg, resume="x.pt"), tmp_path) == Path("x.pt")
    torchrun("run-a", restarts=2)  # restarted, but last.pt is not this launch's
    assert checkpoint_to_resume(cfg, tmp_path) is None
    assert checkpoint_to_resume(dataclasses.replace(cfg, resume="x.pt"), tmp_path) == Path("x.pt")


def test_a_restarted_group_takes_this_launchs_last_checkpoint(tmp_path, torchrun):
    cfg = TrainConfig(data="d", out=str(tmp_path))
    last = write_last(tmp_path, "run-a", cfg)
    torchrun("run-a", restarts=1)
    assert checkpoint_to_resume(cfg, tmp_path) == last
    # A node whose workers were healthy restarts them without counting: the run id alone decides.
    torchrun("run-a", restarts=0)
    assert checkpoint_to_resume(cfg, tmp_path) == last
    # this launch's last.pt wins over the checkpoint --resume named at the first attempt
    resumed = dataclasses.replace(cfg, resume="first.pt")
    last = write_last(tmp_path, "run-a", resumed)
    assert checkpoint_to_resume(resumed, tmp_path) == last
    torchrun("run-b", restarts=1)  # another launch: its own --resume
    assert checkpoint_to_resume(resumed, tmp_path) == Path("first.pt")


def test_another_config_is_another_run(tmp_path, torchrun):
    cfg = TrainConfig(data="d", out=str(tmp_path))
    write_last(tmp_path, "run-a", dataclasses.replace(cfg, max_iters=100))
    torchrun("run-a", restarts=1)
    assert checkpoint_to_resume(cfg, tmp_path) is None


def test_torchruns_default_run_id_needs_a_counted_restart(tmp_path, torchrun):
    # Every launch without --rdzv-id is "none": only a restart tells this launch's last.pt from an earlier one's.
    cfg = TrainConfig(data="d", out=str(tmp_path))
    last = write_last(tmp_path, "none", cfg)
    torchrun("none", restarts=0)
    assert checkpoint_to_resume(cfg, tmp_path) is None
    torchrun("none", restarts=1)
    assert checkpoint_to_resume(cfg, tmp_path) == last


def test_an_unreadable_last_checkpoint_is_not_taken_for_this_launchs(tmp_path, torchrun):
    cfg = TrainConfig(data="d", out=str(tmp_path))
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    torchrun("run-a", restarts=1)
    assert checkpoint_to_resume(cfg, tmp_path) is None

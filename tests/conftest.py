"""Shared fixtures: seeded RNG, the real images vendored in tests/assets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).resolve().parent / "assets"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding ``fruit/`` and ``raccoon/``: small MIT-licensed subsets of the real datasets,
    vendored in tests/assets (counts in tests/assets/README.md), so the suite needs nothing beside the clone."""
    return ASSETS


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained detector's checkpoint that still gives many detections (deploy_helpers.py)."""
    from deploy_helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")

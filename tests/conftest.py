"""Shared fixtures: seeded RNG, paths to the real datasets in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The real datasets live beside the checkout (../shared/data); FCOS_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("FCOS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "raccoon").is_dir():
        pytest.fail(f"real datasets not found at {SHARED_DATA} (set FCOS_SHARED_DATA)")
    return SHARED_DATA

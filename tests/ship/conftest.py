"""Module-scoped fixtures for the deployment tests (helpers in ship_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ship_helpers import make_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")

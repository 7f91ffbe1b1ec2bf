"""Fixtures shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcos.data import generate_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A tiny shapes dataset: 8 training images (4 updates per epoch for one process at batch 2, and for
    two at batch 1 each) and 4 validation images, 128 px."""
    return generate_shapes(tmp_path_factory.mktemp("shapes"), num_train=8, num_val=4, image_size=128)

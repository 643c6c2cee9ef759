"""Fixtures shared by the segmentation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.segmentation import build_tiny_root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Tiny GroundingDINO / SAM models in the real repo layouts (`tests.helpers.segmentation`)."""
    return build_tiny_root(tmp_path_factory)

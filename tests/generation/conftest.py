"""Fixtures shared by the generation tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def fresh_model_cache():
    """An empty per-process model cache before and after the test.

    Tests that keep one family's models in memory at a time, or that count loads, use this (``pytestmark = pytest.mark.usefixtures(...)``).
    """
    from pipelines.generation.loading import MODEL_CACHE

    MODEL_CACHE.clear()
    yield MODEL_CACHE
    MODEL_CACHE.clear()

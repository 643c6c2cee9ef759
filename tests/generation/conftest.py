"""Fixtures shared by the generation tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def fresh_model_cache():
    """An empty per-process model cache before and after the test.

    The cache is keyed by repo id, not folder: tests that load one repo id from several model roots, or that
    keep one family's models in memory at a time, use this (``pytestmark = pytest.mark.usefixtures(...)``).
    """
    from pipelines.generation.loading import MODEL_CACHE

    MODEL_CACHE.clear()
    yield MODEL_CACHE
    MODEL_CACHE.clear()

"""Shared fixtures. Heavy things (sample photos, a rendered catalog) are built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def drawn_products():
    """The code-drawn product shots (512 px) with their exact masks: {name: (rgb, mask)}."""
    from pipelines.samples import draw_dress, draw_tee, draw_tote

    return {"tee": draw_tee(512), "tote": draw_tote(512), "dress": draw_dress(512)}


@pytest.fixture(scope="session")
def astronaut_rgb():
    from pipelines.samples import astronaut

    return astronaut()


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness (a temporary database), started once for the session's flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield

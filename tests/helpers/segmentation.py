"""Tiny segmentation models (GroundingDINO, SAM variants, the original SAM checkpoint) shared by the tests."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

#: The tiny families the fast tests use (groundingdino-py's ~60 MB checkpoint is built by the slow test).
FAMILIES = ["grounding-dino", "sam", "sam-hq", "sam2", "sam-original"]


def build_tiny_root(tmp_path_factory) -> Path:
    """Tiny segmentation models under one folder of this pytest session: built once (under a file lock),
    whichever module asks first."""
    from pipelines.dev_models.tiny import build_tiny_models

    root = tmp_path_factory.getbasetemp() / "tiny-segmentation-models"
    with FileLock(str(root) + ".lock"):
        if not (root / ".complete").exists():
            build_tiny_models(root, FAMILIES)
            (root / ".complete").touch()
    return root

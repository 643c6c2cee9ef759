"""``vitrine dev tiny-models DIR``: randomly initialised tiny checkpoints in the real repo layouts.

Each model family registers a builder that writes ``DIR/<org>/<name>/`` for the repo ids it supports
(config + weights + locally built tokenizer/processor files), so that the real loading code runs on
them unchanged. Builders are seeded: the same call writes the same weights.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

#: family name -> builder(dest_root) -> list of repo ids written.
TINY_BUILDERS: dict[str, Callable[[Path], list[str]]] = {}

#: Modules that register tiny builders on import. A family adds its module here.
TINY_MODULES: list[str] = []
TINY_MODULES.append("pipelines.dev_models.tiny_generation")  # FLUX.1 / SDXL generation (issue 4)
TINY_MODULES.append("pipelines.dev_models.tiny_segmentation")  # GroundingDINO / SAM (issue 3)


def register_tiny(family: str):
    """Decorator: register ``fn(dest_root: Path) -> list[str]`` as the tiny-model builder of ``family``."""

    def deco(fn: Callable[[Path], list[str]]):
        TINY_BUILDERS[family] = fn
        return fn

    return deco


def build_tiny_models(dest: str | Path, families: list[str] | None = None) -> dict[str, list[str]]:
    """Write tiny random models for every registered family (or only ``families``) under ``dest``.

    Returns:
        `dict`: family -> repo ids written (each at ``dest/<org>/<name>/``).
    """
    for mod in TINY_MODULES:
        importlib.import_module(mod)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(families or []) - set(TINY_BUILDERS))
    if unknown:
        raise ValueError(f"unknown model families {unknown}; known: {sorted(TINY_BUILDERS)}")
    written: dict[str, list[str]] = {}
    for family, builder in sorted(TINY_BUILDERS.items()):
        if families is not None and family not in families:
            continue
        written[family] = builder(dest)
        logger.info("tiny %s models: %s", family, written[family])
    return written

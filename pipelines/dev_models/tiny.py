"""``vitrine dev tiny-models DIR``: randomly initialised tiny checkpoints in the real repo layouts.

Each model family has a builder that writes ``DIR/<org>/<name>/`` for the repo ids it supports
(config + weights + locally built tokenizer/processor files), so that the real loading code runs on
them unchanged. Builders are seeded: the same call writes the same weights. A new family adds its
builder to `TINY_BUILDERS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pipelines.dev_models import tiny_generation, tiny_segmentation

logger = logging.getLogger(__name__)

#: family name -> builder(dest_root) -> list of repo ids written.
TINY_BUILDERS: dict[str, Callable[[Path], list[str]]] = {
    "flux": tiny_generation.build_flux,
    "sdxl": tiny_generation.build_sdxl,
    "grounding-dino": tiny_segmentation.build_grounding_dino,
    "sam": tiny_segmentation.build_sam,
    "sam-hq": tiny_segmentation.build_sam_hq,
    "sam2": tiny_segmentation.build_sam2,
    "sam-original": tiny_segmentation.build_sam_original,
    "groundingdino-py": tiny_segmentation.build_grounding_dino_original,
}


def build_tiny_models(dest: str | Path, families: list[str] | None = None) -> dict[str, list[str]]:
    """Write tiny random models for every family (or only ``families``) under ``dest``.

    Returns:
        `dict`: family -> repo ids written (each at ``dest/<org>/<name>/``).
    """
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

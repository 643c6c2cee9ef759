"""What `vitrine models` lists: every registered model, with where its weights were found (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.models.location import find
from pipelines.models.known import all_models


def model_inventory(model_root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registered model, in `all_models` order (family, then id).

    Args:
        model_root (`str | Path`, *optional*): searched first, as ``<model_root>/<org>/<name>/``, then the
            Hugging Face cache (`pipelines.models.location.find`).

    Returns:
        `list[dict]`: ``id``, ``key``, ``family``, ``licence``, ``commercial`` (`bool`), ``found`` (the snapshot
        folder as `str`, or `None`), ``source`` (where it was found, or `None`) and ``description``: the
        ``vitrine models --json`` format (docs/cli.md).
    """
    rows = []
    for spec in all_models():
        loc = find(spec.id, model_root)
        rows.append({"id": spec.id, "key": spec.key, "family": spec.family, "licence": spec.licence,
                     "commercial": spec.commercial, "found": str(loc.path) if loc else None,
                     "source": loc.source if loc else None, "description": spec.description})
    return rows

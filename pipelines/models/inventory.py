"""What `vitrine models` lists: every registered model, with where its weights were found (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.models.location import find
from pipelines.models.known import all_models
from pipelines.models.profiles import registered_profiles
from pipelines.models.single_file import SINGLE_FILE_SOURCE, find_single_file


def model_inventory(model_root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registered model, in `all_models` order (family, then id).

    Args:
        model_root (`str | Path`, *optional*): searched first, as ``<model_root>/<org>/<name>/``, then the
            Hugging Face cache (`pipelines.models.location.find`).

    Returns:
        `list[dict]`: ``id``, ``key``, ``family``, ``licence``, ``commercial`` (`bool`), ``found`` (the snapshot
        folder as `str`, or `None`), ``source`` (where it was found, or `None`) and ``description``: the
        ``vitrine models --json`` format (docs/cli.md). A base model found only as a single-file checkpoint
        (`pipelines.models.single_file`) has ``found`` = the file and ``source`` = ``single-file``.
    """
    rows = []
    profiles = registered_profiles()
    for spec in all_models():
        loc = find(spec.id, model_root, required_files=spec.required_files)
        found, source = (str(loc.path), loc.source) if loc else (None, None)
        profile = profiles.get(spec.key or spec.id)
        if profile is not None and profile.role == "base" and not _denoiser_in(loc.path if loc else None):
            sf = find_single_file(profile, model_root, repo_folder=loc.path if loc else None)
            if sf is not None:
                found, source = str(sf.path), SINGLE_FILE_SOURCE
        rows.append({"id": spec.id, "key": spec.key, "family": spec.family, "licence": spec.licence,
                     "commercial": spec.commercial, "found": found, "source": source,
                     "description": spec.description})
    return rows


def _denoiser_in(folder: Path | None) -> bool:
    if folder is None:
        return False
    return any(p.suffix in (".safetensors", ".gguf") for part in ("transformer", "unet")
               if (folder / part).is_dir() for p in (folder / part).iterdir())

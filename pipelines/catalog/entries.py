"""Catalog entries as `vitrine verify` sees them: the folders holding a manifest, and the quality flags still
waiting for a reviewer.

`pipelines.catalog.review.catalog_entries` is the reviewer's listing (valid SKU names only, an error for a
missing catalog); `manifest_dirs` lists every folder with a manifest, so that verify also reports a folder
whose name is not a valid SKU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.catalog.manifest import MANIFEST_NAME
from pipelines.quality.flags import output_flags


def manifest_dirs(catalog_dir: str | Path) -> list[Path]:
    """Every direct sub-folder of ``catalog_dir`` holding a ``manifest.json``, sorted by name.

    Returns ``[]`` when ``catalog_dir`` is not a folder (or holds no entry); folder names are not checked.
    """
    catalog = Path(catalog_dir)
    if not catalog.is_dir():
        return []
    return [d for d in sorted(catalog.iterdir()) if (d / MANIFEST_NAME).is_file()]


def unapproved_flags(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(output file, flag)`` for every quality flag of an output that no reviewer approved.

    Args:
        manifest (`dict`): a catalog manifest (``outputs``: list of dicts with ``file``, optional ``quality.flags``
            and ``review.status``).

    Returns:
        `list[tuple[str, dict]]`: in manifest order, outputs then their flags; an output whose
        ``review.status`` is ``"approved"`` contributes none (a reviewer looked at it and accepted it).
    """
    found = []
    for output in manifest.get("outputs", []):
        if (output.get("review") or {}).get("status") == "approved":
            continue
        found += [(output["file"], flag) for flag in output_flags(output)]
    return found

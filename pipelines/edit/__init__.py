"""Kontext instruction edits of catalog outputs, as new versions (docs/tryon-and-edits.md).

- `pipelines.edit.kontext`: `KontextEditor` (preferred resolutions, restored to the exact size), `EditParams`;
- `pipelines.edit.rules`: does an instruction target the garment (`classify_instruction`, `recomposite_garment`);
- `pipelines.edit.identity`: model identity presets (`load_identity`, `apply_batch_overrides`);

Edits of catalog outputs are `pipelines.catalog.edits` (one edit written as a new version: `edit_output`,
`load_kontext_editor`) and `pipelines.catalog.edit_batch` (edit runs: `plan_edits`, `apply_edit_job`,
`write_edit_report`); this pixel package knows nothing of the catalog.

Imports are lazy (no torch or diffusers at import time).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "KontextEditor": "kontext", "EditParams": "kontext", "EditOutput": "kontext",
    "preferred_resolutions": "kontext", "classify_instruction": "rules", "recomposite_garment": "rules",
    "IdentityPreset": "identity", "load_identity": "identity", "read_identity": "identity",
    "apply_batch_overrides": "identity",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Kontext instruction edits of catalog outputs, as new versions (docs/tryon-and-edits.md).

- `pipelines.edit.kontext`: `KontextEditor` (preferred resolutions, restored to the exact size), `EditParams`;
- `pipelines.edit.rules`: does an instruction target the garment (`classify_instruction`, `recomposite_garment`);
- `pipelines.edit.identity`: model identity presets (`load_identity`, `apply_batch_overrides`);
- `pipelines.edit.catalog_edit`: one edit written as a new version (`edit_output`, `load_kontext_editor`);
- `pipelines.edit.batch`: edit runs (`plan_edits`, `apply_edit_job`, `write_edit_report`).

Imports are lazy (no torch or diffusers at import time).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "KontextEditor": "kontext", "EditParams": "kontext", "EditOutput": "kontext",
    "preferred_resolutions": "kontext", "classify_instruction": "rules", "recomposite_garment": "rules",
    "IdentityPreset": "identity", "load_identity": "identity", "read_identity": "identity",
    "apply_batch_overrides": "identity", "edit_output": "catalog_edit", "load_kontext_editor": "catalog_edit",
    "EditResult": "catalog_edit", "EditConflictError": "catalog_edit", "plan_edits": "batch",
    "apply_edit_job": "batch", "EditJob": "batch",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

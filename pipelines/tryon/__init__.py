"""Virtual try-on onto a given person photo (docs/tryon-and-edits.md).

- `pipelines.tryon.pipeline`: `TryOnPipeline` (methods ``fill``, ``kontext``, ``warp``), `TryOnParams`,
  `TryOnOutput`;
- `pipelines.tryon.worn`: what the person wears now (`worn_garment_mask`);
- `pipelines.tryon.warp`: the garment as placed (`place_garment`, `apply_transform`, `GarmentTransform`);
- `pipelines.tryon.fidelity`: SSIM and CIEDE2000 inside the garment mask (`garment_fidelity`);
- `pipelines.tryon.models`: the method and its models for an engine (`choose_tryon`);
- `pipelines.tryon.catalog`: try-on SKUs in the catalog (`tryon_roles`, `render_tryon`, `verify_tryon_output`);
- `pipelines.tryon.spec`: the ``tryon`` key of ``product.yaml`` (`TryOnSpec`).

Imports are lazy: `pipelines.product` imports `pipelines.tryon.spec`, so this package imports nothing else
at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TryOnPipeline": "pipeline", "TryOnParams": "pipeline", "TryOnOutput": "pipeline",
    "worn_garment_mask": "worn", "place_garment": "warp", "apply_transform": "warp", "GarmentTransform": "warp",
    "garment_fidelity": "fidelity", "choose_tryon": "models", "tryon_roles": "catalog", "render_tryon": "catalog",
    "verify_tryon_output": "catalog", "is_tryon_product": "catalog", "TryOnSpec": "spec",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Virtual try-on onto a given person photo (docs/tryon-and-edits.md).

- `pipelines.tryon.pipeline`: `TryOnPipeline` (methods ``fill``, ``kontext``, ``warp``), `TryOnParams`,
  `TryOnOutput`;
- `pipelines.tryon.worn`: what the person wears now (`worn_garment_mask`);
- `pipelines.tryon.warp`: the garment as placed (`place_garment`, `apply_transform`, `GarmentTransform`);
- `pipelines.tryon.fidelity`: SSIM and CIEDE2000 inside the garment mask (`garment_fidelity`);
- `pipelines.engines.tryon`: the method and its models for an engine (`choose_tryon`);
- `pipelines.tryon_spec`: the ``tryon`` key of ``product.yaml`` (`TryOnSpec`).

Try-on SKUs in the catalog are `pipelines.catalog.tryon_render` (`tryon_roles`, `TryOnStep`), verified by
`pipelines.catalog.verify.verify_tryon_output`; this pixel package knows nothing of the catalog.

Imports are lazy: `pipelines.product` imports `pipelines.tryon_spec`, so this package imports nothing else
at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TryOnPipeline": "pipeline", "TryOnParams": "pipeline", "TryOnOutput": "pipeline",
    "worn_garment_mask": "worn", "place_garment": "warp", "apply_transform": "warp", "GarmentTransform": "warp",
    "garment_fidelity": "fidelity", "TryOnSpec": "pipelines.tryon_spec",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod = _LAZY[name]
        return getattr(importlib.import_module(mod if "." in mod else f"{__name__}.{mod}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

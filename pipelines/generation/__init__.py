"""Generation with FLUX.1 and SDXL: model profiles, a per-process model cache, scene generation around
kept pixels, seam-band inpainting, and the ``flux`` / ``sdxl`` engines.

Public API (imports are lazy: ``import pipelines.generation`` does not import torch or diffusers):

- profiles: `ModelProfile`, `register_profile`, `get_profile`, `list_profiles`
  (the concrete profiles: `pipelines.models.generation_models`);
- settings: `GenerationSettings` (``VITRINE_GEN_*``);
- which models: `ModelSet`, `resolve_model_set`;
- loading: `MODEL_CACHE`, `CacheKey`, `LoadContext`, `load_pipeline`, `load_component`, `load_denoiser`,
  `load_controlnet`, `load_standalone`, `apply_loras`, `apply_speedups`;
- running: `GarmentScenePipeline`, `SceneParams`, `SceneOutput`, `paste_band`, `work_size`,
  `call_with_oom_fallback`, `GenerationOOMError`;
- on-model placement: `on_model_placement`, `template_pose`, `map_pose`.

The ``flux`` / ``sdxl`` engines that use all this are built in `pipelines.engines.generative`.
"""

from __future__ import annotations

import importlib
from typing import Any

from pipelines.models.profiles import ModelProfile, get_profile, list_profiles, register_profile
from pipelines.generation.settings import GenerationSettings

_LAZY = {
    "ModelSet": "modelset", "resolve_model_set": "modelset",
    "MODEL_CACHE": "loading", "CacheKey": "loading", "LoadContext": "loading", "ModelCache": "loading",
    "load_pipeline": "loading", "load_component": "loading", "load_denoiser": "loading",
    "load_controlnet": "loading", "load_standalone": "loading", "apply_loras": "loading",
    "apply_speedups": "loading",
    "GarmentScenePipeline": "scene", "SceneParams": "scene", "SceneOutput": "scene", "paste_band": "scene",
    "work_size": "scene",
    "call_with_oom_fallback": "oom", "GenerationOOMError": "oom",
    "on_model_placement": "pipelines.controls.templates", "template_pose": "pipelines.controls.templates",
    "map_pose": "pipelines.controls.templates",
}

__all__ = ["ModelProfile", "get_profile", "list_profiles", "register_profile", "GenerationSettings", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod = _LAZY[name]
        return getattr(importlib.import_module(mod if "." in mod else f"{__name__}.{mod}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

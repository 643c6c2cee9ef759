"""Every model Vitrine knows: imports each model family's module (which registers its models) and reads
the one registry (`pipelines.models.registry`). A new family adds its import here."""

from __future__ import annotations

from pipelines.models import generation_models, segmentation_models
from pipelines.models.registry import ModelSpec, registered
from pipelines.models.registry import get as _registry_get

#: The modules that register the models of each family.
FAMILY_MODULES = (generation_models, segmentation_models)


def all_models() -> list[ModelSpec]:
    """Every known model, sorted by family then id."""
    return registered()


def get(model_id: str) -> ModelSpec | None:
    """The known spec of ``model_id`` (a registry key such as ``org/name:variant``, or a repo id: then the
    first model registered from that repo), or ``None``."""
    return _registry_get(model_id)

"""The registry of models Vitrine knows: repo id, family, licence, revision, what a complete snapshot holds.

Families register their models here (``register``) when their module is imported; `pipelines.models.known`
imports every family module and is where the complete list is read (``vitrine models`` lists it with where
each was found). One registry serves every model family (segmentation, generation, editing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Licences under which commercial use is allowed.
COMMERCIAL_LICENCES = frozenset({"Apache-2.0", "MIT", "BSD-3-Clause", "CreativeML-OpenRAIL++-M", "OpenRAIL++"})


@dataclass(frozen=True)
class ModelSpec:
    """A known model.

    Attributes:
        id (`str`): Hugging Face repo id, ``org/name`` (also the folder under ``--model-root``).
        family (`str`): e.g. ``grounding-dino``, ``sam``, ``flux``, ``sdxl``, ``controlnet``.
        licence (`str`): SPDX-like licence name as published with the weights.
        commercial (`bool`): whether the licence allows commercial use.
        revision (`str`, *optional*): pinned revision (commit or tag); ``None`` = the snapshot found.
        required_files (`tuple[str, ...]`): files whose presence marks a complete snapshot
            (e.g. ``model_index.json`` for diffusers pipelines, ``config.json`` for transformers).
        description (`str`): one line for ``vitrine models``.
        alternatives (`tuple[str, ...]`): commercial alternatives to name when this one is refused.
        key (`str`, *optional*): the registry key when one repo holds several models with their own
            licences (``ByteDance/Hyper-SD:flux-8step`` and ``ByteDance/Hyper-SD:sdxl-8step``); defaults to ``id``.
    """

    id: str
    family: str
    licence: str
    commercial: bool
    required_files: tuple[str, ...] = ("config.json",)
    revision: str | None = None
    description: str = ""
    alternatives: tuple[str, ...] = field(default_factory=tuple)
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.id)

    @property
    def org(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[1]


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model in the registry; returns it."""
    if spec.id.count("/") != 1 or not all(spec.id.split("/")):
        raise ValueError(f"model id must look like 'org/name', got {spec.id!r}")
    _REGISTRY[spec.key] = spec
    return spec


def get(model_id: str) -> ModelSpec | None:
    """The registered spec of ``model_id`` (a registry key such as ``org/name:variant``, or a repo id:
    then the first model registered from that repo), or ``None``."""
    spec = _REGISTRY.get(model_id)
    if spec is not None:
        return spec
    return next((s for s in _REGISTRY.values() if s.id == model_id), None)


def registered() -> list[ModelSpec]:
    """The models registered so far, sorted by family then id (every known one: `pipelines.models.known`)."""
    return sorted(_REGISTRY.values(), key=lambda s: (s.family, s.id, s.key))

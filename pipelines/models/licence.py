"""The licence guard: which models a commercial batch or product may use, and the licence records of manifests.

FLUX.1 [dev] and every model derived from it are published under the *FLUX.1 [dev] Non-Commercial
License*: FLUX.1-dev, FLUX.1-Fill-dev, FLUX.1-Kontext-dev, FLUX.1-Canny-dev / -Depth-dev (FLUX Control),
FLUX.1-Redux-dev, and the FLUX.1-dev ControlNets, LoRAs and GGUF files. A SKU whose ``product.yaml``
says ``commercial: true``, or any SKU of a batch run with ``--commercial``, must not be made with them.
The commercially usable alternatives are FLUX.1 [schnell] (Apache-2.0) and SDXL (CreativeML
OpenRAIL++-M).

The licence of a model comes from the one model registry (`pipelines.models.registry`), where every
profile Vitrine knows is registered with its licence. A model that is not registered is judged by its
repo id: a FLUX.1 [dev] derivative (``FLUX.1-dev``, ``-Fill-dev``, ``-Kontext-dev``, ``-Redux-dev``,
``-Canny-dev``, ``-Depth-dev`` in the id) is non-commercial; anything else unregistered has an
``unknown`` licence and is refused for commercial use too (nothing is assumed to be allowed).

The generative engines of `pipelines.generation` apply their own check to the models of on-model
generation (`pipelines.engines.generative.SceneGenerator.check_licence`, which may switch a commercial SKU to a commercially
usable model set). This module is the guard of the steps that have no such alternative: try-on with
FLUX.1 Fill / Kontext (`pipelines.tryon`) and Kontext edits (`pipelines.edit`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from pipelines.models import known

FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
FLUX_DEV_LICENCE = "FLUX.1-dev-Non-Commercial"
UNKNOWN_LICENCE = "unknown"

#: The commercially usable alternatives every refusal names: (short name, repo id, licence).
COMMERCIAL_ALTERNATIVES: tuple[tuple[str, str, str], ...] = (
    ("FLUX.1-schnell", FLUX_SCHNELL, "Apache-2.0"),
    ("SDXL", SDXL_BASE, "CreativeML-OpenRAIL++-M"),
)

#: Repo ids of FLUX.1 [dev] derivatives (non-commercial) when the registry does not know them.
DEV_LICENSED_PATTERN = re.compile(
    r"FLUX\.1-(dev|Fill-dev|Kontext-dev|Redux-dev|Canny-dev|Depth-dev)(\b|[-_.])", re.IGNORECASE
)


class LicenceError(InputError):
    """A non-commercially licensed model was asked for by a commercial batch or product.

    Attributes:
        models (`list[LicenceInfo]`): the refused models.
        alternatives (`list[str]`): the repo ids of the commercially usable alternatives named.
    """

    def __init__(self, message: str, *, models: list[LicenceInfo], alternatives: list[str],
                 path: str | Path | None = None, key: str | None = "commercial"):
        self.models = models
        self.alternatives = alternatives
        super().__init__(message, path=path, key=key)


@dataclass(frozen=True)
class LicenceInfo:
    """What Vitrine knows about a model's licence.

    Attributes:
        id (`str`): the repo id (``org/name``).
        licence (`str`): the licence as published with the weights, or ``unknown``.
        commercial (`bool`): whether that licence allows commercial use (`False` when unknown).
        source (`str`): ``registry`` (registered profile), ``id-pattern`` (a FLUX.1 [dev] derivative by
            its id) or ``unknown``.
        alternatives (`tuple[str, ...]`): commercially usable alternatives the registry names for it.
    """

    id: str
    licence: str
    commercial: bool
    source: str
    alternatives: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "licence": self.licence, "commercial": self.commercial, "licence_source": self.source}


def _model_id(model: Any) -> str:
    if isinstance(model, str):
        return model
    mid = getattr(model, "id", None)
    if not isinstance(mid, str):
        raise TypeError(f"expected a repo id, a ModelProfile or a ModelSpec, got {type(model).__name__}")
    return mid


def licence_of(model: Any) -> LicenceInfo:
    """The licence of a model (a repo id, a `ModelProfile` or a `ModelSpec`).

    A registered model's licence is the registry's; an unregistered FLUX.1 [dev] derivative is
    non-commercial by its id; any other unregistered model is ``unknown`` and not commercial.
    """
    mid = _model_id(model)
    name = getattr(model, "name", None)  # a ModelProfile's registry key: one repo can hold several models
    spec = known.get(name if isinstance(name, str) and name.startswith(mid + ":") else mid)
    if spec is not None:
        return LicenceInfo(mid, spec.licence, bool(spec.commercial), "registry", tuple(spec.alternatives))
    if DEV_LICENSED_PATTERN.search(mid):
        return LicenceInfo(mid, FLUX_DEV_LICENCE, False, "id-pattern")
    return LicenceInfo(mid, UNKNOWN_LICENCE, False, "unknown")


def alternatives_text(extra: Iterable[str] = ()) -> str:
    """``"FLUX.1-schnell (black-forest-labs/FLUX.1-schnell, Apache-2.0) and SDXL (...)"`` plus ``extra`` ids."""
    named = [f"{name} ({rid}, {lic})" for name, rid, lic in COMMERCIAL_ALTERNATIVES]
    ids = {rid for _, rid, _ in COMMERCIAL_ALTERNATIVES}
    more = [e for e in dict.fromkeys(extra) if e not in ids]
    text = " and ".join(named)
    if more:
        text += f"; for these models also {', '.join(more)}"
    return text


def check_commercial_use(
    models: Iterable[Any],
    *,
    commercial: bool,
    what: str = "this step",
    subject: str = "the SKU",
    path: str | Path | None = None,
    key: str | None = "commercial",
) -> list[LicenceInfo]:
    """Refuse non-commercially licensed models for commercial work.

    Args:
        models (`Iterable`): repo ids, `ModelProfile`s or `ModelSpec`s that the step would use.
        commercial (`bool`): whether the batch or the product is marked commercial.
        what (`str`, *optional*, defaults to ``"this step"``): what needs the models (``"the Kontext edit"``).
        subject (`str`, *optional*, defaults to ``"the SKU"``): what is marked commercial
            (``"SKU tee-navy"``, ``"the batch (--commercial)"``).
        path (`str | Path`, *optional*): the file that marks it (``product.yaml``), for the error.
        key (`str`, *optional*, defaults to ``"commercial"``): the key that marks it.

    Returns:
        `list[LicenceInfo]`: the licence of every model (for the manifest), when allowed.

    Raises:
        `LicenceError` (an `InputError`): ``commercial`` is true and a model is not licensed for
        commercial use. The message names each such model and its licence, and the commercially usable
        alternatives FLUX.1-schnell and SDXL.
    """
    infos = [licence_of(m) for m in models]
    if not commercial:
        return infos
    bad = [i for i in infos if not i.commercial]
    if not bad:
        return infos
    listed = ", ".join(f"{i.id} (licence: {i.licence})" for i in bad)
    verb = "does" if len(bad) == 1 else "do"
    extra = [a for i in bad for a in i.alternatives]
    message = (
        f"{subject} is marked commercial: true, but {what} needs {listed}, which {verb} not allow commercial "
        f"use. Commercially usable alternatives: {alternatives_text(extra)}."
    )
    alternatives = [rid for _, rid, _ in COMMERCIAL_ALTERNATIVES] + [a for a in dict.fromkeys(extra)]
    raise LicenceError(message, models=bad, alternatives=alternatives, path=path, key=key)


def model_record(model: Any, *, role: str | None = None, revision: str | None = None,
                 source: str | Path | None = None) -> dict[str, Any]:
    """A manifest ``models`` entry: ``{"id", "revision", "licence", "commercial", "licence_source"}``
    plus ``role`` and ``source`` (the folder it was loaded from) when given."""
    info = licence_of(model)
    if revision is None:
        revision = getattr(model, "revision", None)
    rec: dict[str, Any] = {"id": info.id, "revision": revision, **{k: v for k, v in info.to_json().items() if k != "id"}}
    if role is not None:
        rec["role"] = role
    if source is not None:
        rec["source"] = str(source)
    return rec


def merge_model_records(existing: list[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``existing`` plus each record of ``new`` whose ``(id, revision)`` is not listed yet (order kept)."""
    out = list(existing)
    seen = {(r.get("id"), r.get("revision")) for r in out}
    for r in new:
        k = (r.get("id"), r.get("revision"))
        if k not in seen:
            out.append(r)
            seen.add(k)
    return out

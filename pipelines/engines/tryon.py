"""Which try-on method a SKU gets, and its models, loaded through Vitrine's generation loader.

- FLUX.1-Fill-dev (method ``fill``) and FLUX.1-Kontext-dev (method ``kontext``) are looked up under the
  engine's model root with the profiles of `pipelines.models.generation_models` and loaded with
  `pipelines.generation.loading.load_pipeline` (cached in `MODEL_CACHE`: once per process; their text
  encoders and VAE are shared with the engine's FLUX base when there is one).
- ``warp`` needs no weights; with the ``flux`` engine and a non-commercial SKU the old clothes the warped
  garment does not cover are inpainted with FLUX.1 Fill when it is found, else with OpenCV.
- A commercial SKU never gets Fill-dev or Kontext-dev: ``auto`` picks ``warp``, and an explicit ``fill``
  or ``kontext`` is refused by the licence guard (`pipelines.models.licence`), naming the alternatives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.engines.bundle import Engine
from pipelines.engines.generative import SceneGenerator
from pipelines.errors import InputError
from pipelines.models.licence import check_commercial_use, model_record
from pipelines.tryon.pipeline import TryOnPipeline

FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
FLUX_KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"
_LOCK = threading.Lock()


@dataclass
class TryOnChoice:
    """The method chosen for a SKU and the pipeline that runs it.

    Attributes:
        method (`str`): ``fill``, ``kontext`` or ``warp``.
        reason (`str`): why this method.
        pipeline (`TryOnPipeline`): with the models the method needs.
        models (`list[dict]`): manifest records of the models used (id, revision, licence, commercial, role).
        run_lock (`threading.Lock`): held while the models run (shared models, one call at a time).
    """

    method: str
    reason: str
    pipeline: TryOnPipeline
    models: list[dict[str, Any]] = field(default_factory=list)
    run_lock: Any = None


def _found(profile_id: str, model_root) -> tuple[Any, Path | None]:
    from pipelines.models.profiles import get_profile
    from pipelines.models.location import find

    profile = get_profile(profile_id)
    loc = find(profile.id, model_root, required_files=profile.required_files, revision=profile.revision)
    return profile, (loc.path if loc else None)


def _revision(profile, path: Path | None) -> str | None:
    if profile.revision is None and path is not None and path.parent.name == "snapshots":
        return path.name
    return profile.revision


def choose_tryon(engine: Engine, method: str = "auto", *, commercial: bool = False, where: str | Path | None = None,
                 subject: str = "the SKU") -> TryOnChoice:
    """Pick and load the try-on method for a SKU.

    Args:
        engine: the batch's engine. Fill and Kontext are only used with a ``flux`` engine (they are FLUX.1
            models and share its text encoders and VAE); any other engine runs ``warp``.
        method (`str`, *optional*, defaults to ``"auto"``): ``auto``, ``fill``, ``kontext`` or ``warp``.
        commercial (`bool`, *optional*, defaults to `False`): the SKU (or batch) is for commercial use.
        where (`str | Path`, *optional*): the file that sets ``method``/``commercial`` (for errors).
        subject (`str`, *optional*): what is marked commercial, for the licence error.

    Returns:
        `TryOnChoice`.

    Raises:
        `LicenceError`: ``fill``/``kontext`` asked for a commercial SKU (names FLUX.1-schnell and SDXL).
        `InputError`: ``fill``/``kontext`` asked for and its model is not found, or not a ``flux`` engine.
    """
    if method not in ("auto", "fill", "kontext", "warp"):
        raise InputError(f"unknown try-on method {method!r}; expected auto, fill, kontext or warp", path=where,
                         key="tryon.method")
    scene = engine.generator if isinstance(engine.generator, SceneGenerator) else None
    is_flux = scene is not None and scene.family == "flux"
    model_root = scene.model_root if scene is not None else None
    run_lock = scene.run_lock if scene is not None else _LOCK  # the generator's: its models run one at a time
    fill_p, fill_path = _found(FLUX_FILL, model_root) if is_flux else (None, None)
    kontext_p, kontext_path = _found(FLUX_KONTEXT, model_root) if is_flux else (None, None)

    # 1. The method
    if method in ("fill", "kontext"):
        repo = FLUX_FILL if method == "fill" else FLUX_KONTEXT
        check_commercial_use([repo], commercial=commercial, what=f"the {method!r} try-on method", subject=subject,
                             path=where)
        if not is_flux:
            raise InputError(f"the {method!r} try-on method needs {repo}: run with --engine flux and a --model-root "
                             f"holding it (this batch runs the {engine.name} engine)", path=where,
                             key="tryon.method")
        if (fill_path if method == "fill" else kontext_path) is None:
            raise InputError(f"the {method!r} try-on method needs {repo}, which is not found under "
                             f"{model_root or 'the Hugging Face cache'}", path=where, key="tryon.method")
        chosen, reason = method, "asked for in product.yaml (tryon.method)"
    elif method == "warp":
        chosen, reason = "warp", "asked for in product.yaml (tryon.method)"
    elif commercial and (fill_path or kontext_path):
        chosen, reason = "warp", ("the SKU is commercial and FLUX.1-Fill-dev / FLUX.1-Kontext-dev are non-commercial "
                                  "(FLUX.1-dev licence): the weight-free warp method is used")
    elif fill_path is not None:
        chosen, reason = "fill", f"auto: {FLUX_FILL} found (in-context fill, the CatVTON-Flux approach)"
    elif kontext_path is not None:
        chosen, reason = "kontext", f"auto: {FLUX_KONTEXT} found (garment as a reference image)"
    else:
        chosen, reason = "warp", ("auto: no FLUX.1 Fill / Kontext weights with this engine; pose-guided warp "
                                  "(no weights)")

    # 2. Load what it needs (once per process, through the generation loader)
    fill = kontext = inpaint = None
    models: list[dict[str, Any]] = []
    if is_flux and (chosen in ("fill", "kontext") or (chosen == "warp" and not commercial and fill_path)):
        from pipelines.edit.kontext import KontextEditor
        from pipelines.generation.loading import LoadContext, load_pipeline

        ctx = LoadContext(model_root, scene.settings)
        base = scene.model_set.base
        if chosen == "kontext":
            kontext = KontextEditor(load_pipeline(kontext_p, base=base, ctx=ctx), model_id=kontext_p.id)
            models.append(model_record(kontext_p, role="tryon-kontext", revision=_revision(kontext_p, kontext_path),
                                       source=kontext_path))
        else:
            pipe = load_pipeline(fill_p, base=base, ctx=ctx)
            fill, inpaint = (pipe, None) if chosen == "fill" else (None, pipe)
            role = "tryon-fill" if chosen == "fill" else "tryon-uncovered-inpainting"
            models.append(model_record(fill_p, role=role, revision=_revision(fill_p, fill_path), source=fill_path))
    return TryOnChoice(method=chosen, reason=reason, pipeline=TryOnPipeline(fill=fill, kontext=kontext, inpaint=inpaint),
                       models=models, run_lock=run_lock)

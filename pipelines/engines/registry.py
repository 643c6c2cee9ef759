"""The one registry of engines: ``--engine`` names, cheap probes, and ``auto``.

``auto`` picks the available engine of the highest priority (``flux`` 30, ``sdxl`` 20, ``grounded-sam`` 10,
``classic`` -100) and says which it picked and why; with no weights configured that is ``classic``.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.engines import classic, generative
from pipelines.engines.bundle import Engine, EngineEntry
from pipelines.errors import InputError
from pipelines.generation.settings import GenerationSettings

#: Every engine, by ``--engine`` name.
ENGINES: dict[str, EngineEntry] = {e.name: e for e in (classic.CLASSIC, classic.GROUNDED_SAM, generative.FLUX,
                                                       generative.SDXL)}


def engine_names() -> list[str]:
    """Every ``--engine`` value: ``auto`` then the engines."""
    return ["auto", *sorted(ENGINES)]


def get_engine(name: str = "auto", *, model_root: str | Path | None = None,
               settings: GenerationSettings | None = None) -> Engine:
    """Resolve an engine name to an engine.

    Args:
        name (`str`, *optional*, defaults to ``"auto"``): ``auto`` or an engine (see `engine_names`);
            ``classic`` is always there.
        model_root (`str | Path`, *optional*): where model weights live (``DIR/<org>/<name>/``).
        settings (`GenerationSettings`, *optional*): the generative engines' settings (the CLI and flows
            pass `VitrineSettings.generation`); default `GenerationSettings()`.

    Returns:
        An `Engine`; its ``describe()`` says which engine was picked and why.

    Raises:
        `InputError`: unknown engine name, or an explicitly requested engine whose weights are missing
        (the message says what is missing).
    """
    names = engine_names()
    if name not in names:
        raise InputError(f"unknown engine {name!r}; expected one of {', '.join(names)}", key="engine")
    if name != "auto":
        entry = ENGINES[name]
        ok, why = entry.probe(model_root, settings=settings)
        if not ok:
            raise InputError(f"engine {name!r} is not available: {why}", key="engine")
        return entry.build(name, "requested explicitly", model_root, settings=settings)
    skipped = []
    for entry in sorted(ENGINES.values(), key=lambda e: -e.priority):
        if entry.name == classic.CLASSIC.name:
            continue
        ok, why = entry.probe(model_root, settings=settings)
        if ok:
            return entry.build("auto", f"picked {entry.name}: {why}", model_root, settings=settings)
        skipped.append(f"{entry.name}: {why}")
    base = (
        "no generation model weights configured (no --model-root)"
        if model_root is None
        else f"no supported generation model found under {model_root}"
    )
    detail = f" ({'; '.join(skipped)})" if skipped else ""
    return classic.classic_engine("auto", base + detail + "; the embedded classic engine needs none")

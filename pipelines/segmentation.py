"""One segmentation interface over every engine: an image and a text prompt in, a 0/255 mask out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

#: Prompts the classic engine understands, by the target they select.
CLASSIC_PERSON_WORDS = frozenset({"person", "people", "human", "body", "model", "man", "woman", "figure"})
CLASSIC_PRODUCT_WORDS = frozenset({
    "product", "garment", "clothing", "clothes", "apparel", "shirt", "t-shirt", "tshirt", "tee", "top", "blouse",
    "dress", "skirt", "trousers", "pants", "jeans", "shorts", "jacket", "coat", "hoodie", "sweater", "bag", "tote",
    "shoe", "shoes", "sneaker", "sneakers", "hat", "scarf", "object", "item",
})


@dataclass
class SegmenterEntry:
    """A registered text-prompted segmentation backend.

    Attributes:
        name (`str`): the ``--engine`` value of ``vitrine segment``.
        segment (`Callable`): ``segment(image, prompt, *, model_root, threshold, **options) -> HxW uint8 0/255``.
        probe (`Callable`): ``probe(model_root) -> (available, reason)``; cheap (no model loading).
        priority (`int`): ``auto`` tries available backends from the highest priority down.
    """

    name: str
    segment: Callable[..., np.ndarray]
    probe: Callable[[str | Path | None], tuple[bool, str]]
    priority: int = 0


SEGMENTERS: dict[str, SegmenterEntry] = {}
#: Modules that register segmenters on import. A backend adds its module here.
SEGMENTER_MODULES: list[str] = []
SEGMENTER_MODULES.append("pipelines.grounded_sam.segmenter")  # GroundingDINO + SAM (issue 3)


def register_segmenter(entry: SegmenterEntry) -> SegmenterEntry:
    SEGMENTERS[entry.name] = entry
    return entry


def segmenter_names() -> list[str]:
    """Every segmentation ``--engine`` value: ``auto`` then the registered backends."""
    import importlib

    for mod in SEGMENTER_MODULES:
        importlib.import_module(mod)
    return ["auto", *sorted(SEGMENTERS)]


def resolve_segmenter(engine: str, model_root: str | Path | None) -> tuple[SegmenterEntry, str]:
    """Pick the backend for ``engine`` (``auto``: the best available); returns it and why."""
    names = segmenter_names()
    if engine not in names:
        raise InputError(f"unknown segmentation engine {engine!r}; expected one of {', '.join(names)}",
                         key="engine")
    if engine != "auto":
        entry = SEGMENTERS[engine]
        ok, why = entry.probe(model_root)
        if not ok:
            raise InputError(f"segmentation engine {engine!r} is not available: {why}", key="engine")
        return entry, "requested explicitly"
    reasons = []
    for entry in sorted(SEGMENTERS.values(), key=lambda e: -e.priority):
        ok, why = entry.probe(model_root)
        if ok:
            return entry, why
        reasons.append(f"{entry.name}: {why}")
    raise InputError("no segmentation backend available: " + "; ".join(reasons), key="engine")


def classic_target(prompt: str) -> str:
    """Map a free-text prompt to the classic engine's target: ``person`` or ``product``.

    Raises:
        `InputError`: for prompts the classic engine cannot segment (e.g. ``hair``), naming the ones it can.
    """
    words = [w for w in re.split(r"[\s,.;:/]+", prompt.lower()) if w]
    if not words:
        raise InputError("the prompt is empty", key="prompt")
    if any(w in CLASSIC_PERSON_WORDS for w in words):
        return "person"
    if any(w in CLASSIC_PRODUCT_WORDS for w in words):
        return "product"
    raise InputError(
        f"the classic engine cannot segment {prompt!r}: it knows 'person' (people in any scene) and "
        "'product'/'garment' (a product on a plain background). Text-prompted segmentation of any "
        "object needs the grounded-sam engine and its weights.",
        key="prompt",
    )


def segment_image(
    image: np.ndarray,
    prompt: str,
    *,
    engine: str = "classic",
    model_root: str | Path | None = None,
    threshold: float = 0.5,
    **options,
) -> np.ndarray:
    """Segment what ``prompt`` names in ``image``.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.
        prompt (`str`): what to segment, e.g. ``"person"`` or ``"garment"``.
        engine (`str`, *optional*, defaults to ``"classic"``): a registered backend (see
            `segmenter_names`), or ``auto`` for the best one whose weights are found under ``model_root``.
        model_root (`str | Path`, *optional*): where model weights live.
        threshold (`float`, *optional*, defaults to 0.5): soft-mask threshold, in [0, 1].
        **options: backend-specific options (e.g. ``box_threshold`` for grounded-sam).

    Returns:
        `np.ndarray`: HxW uint8 mask, 0 or 255, the image's exact size. All zeros when nothing is found.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an HxWx3 uint8 RGB image, got shape {getattr(image, 'shape', None)}")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}", key="threshold")
    entry, _why = resolve_segmenter(engine, model_root)
    return entry.segment(image, prompt, model_root=model_root, threshold=threshold, **options)


def classic_segment(image: np.ndarray, prompt: str, *, model_root=None, threshold: float = 0.5,
                    **options) -> np.ndarray:
    """The classic backend: mediapipe for ``person``, the border-colour cutout for products/garments."""
    if options:
        raise InputError(f"the classic engine takes no options {sorted(options)}", key=sorted(options)[0])
    target = classic_target(prompt)
    if target == "person":
        from .classic.person import segment_person

        return np.where(segment_person(image) >= threshold, 255, 0).astype(np.uint8)
    from .classic.cutout import cutout_product
    from .errors import NothingFoundError

    try:
        return cutout_product(image).mask
    except NothingFoundError:
        return np.zeros(image.shape[:2], np.uint8)


register_segmenter(SegmenterEntry(
    name="classic",
    segment=classic_segment,
    probe=lambda model_root: (True, "the embedded classic engine needs no weights"),
    priority=-100,
))

"""One segmentation interface over every engine: an image and a text prompt in, a 0/255 mask out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import InputError

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
SEGMENTER_MODULES.append("pipelines.segmentation.grounded_sam.segmenter")  # GroundingDINO + SAM (issue 3)


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


def _check_inputs(image: np.ndarray, threshold: float) -> None:
    """The checks both `segment_image` and `segment_image_detailed` make: an HxWx3 uint8 image, a threshold in
    [0, 1]."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an HxWx3 uint8 RGB image, got shape {getattr(image, 'shape', None)}")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}", key="threshold")


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
    _check_inputs(image, threshold)
    entry, _why = resolve_segmenter(engine, model_root)
    return entry.segment(image, prompt, model_root=model_root, threshold=threshold, **options)


def classic_segment(image: np.ndarray, prompt: str, *, model_root=None, threshold: float = 0.5,
                    **options) -> np.ndarray:
    """The classic backend: mediapipe for ``person``, the border-colour cutout for products/garments."""
    if options:
        raise InputError(f"the classic engine takes no options {sorted(options)}", key=sorted(options)[0])
    target = classic_target(prompt)
    if target == "person":
        from pipelines.segmentation.person import segment_person

        return np.where(segment_person(image) >= threshold, 255, 0).astype(np.uint8)
    from pipelines.segmentation.cutout import cutout_product
    from pipelines.errors import NothingFoundError

    check_classic_can_isolate(image, prompt)
    try:
        return cutout_product(image).mask
    except NothingFoundError:
        return np.zeros(image.shape[:2], np.uint8)


#: A photo shows a person (for `check_classic_can_isolate`) when the classic pose estimator finds at least
#: this many COCO-17 keypoints with a score above 0.5. (The person *mask* is no test: it also fires on
#: garments alone, on 26 of 56 real shop garment photos; the pose fires on 1 of 56 and on 12 of 12 people,
#: ``bench/classic_prompt_limits.py``.)
CLASSIC_PERSON_KEYPOINTS = 6


def check_classic_can_isolate(image: np.ndarray, prompt: str) -> None:
    """Refuse a product/garment prompt that the classic engine would answer with the whole body.

    The classic engine's product cutout takes the whole foreground of a plain-background photo. On a
    photo of a person (at least `CLASSIC_PERSON_KEYPOINTS` confident body keypoints from the classic pose
    estimator) that foreground is the person, so ``"upper garment"``, ``"shirt"`` or ``"product"`` would
    silently return the whole body. This raises instead, saying what classic can isolate and suggesting
    grounded-sam.

    Raises:
        `InputError`: the photo shows a person and the prompt is not a person prompt.
    """
    from pipelines.controls.pose import get_pose_estimator

    found = int((get_pose_estimator()(image).keypoints[:, 2] > 0.5).sum())
    if found >= CLASSIC_PERSON_KEYPOINTS:
        raise InputError(
            f"the classic engine cannot isolate {prompt!r} on this photo: it shows a person ({found} body "
            "keypoints found), and classic isolates only the whole person ('person') or a whole product on a plain "
            "background ('product'); its cutout here would be the whole body. Use --engine grounded-sam "
            "(text-prompted, e.g. --prompt 'upper garment'), or paint masks/product.png",
            key="prompt",
        )


def segment_image_detailed(
    image: np.ndarray,
    prompt: str,
    *,
    engine: str = "classic",
    model_root: str | Path | None = None,
    threshold: float = 0.5,
    **options,
) -> tuple[np.ndarray, dict]:
    """`segment_image` plus what was found: the mask and a JSON-ready report (``vitrine segment --json``).

    The report has ``engine``, ``engine_reason``, ``prompt``, ``found``, ``reason``, ``area_fraction``,
    ``mask_threshold``, ``box_threshold``/``text_threshold`` (the thresholds of the last attempt; `None`
    for classic), ``boxes`` (``[{"box": [x0, y0, x1, y1] pixels, "score", "label", "phrases",
    "text_score", "used"}]``, best first), ``attempts`` (each threshold pair tried and what it kept or
    dropped), ``rejected_boxes`` (whole-person boxes dropped for a garment prompt), ``policy``; grounded-sam
    adds its ``mask_scores``, ``excluded``, ``models`` and ``timings``. For classic, ``boxes`` holds the
    mask's bounding box with ``score`` `None`.

    Returns:
        `tuple[np.ndarray, dict]`: HxW uint8 0/255 mask and the report.
    """
    _check_inputs(image, threshold)
    entry, why = resolve_segmenter(engine, model_root)
    if entry.name == "grounded-sam":
        from pipelines.segmentation.grounded_sam.segmenter import OPTIONS, segment_detailed

        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InputError(f"the grounded-sam engine takes no option {unknown[0]!r}", key=unknown[0])
        out = segment_detailed(image, prompt, model_root=model_root, threshold=threshold, **options)
        info = out.to_json()
        used = set(out.used)
        boxes = [{**d, "used": i in used} for i, d in enumerate(info.pop("detections"))]
        info.pop("used", None)
        report = {"engine": entry.name, "engine_reason": why, "mask_threshold": threshold, **info,
                  "prompt": prompt, "caption": out.prompt, "boxes": boxes}
        return out.mask, report
    mask = entry.segment(image, prompt, model_root=model_root, threshold=threshold, **options)
    ys, xs = np.nonzero(mask)
    boxes = ([{"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], "score": None,
               "label": classic_target(prompt), "phrases": [], "text_score": None, "used": True}]
             if len(xs) else [])
    found = bool(len(xs))
    report = {
        "engine": entry.name, "engine_reason": why, "prompt": prompt, "target": classic_target(prompt),
        "found": found, "reason": f"classic {classic_target(prompt)} segmentation" + ("" if found else ": nothing found"),
        "area_fraction": round(float((mask > 0).mean()), 4), "mask_threshold": threshold,
        "box_threshold": None, "text_threshold": None, "policy": None, "boxes": boxes, "attempts": [],
        "rejected_boxes": [],
    }
    return mask, report


register_segmenter(SegmenterEntry(
    name="classic",
    segment=classic_segment,
    probe=lambda model_root: (True, "the embedded classic engine needs no weights"),
    priority=-100,
))

"""One segmentation interface over every backend: an image and a text prompt in, a 0/255 mask out; and the
one registry of segmentation backends (`SEGMENTERS`), which the engines use for their segmentation stage too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError
from pipelines.segmentation import classic
from pipelines.segmentation.grounded_sam import loading as grounded_sam_loading
from pipelines.segmentation.grounded_sam import segmenter as grounded_sam
from pipelines.segmentation.subject import Segmenter


@dataclass(frozen=True)
class SegmenterEntry:
    """A segmentation backend.

    Attributes:
        name (`str`): the ``--engine`` value of ``vitrine segment``.
        probe (`Callable`): ``probe(model_root) -> (available, reason)``; cheap (no model loading).
        priority (`int`): ``auto`` tries available backends from the highest priority down.
        build (`Callable`): ``build(model_root) -> Segmenter``: the subject-finding stage of an engine.
        segment (`Callable`): ``segment(image, prompt, *, model_root, threshold, **options) -> HxW uint8 0/255``.
        segment_detailed (`Callable`): the same with its report: ``-> (mask, report)``.
    """

    name: str
    probe: Callable[[str | Path | None], tuple[bool, str]]
    priority: int
    build: Callable[[str | Path | None], Segmenter]
    segment: Callable[..., np.ndarray]
    segment_detailed: Callable[..., tuple[np.ndarray, dict[str, Any]]]


CLASSIC = SegmenterEntry(
    name="classic",
    probe=lambda model_root: (True, "the embedded classic engine needs no weights"),
    priority=-100,
    build=lambda model_root: classic.ClassicSegmenter(),
    segment=classic.classic_segment,
    segment_detailed=classic.classic_segment_detailed,
)
GROUNDED_SAM = SegmenterEntry(
    name=grounded_sam.NAME,
    probe=grounded_sam_loading.probe,
    priority=10,
    build=lambda model_root: grounded_sam.GroundedSamSegmenter(model_root),
    segment=grounded_sam.segment,
    segment_detailed=grounded_sam.segment_detailed,
)
#: Every segmentation backend, by name.
SEGMENTERS: dict[str, SegmenterEntry] = {e.name: e for e in (CLASSIC, GROUNDED_SAM)}


def segmenter_names() -> list[str]:
    """Every segmentation ``--engine`` value: ``auto`` then the backends."""
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


def best_segmenter(model_root: str | Path | None) -> Segmenter:
    """The subject segmentation of the best backend whose models are found under ``model_root`` (grounded-sam
    when found, else classic): what the generative engines segment with."""
    entry, _why = resolve_segmenter("auto", model_root)
    return entry.build(model_root)


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
        engine (`str`, *optional*, defaults to ``"classic"``): a backend (see `segmenter_names`), or ``auto``
            for the best one whose weights are found under ``model_root``.
        model_root (`str | Path`, *optional*): where model weights live.
        threshold (`float`, *optional*, defaults to 0.5): soft-mask threshold, in [0, 1].
        **options: backend-specific options (e.g. ``box_threshold`` for grounded-sam).

    Returns:
        `np.ndarray`: HxW uint8 mask, 0 or 255, the image's exact size. All zeros when nothing is found.
    """
    _check_inputs(image, threshold)
    entry, _why = resolve_segmenter(engine, model_root)
    return entry.segment(image, prompt, model_root=model_root, threshold=threshold, **options)


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
    mask, report = entry.segment_detailed(image, prompt, model_root=model_root, threshold=threshold, **options)
    return mask, {"engine": entry.name, "engine_reason": why, **report}

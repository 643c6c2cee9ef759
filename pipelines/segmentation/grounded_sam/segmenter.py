"""The ``grounded-sam`` backend of `pipelines.segmentation.api.segment_image` (``vitrine segment --engine grounded-sam``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.errors import InputError
from pipelines.segmentation.api import SegmenterEntry, register_segmenter
from pipelines.segmentation.grounded_sam.loading import probe

logger = logging.getLogger(__name__)

#: Options `segment` accepts besides the prompt and ``threshold`` (the mask threshold).
OPTIONS = ("box_threshold", "text_threshold", "policy", "retry", "exclude", "edges", "detector", "sam", "device",
           "dtype", "person_box_cover")


def segment_detailed(image: np.ndarray, prompt: str, *, model_root: str | Path | None = None,
                     threshold: float | None = None, box_threshold: float | None = None,
                     text_threshold: float | None = None, policy: str | None = None, retry: bool = True,
                     exclude: Sequence[str] = (), edges: str | None = None, detector: str | None = None,
                     sam: str | None = None, device: str | None = None, dtype: str | None = None,
                     person_box_cover: float | None | str = "default"):
    """Segment ``prompt`` in ``image`` with grounded-sam; returns the full `GroundedSamOutput`.

    A prompt that names a preset exactly (``"upper garment"``, ``"hands"``, see `pipelines.segmentation.prompts`) takes
    that preset's phrases, thresholds, policy and edges; explicit arguments win over the preset.
    ``exclude`` items may be preset names too (``["hair", "hands"]``). ``person_box_cover``: see
    `pipelines.segmentation.grounded_sam.person_box` (``"default"``: 0.9; `None`: keep whole-person boxes).
    """
    from pipelines.masks import RefineOptions
    from pipelines.segmentation.prompts import find_preset
    from pipelines.segmentation.phrases import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, split_phrases
    from pipelines.segmentation.grounded_sam.person_box import DEFAULT_PERSON_BOX_COVER
    from pipelines.segmentation.grounded_sam.pipeline import GroundedSam

    # 1. The prompt: a preset's settings, or the generic defaults; explicit arguments win.
    named = find_preset(prompt)
    phrases = list(named.phrases) if named else split_phrases(prompt)
    base = (named.box_threshold, named.text_threshold, named.policy, named.edges) if named else (
        DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, "merge", "hard")
    box_threshold = base[0] if box_threshold is None else box_threshold
    text_threshold = base[1] if text_threshold is None else text_threshold
    policy = policy or base[2]
    refine = RefineOptions(edges=edges or base[3])
    excluded = [list(p.phrases) if (p := find_preset(item)) else item for item in exclude]

    # 2. The models (found and loaded once per process), then the pipeline.
    pipe = GroundedSam.from_models(model_root, detector=detector, sam=sam, device=device, dtype=dtype)
    return pipe(image, phrases, box_threshold=box_threshold, text_threshold=text_threshold,
                mask_threshold=0.5 if threshold is None else threshold, policy=policy, retry=retry,
                exclude=excluded, refine=refine,
                person_box_cover=DEFAULT_PERSON_BOX_COVER if person_box_cover == "default" else person_box_cover)


def segment(image: np.ndarray, prompt: str, *, model_root: str | Path | None = None, threshold: float = 0.5,
            **options) -> np.ndarray:
    """`SegmenterEntry.segment` for grounded-sam: HxW uint8 0/255 mask; all zeros (and a warning) when nothing
    is found. Options: see `OPTIONS` and `segment_detailed`."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"the grounded-sam engine takes no option {unknown[0]!r}; it takes {', '.join(OPTIONS)}",
                         key=unknown[0])
    out = segment_detailed(image, prompt, model_root=model_root, threshold=threshold, **options)
    if not out.found:
        logger.warning("grounded-sam found nothing for %r: %s; the mask is empty", prompt, out.reason)
    return out.mask


register_segmenter(SegmenterEntry(name="grounded-sam", segment=segment, probe=probe, priority=10))

"""The ``grounded-sam`` segmentation backend: text-prompted subjects for any engine (`GroundedSamSegmenter`)
and the ``grounded-sam`` backend of `pipelines.segmentation.api.segment_image` (``vitrine segment``).

In a batch the subject (the garment on a plain background, the person in a scene) is segmented by
GroundingDINO + Segment Anything with the prompt of the product's preset or ``product.yaml``. An
analyst's mask override still wins (white = include, black = exclude, grey = the model decides); when
grounded-sam finds nothing and no override adds anything, the classic segmentation takes over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import InputError, NothingFoundError
from pipelines.masks import RefineOptions
from pipelines.segmentation.classic import ClassicSegmenter
from pipelines.segmentation.cutout import cutout_product, estimate_background
from pipelines.segmentation.phrases import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, split_phrases
from pipelines.segmentation.grounded_sam.loading import ModelRecord, default_device, resolve_models
from pipelines.segmentation.grounded_sam.person_box import DEFAULT_PERSON_BOX_COVER
from pipelines.segmentation.grounded_sam.pipeline import GroundedSam
from pipelines.segmentation.overrides import apply_first_override
from pipelines.segmentation.prompts import find_preset, resolve_prompt
from pipelines.segmentation.route import route_subject
from pipelines.segmentation.subject import PLAIN_BACKGROUND_UNIFORMITY, Subject, subject_bbox

if TYPE_CHECKING:
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product

logger = logging.getLogger(__name__)

NAME = "grounded-sam"
#: Options `segment` accepts besides the prompt and ``threshold`` (the mask threshold).
OPTIONS = ("box_threshold", "text_threshold", "policy", "retry", "exclude", "edges", "detector", "sam", "device",
           "dtype", "person_box_cover")


class GroundedSamSegmenter:
    """Subjects segmented by grounded-sam, the classic segmentation as the fallback.

    Args:
        model_root (`str | Path`, *optional*): where the models are (``DIR/<org>/<name>/``), then the HF cache.
        detector, sam (`str`, *optional*): model ids; default: the best found (see `resolve_models`).
        device, dtype (`str`, *optional*): where and how to run the models (default: cuda if present, float32).
        fallback (`ClassicSegmenter`, *optional*): what segments when grounded-sam finds nothing.

    Raises:
        `InputError`: the models are not found (the message says what was looked for and where).
    """

    kind = NAME
    uses_gpu = True

    def __init__(self, model_root: str | Path | None = None, *, detector: str | None = None, sam: str | None = None,
                 device: str | None = None, dtype: str | None = None, fallback: ClassicSegmenter | None = None):
        self.model_root = model_root
        self.device = device
        self.dtype = dtype
        self.fallback = fallback or ClassicSegmenter()
        self.detector_record, self.mask_record = resolve_models(model_root, detector, sam,
                                                                device=device or default_device())
        self._pipeline: GroundedSam | None = None

    @property
    def records(self) -> list[ModelRecord]:
        return [self.detector_record, self.mask_record]

    def pipeline(self) -> GroundedSam:
        """The `GroundedSam` pipeline (models loaded on first use, once per process)."""
        if self._pipeline is None:
            self._pipeline = GroundedSam.from_models(
                self.model_root, detector=self.detector_record.id,
                sam=self.mask_record.id if self.mask_record.source != "file" and not self.mask_record.file
                else str(Path(self.mask_record.path) / str(self.mask_record.file)),
                device=self.device, dtype=self.dtype)
        return self._pipeline

    def backends(self) -> dict[str, str]:
        models = f"{self.detector_record.label} + {self.mask_record.label}"
        return {
            **self.fallback.backends(),
            "product_segmentation": f"grounded-sam ({self.detector_record.backend}/{self.mask_record.backend}): "
                                    f"{models}; prompt from product.yaml or the garment_type preset",
            "person_segmentation": f"grounded-sam: {models}, preset 'person'",
            "segmentation_fallback": "classic (border colour + GrabCut, mediapipe) when grounded-sam finds nothing",
        }

    def models(self) -> list[dict[str, Any]]:
        return [rec.to_json() for rec in self.records] + self.fallback.models()

    @staticmethod
    def route_photo(rgb: np.ndarray) -> tuple[str, str, tuple[str, ...], str, dict[str, Any]]:
        """What to segment in ``rgb`` (HxWx3 uint8): ``(kind, prompt target, override targets, why, facts)``.

        ``kind``/``target`` are ``product``/``garment`` for a product on a plain backdrop (border uniformity >=
        `PLAIN_BACKGROUND_UNIFORMITY` and no person evidence), else ``person``/``person``; ``facts`` holds
        ``background_uniformity`` and ``evidence`` (`pipelines.segmentation.route.RouteEvidence.to_json`).
        """
        _, _, uniformity = estimate_background(rgb)
        plain = uniformity >= PLAIN_BACKGROUND_UNIFORMITY
        backdrop = f"border uniformity {uniformity:.2f} {'>=' if plain else '<'} {PLAIN_BACKGROUND_UNIFORMITY}"
        cut = None
        if plain:  # the backdrop model's foreground: keypoints and faces on the empty backdrop do not count
            try:
                cut = cutout_product(rgb)
            except NothingFoundError:
                cut = None
        evidence = route_subject(rgb, cut.mask if cut is not None else None)
        facts = {"background_uniformity": round(uniformity, 4), "evidence": evidence.to_json()}
        if plain and not evidence.person:
            return "product", "garment", ("product", "garment"), (
                f"product on a plain background ({backdrop}); {evidence.reason}"), facts
        if evidence.person:
            return "person", "person", ("person",), f"person in frame ({evidence.reason}; {backdrop})", facts
        return "person", "person", ("person",), f"scene background ({backdrop}); {evidence.reason}", facts

    def find_subject(self, image: LoadedImage, product: Product) -> Subject:
        """Segment the product or the person with grounded-sam, routed by evidence of a person; apply overrides.

        The prompt and thresholds come from `pipelines.segmentation.prompts.resolve_prompt` (``product.yaml`` over the
        preset); ``Subject.metrics["grounded_sam"]`` records the prompt, each threshold's origin, every attempt,
        the boxes and the models.
        """
        # 1. A transparent input is already cut out: nothing to segment.
        if image.alpha is not None and int(image.alpha.min()) < 250:
            return self.fallback.find_subject(image, product)

        # 2. What to segment: decided by evidence of a person (a face, pose keypoints on the subject:
        #    `pipelines.segmentation.route`), as the classic segmenter decides, not by how plain the backdrop is
        #    (an on-model photo on a white sweep is as plain as a flat lay). Only a product on a plain backdrop
        #    is segmented as a garment; a person, or a scene, is segmented as the person.
        kind, target, targets, why, route = self.route_photo(image.rgb)
        resolved = resolve_prompt(product.spec, target)

        # 3. Segment.
        out = self.pipeline()(image.rgb, list(resolved.phrases), box_threshold=resolved.box_threshold,
                              text_threshold=resolved.text_threshold, mask_threshold=resolved.mask_threshold,
                              policy=resolved.policy, refine=RefineOptions(edges=resolved.edges))
        metrics: dict[str, Any] = {"background_uniformity": route["background_uniformity"],
                                   "route": route["evidence"],
                                   "grounded_sam": {**out.to_json(), "resolved": resolved.to_json()}}

        # 4. The analyst's override wins over the model.
        alpha, override = apply_first_override(out.alpha, image, product, targets)
        source = NAME
        if override is not None:
            source += "+override"
            metrics["override"] = override

        # 5. Nothing found and nothing painted: the classic segmentation takes over (and may fail cleanly).
        if not (alpha >= 128).any():
            subject = self.fallback.find_subject(image, product)
            subject.reason = (f"grounded-sam found nothing ({out.reason}); classic fallback: {subject.reason}")
            subject.metrics = {**subject.metrics, "grounded_sam": metrics["grounded_sam"], "fallback": "classic"}
            return subject
        reason = f"{why}: grounded-sam {resolved.target} with {self.detector_record.id} + {self.mask_record.id}: " \
                 f"{out.reason}"
        if "override" in metrics:
            reason += f"; analyst override {metrics['override']} applied"
        metrics["area_fraction"] = round(float((alpha >= 128).mean()), 4)
        return Subject(kind=kind, source=source, alpha=alpha, bbox=subject_bbox(alpha), reason=reason, metrics=metrics)


# -- text prompts (``vitrine segment --engine grounded-sam``) ------------------------------------------
def segment_output(image: np.ndarray, prompt: str, *, model_root: str | Path | None = None,
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


def _check_options(options: dict[str, Any], *, list_known: bool = True) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        known = f"; it takes {', '.join(OPTIONS)}" if list_known else ""
        raise InputError(f"the grounded-sam engine takes no option {unknown[0]!r}{known}", key=unknown[0])


def segment(image: np.ndarray, prompt: str, *, model_root: str | Path | None = None, threshold: float = 0.5,
            **options) -> np.ndarray:
    """HxW uint8 0/255 mask of ``prompt``; all zeros (and a warning) when nothing is found. Options: see
    `OPTIONS` and `segment_output`."""
    _check_options(options)
    out = segment_output(image, prompt, model_root=model_root, threshold=threshold, **options)
    if not out.found:
        logger.warning("grounded-sam found nothing for %r: %s; the mask is empty", prompt, out.reason)
    return out.mask


def segment_detailed(image: np.ndarray, prompt: str, *, model_root: str | Path | None = None,
                     threshold: float = 0.5, **options) -> tuple[np.ndarray, dict[str, Any]]:
    """`segment` and its report (see `pipelines.segmentation.api.segment_image_detailed`): the pipeline's
    output as JSON, ``boxes`` marked ``used``. The report's ``engine``/``engine_reason`` are added by the
    caller."""
    _check_options(options, list_known=False)
    out = segment_output(image, prompt, model_root=model_root, threshold=threshold, **options)
    info = out.to_json()
    used = set(out.used)
    boxes = [{**d, "used": i in used} for i, d in enumerate(info.pop("detections"))]
    info.pop("used", None)
    report = {"mask_threshold": threshold, **info, "prompt": prompt, "caption": out.prompt, "boxes": boxes}
    return out.mask, report

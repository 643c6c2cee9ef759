"""The grounded-sam pipeline: text prompt -> GroundingDINO boxes -> Segment Anything masks -> refined alpha.

The pipeline receives its two models (tests pass tiny ones, production real ones); `GroundedSam.from_models`
finds and loads them, once per process. Any detector with ``detect(image, phrases) -> DetectorOutput`` and
any mask model with ``set_image`` / ``predict_low_res`` / ``upscale`` fits (see `backends` and `original`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError
from pipelines.masks import RefineOptions, refine_mask
from pipelines.segmentation.grounded_sam.detection import (
    Detection,
    Grounding,
    caption_for,
    check_policy,
    check_threshold,
    ground,
)
from pipelines.segmentation.grounded_sam.loading import ModelRecord, load_detector, load_mask_predictor, require_backend, resolve_models
from pipelines.segmentation.phrases import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, split_phrases
from pipelines.segmentation.grounded_sam.person_box import DEFAULT_PERSON_BOX_COVER, is_garment_prompt, reject_whole_person_boxes

logger = logging.getLogger(__name__)

_MODEL_LOCKS: dict[int, threading.RLock] = {}


def model_lock(component) -> threading.RLock:
    """One lock per loaded model: the mask model keeps the current image's embedding between calls, and
    the batch runs SKUs in threads that share the models."""
    return _MODEL_LOCKS.setdefault(id(component), threading.RLock())


@dataclass
class GroundedSamOutput:
    """What `GroundedSam` found.

    Attributes:
        mask (`np.ndarray`): HxW uint8, 0 or 255, the input's exact size; all zeros when nothing was found.
        alpha (`np.ndarray`): HxW uint8 refined alpha (equal to ``mask`` with hard edges; soft with
            feathered/matted ones, with ``alpha >= 128`` where ``mask`` is 255).
        found (`bool`): whether the mask is non-empty. ``False`` is the clean "nothing found" result.
        reason (`str`): one line: what was found, or why nothing was.
        prompt (`str`): the caption sent to GroundingDINO (``"shirt . t-shirt ."``).
        detections (`list[Detection]`): boxes that passed both thresholds (XYXY pixels), best first.
        used (`list[int]`): indices of ``detections`` whose masks make ``mask`` (per ``policy``).
        attempts (`list[dict]`): each threshold pair tried and what it kept/dropped.
        box_threshold, text_threshold (`float`): the thresholds of the last attempt.
        policy (`str`): ``merge``, ``best`` or ``largest``.
        mask_scores (`list[float]`): SAM's predicted IoU for each used box.
        excluded (`dict`): occluder prompt -> number of boxes subtracted.
        models (`list[dict]`): the models used (manifest records).
        timings (`dict[str, float]`): seconds per step.
        rejected (`list[dict]`): boxes dropped for covering the whole person when a garment was asked for
            (`pipelines.segmentation.grounded_sam.person_box`).
    """

    mask: np.ndarray
    alpha: np.ndarray
    found: bool
    reason: str
    prompt: str
    detections: list[Detection] = field(default_factory=list)
    used: list[int] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    box_threshold: float = DEFAULT_BOX_THRESHOLD
    text_threshold: float = DEFAULT_TEXT_THRESHOLD
    policy: str = "merge"
    mask_scores: list[float] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def relaxed(self) -> bool:
        """Whether the thresholds had to be relaxed for a box to survive."""
        return self.found and len(self.attempts) > 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary for manifests and logs (no arrays)."""
        return {
            "found": self.found,
            "reason": self.reason,
            "prompt": self.prompt,
            "policy": self.policy,
            "box_threshold": round(self.box_threshold, 4),
            "text_threshold": round(self.text_threshold, 4),
            "relaxed": self.relaxed,
            "attempts": self.attempts,
            "detections": [d.to_json() for d in self.detections],
            "used": list(self.used),
            "mask_scores": [round(float(s), 4) for s in self.mask_scores],
            "excluded": dict(self.excluded),
            "area_fraction": round(float((self.mask > 0).mean()), 4) if self.mask.size else 0.0,
            "models": [m["id"] for m in self.models],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "rejected_boxes": list(self.rejected),
        }


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an HxWx3 uint8 RGB image, got {getattr(image, 'dtype', type(image).__name__)} "
                         f"of shape {getattr(image, 'shape', None)}", key="image")
    if min(image.shape[:2]) < 2:
        raise InputError(f"the image is too small: {image.shape[1]}x{image.shape[0]}", key="image")


class GroundedSam:
    """Text-prompted segmentation: GroundingDINO boxes, Segment Anything masks, `pipelines.masks` refinement.

    Args:
        detector: has ``detect(image, phrases) -> DetectorOutput``.
        mask_predictor: has ``set_image(image)``, ``predict_low_res(boxes) -> (logits, ious)`` and
            ``upscale(logits) -> probabilities``.
        models (`list[ModelRecord]`, *optional*): what ``detector``/``mask_predictor`` are, for the manifest.
    """

    def __init__(self, detector, mask_predictor, models: Sequence[ModelRecord] = ()):
        self.detector = detector
        self.mask_predictor = mask_predictor
        self.models = list(models)

    @classmethod
    def from_models(cls, model_root: str | Path | None = None, *, detector: str | None = None,
                    sam: str | None = None, device: str | None = None, dtype: str | None = None,
                    original_shorter_side: int | None = None) -> GroundedSam:
        """Find (`resolve_models`) and load (cached per process) a detector and a mask model.

        Args:
            model_root (`str | Path`, *optional*): ``DIR/<org>/<name>/`` snapshots; then the HF cache.
            detector (`str`, *optional*): GroundingDINO repo id; default: the best found.
            sam (`str`, *optional*): Segment Anything repo id or ``.pth`` file; default: the best found.
            device (`str`, *optional*): ``cuda`` when available, else ``cpu``.
            dtype (`str`, *optional*, defaults to ``"float32"``): ``float32``, ``float16`` or ``bfloat16``.
            original_shorter_side (`int`, *optional*): image size for groundingdino-py checkpoints
                (default 800 like upstream; tests use less).
        """
        from pipelines.segmentation.grounded_sam.loading import default_device

        det_rec, mask_rec = resolve_models(model_root, detector, sam, device=device or default_device())
        for rec in (det_rec, mask_rec):
            require_backend(rec)
        return cls(load_detector(det_rec, device=device, dtype=dtype, original_shorter_side=original_shorter_side),
                   load_mask_predictor(mask_rec, device=device, dtype=dtype), [det_rec, mask_rec])

    # -- steps ----------------------------------------------------------------------------------------
    def ground(self, image: np.ndarray, phrases: Sequence[str], box_threshold: float, text_threshold: float, *,
               retry: bool = True) -> tuple[Grounding, str]:
        """Boxes for ``phrases`` (one detector run; relaxed re-selections when none survive)."""
        with model_lock(self.detector):
            raw = self.detector.detect(image, list(phrases))
        return ground(raw, box_threshold, text_threshold, retry=retry), caption_for(phrases)

    def masks_for(self, detections: list[Detection], policy: str, mask_threshold: float
                  ) -> tuple[np.ndarray, list[int], list[float]]:
        """The probability map of ``detections`` combined by ``policy`` (the image must be set).

        Returns:
            ``(probabilities HxW float32, indices used, SAM IoU scores of those)``.
        """
        if policy == "best":  # detections come sorted by box score
            chosen = [0]
        else:
            chosen = list(range(len(detections)))
        boxes = np.array([detections[i].box for i in chosen], np.float32)
        low, ious = self.mask_predictor.predict_low_res(boxes)
        if policy == "merge":  # union of the full-size masks: upscale each, then the pixelwise max
            probs = self.mask_predictor.upscale(low[:1])[0]
            for k in range(1, len(chosen)):  # one full-size mask at a time (memory)
                np.maximum(probs, self.mask_predictor.upscale(low[k:k + 1])[0], out=probs)
            return probs, chosen, [float(s) for s in ious]
        if policy == "best":
            return self.mask_predictor.upscale(low[:1])[0], chosen, [float(ious[0])]
        best_i, best_area, best_probs = 0, -1, None
        for k in range(len(chosen)):  # largest: one full-size mask at a time
            probs = self.mask_predictor.upscale(low[k:k + 1])[0]
            area = int((probs >= mask_threshold).sum())
            if area > best_area:
                best_i, best_area, best_probs = k, area, probs
        return best_probs, [chosen[best_i]], [float(ious[best_i])]

    # -- call -----------------------------------------------------------------------------------------
    def __call__(
        self,
        image: np.ndarray,
        prompt: str | Sequence[str],
        *,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        mask_threshold: float = 0.5,
        policy: str = "merge",
        retry: bool = True,
        exclude: Sequence[str | Sequence[str]] = (),
        refine: RefineOptions | None = None,
        person_box_cover: float | None = DEFAULT_PERSON_BOX_COVER,
    ) -> GroundedSamOutput:
        """Segment what ``prompt`` names in ``image``.

        Args:
            image (`np.ndarray`): HxWx3 uint8 RGB, values in [0, 255].
            prompt (`str | Sequence[str]`): phrases separated by ``.`` (``"shirt. t-shirt."``) or a list.
            box_threshold (`float`, *optional*, defaults to 0.35): keep a box when its box score (highest
                probability of any prompt token) is greater than this, in [0, 1].
            text_threshold (`float`, *optional*, defaults to 0.25): attach a phrase to a kept box when one of
                its tokens has a probability greater than this, in [0, 1]; boxes with no phrase are dropped.
            mask_threshold (`float`, *optional*, defaults to 0.5): a pixel is foreground when SAM's probability
                is at least this, in [0, 1].
            policy (`str`, *optional*, defaults to ``"merge"``): with several boxes, ``merge`` unites every
                mask, ``best`` keeps the highest box score's, ``largest`` the largest mask.
            retry (`bool`, *optional*, defaults to `True`): when no box survives, retry with both thresholds
                relaxed (x0.75, then x0.5, never below 0.05) before answering "nothing found".
            exclude (`Sequence`, *optional*): occluder prompts (``["hair", "hand"]``) whose masks are
                subtracted (garment minus occluders). They use the same thresholds, without retries.
            refine (`RefineOptions`, *optional*): mask clean-up; defaults to `RefineOptions()`.
            person_box_cover (`float | None`, *optional*, defaults to 0.9): when the prompt names a garment,
                drop boxes covering at least this share of the person's box (`pipelines.segmentation.grounded_sam.person_box`);
                `None` keeps them.

        Returns:
            `GroundedSamOutput`; ``found=False`` with an all-zero mask when nothing is found (never raises for
            that).
        """
        timings: dict[str, float] = {}
        # 1. Check inputs.
        _check_image(image)
        box_threshold = check_threshold("box_threshold", box_threshold)
        text_threshold = check_threshold("text_threshold", text_threshold)
        mask_threshold = check_threshold("mask_threshold", mask_threshold)
        policy = check_policy(policy)
        phrases = split_phrases(prompt)
        h, w = image.shape[:2]
        empty = np.zeros((h, w), np.uint8)
        models = [m.to_json() for m in self.models]

        # 2. Boxes from text.
        t = time.perf_counter()
        grounding, caption = self.ground(image, phrases, box_threshold, text_threshold, retry=retry)
        timings["detect"] = time.perf_counter() - t
        attempts = [a.to_json() for a in grounding.attempts]
        last = grounding.attempts[-1]
        common = {"prompt": caption, "attempts": attempts, "box_threshold": last.box_threshold,
                  "text_threshold": last.text_threshold, "policy": policy, "models": models, "timings": timings}
        if not grounding.found:
            tried = ", ".join(f"{a['box_threshold']:.3g}/{a['text_threshold']:.3g}" for a in attempts)
            reason = f"no box for {caption!r} passed box/text thresholds {tried}"
            logger.info("grounded-sam: %s", reason)
            return GroundedSamOutput(empty, empty.copy(), False, reason, **common)
        detections = grounding.detections
        rejected: list[dict[str, Any]] = []
        if person_box_cover is not None and is_garment_prompt(phrases):
            detections, rejected = self._reject_person_boxes(image, detections, last, person_box_cover)
            if not detections:
                reason = (f"every box for {caption!r} covered the whole person ({len(rejected)} rejected); a garment "
                          "was asked for (pass person_box_cover=None / --keep-person-box to keep them)")
                logger.info("grounded-sam: %s", reason)
                return GroundedSamOutput(empty, empty.copy(), False, reason, rejected=rejected, **common)

        # 3. Masks from boxes, combined by the policy (the image embedding is computed once, under a lock).
        occluders, excluded = None, {}
        with model_lock(self.mask_predictor):
            t = time.perf_counter()
            self.mask_predictor.set_image(image)
            timings["encode"] = time.perf_counter() - t
            t = time.perf_counter()
            probs, used, scores = self.masks_for(detections, policy, mask_threshold)
            mask = probs >= mask_threshold

            # 4. Occluders to subtract.
            for item in exclude:
                occ, occ_caption = self.ground(image, split_phrases(item), box_threshold, text_threshold,
                                               retry=False)
                excluded[occ_caption] = len(occ.detections)
                if occ.found:
                    occ_probs, _, _ = self.masks_for(occ.detections, "merge", mask_threshold)
                    occluders = (occ_probs >= mask_threshold) | (occluders if occluders is not None else False)
            timings["masks"] = time.perf_counter() - t

        # 5. Refine.
        t = time.perf_counter()
        alpha = refine_mask(mask, refine, image=image, exclude=occluders)
        timings["refine"] = time.perf_counter() - t
        out_mask = np.where(alpha >= 128, 255, 0).astype(np.uint8)
        found = bool(out_mask.any())
        labels = sorted({detections[i].label for i in used})
        if found:
            reason = (f"{len(detections)} box(es) for {caption!r}, {policy} of {len(used)} "
                      f"({', '.join(labels)}), box/text thresholds {last.box_threshold:.3g}/{last.text_threshold:.3g}"
                      + (" (relaxed)" if len(attempts) > 1 else ""))
        else:
            reason = f"{len(detections)} box(es) for {caption!r} but their masks are empty at {mask_threshold}"
        return GroundedSamOutput(out_mask, alpha if found else empty.copy(), found, reason,
                                 detections=detections, used=used, mask_scores=scores, excluded=excluded,
                                 rejected=rejected, **common)

    def _reject_person_boxes(self, image: np.ndarray, detections: list[Detection], last, cover: float
                             ) -> tuple[list[Detection], list[dict[str, Any]]]:
        """The whole-person policy: find the person with the same detector, drop boxes covering it."""
        person, _caption = self.ground(image, ["person"], last.box_threshold, last.text_threshold, retry=False)
        if not person.found:
            return detections, []
        best = max(person.detections, key=lambda d: d.score)
        return reject_whole_person_boxes(detections, best.box, cover)

"""The ``grounded-sam`` engine: the classic engine with text-prompted segmentation of the subject.

Only `find_subject` changes: the subject (the garment on a plain background, the person in a scene) is
segmented by GroundingDINO + Segment Anything with the prompt of the product's preset or ``product.yaml``.
An analyst's mask override still wins (white = include, black = exclude, grey = the model decides); when
grounded-sam finds nothing and no override adds anything, the classic segmentation takes over. Pose,
edges, backgrounds and seams stay classic. ``auto`` picks this engine when its models are found.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.segmentation.cutout import estimate_background
from pipelines.engines.base import (
    PLAIN_BACKGROUND_UNIFORMITY,
    ClassicEngine,
    EngineEntry,
    Subject,
    _bbox,
    apply_override,
    mask_override_path,
    register_engine,
)
from pipelines.segmentation.grounded_sam.loading import ModelRecord, probe, resolve_models

if TYPE_CHECKING:
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product

logger = logging.getLogger(__name__)

ENGINE_NAME = "grounded-sam"
#: ``auto`` tries engines from the highest priority down; classic is -100.
ENGINE_PRIORITY = 10


class GroundedSamEngine(ClassicEngine):
    """Classic engine + grounded-sam subject segmentation.

    Args:
        requested (`str`): what the user asked for (``grounded-sam`` or ``auto``).
        reason (`str`): why this engine was picked.
        model_root (`str | Path`, *optional*): where the models are (``DIR/<org>/<name>/``), then the HF cache.
        detector, sam (`str`, *optional*): model ids; default: the best found (see `resolve_models`).
        device, dtype (`str`, *optional*): where and how to run the models (default: cuda if present, float32).

    Raises:
        `InputError`: the models are not found (the message says what was looked for and where).
    """

    name = ENGINE_NAME

    def __init__(self, requested: str = ENGINE_NAME, reason: str = "requested explicitly",
                 model_root: str | Path | None = None, *, detector: str | None = None, sam: str | None = None,
                 device: str | None = None, dtype: str | None = None):
        super().__init__(requested, reason)
        self.model_root = model_root
        self.device = device
        self.dtype = dtype
        from pipelines.segmentation.grounded_sam.loading import default_device

        self.detector_record, self.mask_record = resolve_models(model_root, detector, sam,
                                                                device=device or default_device())
        self._pipeline = None

    @property
    def records(self) -> list[ModelRecord]:
        return [self.detector_record, self.mask_record]

    def pipeline(self):
        """The `GroundedSam` pipeline (models loaded on first use, once per process)."""
        if self._pipeline is None:
            from pipelines.segmentation.grounded_sam.pipeline import GroundedSam

            self._pipeline = GroundedSam.from_models(
                self.model_root, detector=self.detector_record.id,
                sam=self.mask_record.id if self.mask_record.source != "file" and not self.mask_record.file
                else str(Path(self.mask_record.path) / str(self.mask_record.file)),
                device=self.device, dtype=self.dtype)
        return self._pipeline

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        models = f"{self.detector_record.label} + {self.mask_record.label}"
        d["name"] = self.name
        d["backends"] = {
            **d["backends"],
            "product_segmentation": f"grounded-sam ({self.detector_record.backend}/{self.mask_record.backend}): "
                                    f"{models}; prompt from product.yaml or the garment_type preset",
            "person_segmentation": f"grounded-sam: {models}, preset 'person'",
            "segmentation_fallback": "classic (border colour + GrabCut, mediapipe) when grounded-sam finds nothing",
        }
        return d

    def models(self) -> list[dict[str, Any]]:
        return [rec.to_json() for rec in self.records] + super().models()

    # -- segmentation -------------------------------------------------------------------------------
    def find_subject(self, image: LoadedImage, product: Product) -> Subject:
        """Segment the product (plain background) or the person (scene) with grounded-sam; apply overrides.

        The prompt and thresholds come from `pipelines.segmentation.prompts.resolve_prompt` (``product.yaml`` over the
        preset); ``Subject.metrics["grounded_sam"]`` records the prompt, each threshold's origin, every attempt,
        the boxes and the models.
        """
        from pipelines.masks import RefineOptions
        from pipelines.segmentation.prompts import resolve_prompt

        # 1. A transparent input is already cut out: nothing to segment.
        if image.alpha is not None and int(image.alpha.min()) < 250:
            return super().find_subject(image, product)

        # 2. What to segment: the garment on a plain background, the person in a scene.
        _, _, uniformity = estimate_background(image.rgb)
        if uniformity >= PLAIN_BACKGROUND_UNIFORMITY:
            kind, target, targets = "product", "garment", ("product", "garment")
            why = f"plain background (border uniformity {uniformity:.2f} >= {PLAIN_BACKGROUND_UNIFORMITY})"
        else:
            kind, target, targets = "person", "person", ("person",)
            why = f"scene background (border uniformity {uniformity:.2f})"
        resolved = resolve_prompt(product.spec, target)

        # 3. Segment.
        out = self.pipeline()(image.rgb, list(resolved.phrases), box_threshold=resolved.box_threshold,
                              text_threshold=resolved.text_threshold, mask_threshold=resolved.mask_threshold,
                              policy=resolved.policy, refine=RefineOptions(edges=resolved.edges))
        metrics: dict[str, Any] = {"background_uniformity": round(uniformity, 4),
                                   "grounded_sam": {**out.to_json(), "resolved": resolved.to_json()}}
        alpha, source = out.alpha, ENGINE_NAME

        # 4. The analyst's override wins over the model.
        for name in targets:
            ov = mask_override_path(product, image.path, name)
            if ov is not None:
                alpha = apply_override(alpha, ov, image.source_size)
                source += "+override"
                metrics["override"] = str(ov.relative_to(product.dir))
                break

        # 5. Nothing found and nothing painted: the classic segmentation takes over (and may fail cleanly).
        if not (alpha >= 128).any():
            subject = super().find_subject(image, product)
            subject.reason = (f"grounded-sam found nothing ({out.reason}); classic fallback: {subject.reason}")
            subject.metrics = {**subject.metrics, "grounded_sam": metrics["grounded_sam"], "fallback": "classic"}
            return subject
        reason = f"{why}: grounded-sam {resolved.target} with {self.detector_record.id} + {self.mask_record.id}: " \
                 f"{out.reason}"
        if "override" in metrics:
            reason += f"; analyst override {metrics['override']} applied"
        metrics["area_fraction"] = round(float((alpha >= 128).mean()), 4)
        return Subject(kind=kind, source=source, alpha=alpha, bbox=_bbox(alpha), reason=reason, metrics=metrics)


def _factory(requested: str, reason: str, model_root: str | Path | None, settings=None) -> GroundedSamEngine:
    return GroundedSamEngine(requested, reason, model_root)


register_engine(EngineEntry(name=ENGINE_NAME, factory=_factory, probe=lambda model_root, settings=None: probe(model_root),
                            priority=ENGINE_PRIORITY))

"""The classic segmentation backend (no downloaded weights): subjects routed by evidence of a person,
the backdrop-model cutout for products, mediapipe person segmentation for people; and the classic answer
to a text prompt (``vitrine segment --engine classic``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.controls.pose import get_pose_estimator
from pipelines.errors import InputError, NothingFoundError
from pipelines.segmentation.cutout import cutout_product, estimate_background
from pipelines.segmentation.overrides import apply_first_override
from pipelines.segmentation import person
from pipelines.segmentation.route import fuse_person_with_backdrop, route_subject
from pipelines.segmentation.subject import PLAIN_BACKGROUND_UNIFORMITY, Subject, subject_bbox

if TYPE_CHECKING:
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product

#: The models inside the mediapipe 0.10.14 wheel that the classic stages (person segmentation, pose) use.
MEDIAPIPE_MODELS = [
    {"id": "mediapipe/pose_landmark_full", "revision": "0.10.14", "licence": "Apache-2.0", "source": "mediapipe wheel"},
    {"id": "mediapipe/selfie_segmentation", "revision": "0.10.14", "licence": "Apache-2.0", "source": "mediapipe wheel"},
]
#: Prompts the classic engine understands, by the target they select.
CLASSIC_PERSON_WORDS = frozenset({"person", "people", "human", "body", "model", "man", "woman", "figure"})
CLASSIC_PRODUCT_WORDS = frozenset({
    "product", "garment", "clothing", "clothes", "apparel", "shirt", "t-shirt", "tshirt", "tee", "top", "blouse",
    "dress", "skirt", "trousers", "pants", "jeans", "shorts", "jacket", "coat", "hoodie", "sweater", "bag", "tote",
    "shoe", "shoes", "sneaker", "sneakers", "hat", "scarf", "object", "item",
})
#: A photo shows a person (for `check_classic_can_isolate`) when the classic pose estimator finds at least
#: this many COCO-17 keypoints with a score above 0.5. (The person *mask* is no test: it also fires on
#: garments alone, on 26 of 56 real shop garment photos; the pose fires on 1 of 56 and on 12 of 12 people,
#: ``bench/classic_prompt_limits.py``.)
CLASSIC_PERSON_KEYPOINTS = 6


class ClassicSegmenter:
    """The classic subject segmentation: evidence routing, backdrop-model cutout, mediapipe person."""

    kind = "classic"
    uses_gpu = False

    def backends(self) -> dict[str, str]:
        return {
            "product_segmentation": "classic-cutout (backdrop model + edge/texture evidence + guided filter)",
            "subject_routing": "evidence of a person: mediapipe face detection + pose keypoints on the subject",
            "person_segmentation": "mediapipe selfie/pose segmentation + pose-guided refinement",
        }

    def models(self) -> list[dict[str, Any]]:
        return []  # the mediapipe models every engine lists (`MEDIAPIPE_MODELS`)

    def find_subject(self, image: LoadedImage, product: Product) -> Subject:
        """Find the product or the person in a photo (routed by evidence, see `segment_subject`); apply overrides."""
        if image.alpha is not None and int(image.alpha.min()) < 250:
            subject = Subject(kind="product", source="input-alpha", alpha=image.alpha.copy(), bbox=(0, 0, 1, 1),
                              reason="the photo has a transparent background")
        else:
            subject = self.segment_subject(image.rgb, name=str(image.path))
        metrics, source = subject.metrics, subject.source
        alpha, override = apply_first_override(subject.alpha, image, product, ("product", subject.kind))
        if override is not None:
            source += "+override"
            metrics["override"] = override
        metrics["area_fraction"] = round(float((alpha >= 128).mean()), 4)
        return Subject(kind=subject.kind, source=source, alpha=alpha, bbox=subject_bbox(alpha), reason=subject.reason,
                       metrics=metrics, pose=subject.pose, evidence=subject.evidence)

    def segment_subject(self, rgb: np.ndarray, *, name: str = "image") -> Subject:
        """Segment a photo without overrides: the product on a plain backdrop, or the person in frame.

        Routing is by evidence of a person (`pipelines.segmentation.route`: face, pose keypoints on the subject),
        not by how plain the backdrop is. A product is cut out against the backdrop model
        (`pipelines.segmentation.cutout`); a person with the person segmenter, and on a plain backdrop its
        boundary band is taken from the backdrop model (clean edges, see `fuse_person_with_backdrop`). A
        scene without a plain backdrop goes to the person segmenter as before.

        Args:
            rgb (`np.ndarray`): HxWx3 uint8 RGB.
            name (`str`, *optional*): how error messages name the photo.

        Returns:
            `Subject`; ``metrics`` holds ``background_uniformity``, ``route`` (the evidence, JSON) and, on a
            plain backdrop, ``backdrop`` (the cutout's evidence); ``evidence`` holds the same for flags.

        Raises:
            `NothingFoundError`: no product on a plain backdrop and no person.
        """
        metrics: dict[str, Any] = {}
        pose = None
        _, _, uniformity = estimate_background(rgb)
        metrics["background_uniformity"] = round(uniformity, 4)
        plain = uniformity >= PLAIN_BACKGROUND_UNIFORMITY
        backdrop = f"border uniformity {uniformity:.2f} {'>=' if plain else '<'} {PLAIN_BACKGROUND_UNIFORMITY}"
        cut, cut_error = None, None
        if plain:
            try:
                cut = cutout_product(rgb)
            except NothingFoundError as exc:
                cut_error = exc
        route = route_subject(rgb, cut.mask if cut is not None else None)
        metrics["route"] = route.to_json()
        evidence: dict[str, Any] = {"route": metrics["route"]}
        if cut is not None:
            metrics["backdrop"] = dict(cut.evidence)
            evidence["backdrop"] = metrics["backdrop"]
        if plain and not route.person:
            if cut is None:
                raise NothingFoundError(f"{name}: {cut_error}")
            alpha, kind, source = cut.alpha, "product", "classic-cutout"
            reason = f"product on a plain background ({backdrop}); {route.reason}"
        else:
            # a face is evidence enough for the selfie model's mask when the pose model finds nobody
            alpha, pose = self._person(rgb, without_pose=route.person or (not plain and route.face_score >= 0.5))
            if alpha is None and cut is not None:
                alpha, kind, source = cut.alpha, "product", "classic-cutout"
                reason = (f"plain background ({backdrop}); person evidence ({route.reason}) but the person "
                          "segmenter found nobody: product cutout")
            elif alpha is None:
                raise NothingFoundError(
                    f"{name}: the background is not plain ({backdrop}) and no person was found; shoot the "
                    "product on a plain background or add masks/product.png"
                )
            else:
                kind, source = "person", "mediapipe-person"
                metrics["pose_keypoints_found"] = int((pose.keypoints[:, 2] > 0.5).sum()) if pose is not None else 0
                metrics["route"]["person_mask_fraction"] = round(float((alpha >= 128).mean()), 4)
                if cut is not None:
                    alpha, fusion = fuse_person_with_backdrop(alpha, cut)
                    metrics["route"]["fused_with_backdrop"] = fusion
                    reason = (f"person in frame ({route.reason}) on a plain background ({backdrop}): person "
                              "segmenter, edges from the backdrop model")
                else:
                    reason = f"scene background ({backdrop}) with a person ({route.reason})"
        return Subject(kind=kind, source=source, alpha=alpha, bbox=subject_bbox(alpha), reason=reason,
                       metrics=metrics, pose=pose, evidence=evidence)

    def _person(self, rgb: np.ndarray, *, without_pose: bool = False):
        """(soft alpha uint8, main pose) of the people in ``rgb``; ``(None, None)`` when nobody is found.

        With ``without_pose`` (other evidence of a person, e.g. a face), the mask counts even when the pose
        model found nobody; the pose is then ``None``.
        """
        seg = person.get_person_segmenter()(rgb)
        if not seg.poses and not without_pose:
            return None, None
        alpha = np.clip(np.round(seg.mask * 255.0), 0, 255).astype(np.uint8)
        if not (alpha >= 128).any():
            return None, None
        return alpha, (seg.poses[0] if seg.poses else None)


# -- text prompts (``vitrine segment --engine classic``) ------------------------------------------------
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
    found = int((get_pose_estimator()(image).keypoints[:, 2] > 0.5).sum())
    if found >= CLASSIC_PERSON_KEYPOINTS:
        raise InputError(
            f"the classic engine cannot isolate {prompt!r} on this photo: it shows a person ({found} body "
            "keypoints found), and classic isolates only the whole person ('person') or a whole product on a plain "
            "background ('product'); its cutout here would be the whole body. Use --engine grounded-sam "
            "(text-prompted, e.g. --prompt 'upper garment'), or paint masks/product.png",
            key="prompt",
        )


def classic_segment(image: np.ndarray, prompt: str, *, model_root=None, threshold: float = 0.5,
                    **options) -> np.ndarray:
    """The classic backend: mediapipe for ``person``, the border-colour cutout for products/garments."""
    if options:
        raise InputError(f"the classic engine takes no options {sorted(options)}", key=sorted(options)[0])
    target = classic_target(prompt)
    if target == "person":
        return np.where(person.segment_person(image) >= threshold, 255, 0).astype(np.uint8)
    check_classic_can_isolate(image, prompt)
    try:
        return cutout_product(image).mask
    except NothingFoundError:
        return np.zeros(image.shape[:2], np.uint8)


def classic_segment_detailed(image: np.ndarray, prompt: str, *, model_root=None, threshold: float = 0.5,
                             **options) -> tuple[np.ndarray, dict[str, Any]]:
    """`classic_segment` and its report (see `pipelines.segmentation.api.segment_image_detailed`); ``boxes``
    holds the mask's bounding box with ``score`` `None`. The report's ``engine``/``engine_reason`` are
    added by the caller."""
    mask = classic_segment(image, prompt, model_root=model_root, threshold=threshold, **options)
    ys, xs = np.nonzero(mask)
    boxes = ([{"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], "score": None,
               "label": classic_target(prompt), "phrases": [], "text_score": None, "used": True}]
             if len(xs) else [])
    found = bool(len(xs))
    report = {
        "prompt": prompt, "target": classic_target(prompt),
        "found": found, "reason": f"classic {classic_target(prompt)} segmentation" + ("" if found else ": nothing found"),
        "area_fraction": round(float((mask > 0).mean()), 4), "mask_threshold": threshold,
        "box_threshold": None, "text_threshold": None, "policy": None, "boxes": boxes, "attempts": [],
        "rejected_boxes": [],
    }
    return mask, report

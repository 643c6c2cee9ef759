"""One segmentation interface over every engine: an image and a text prompt in, a 0/255 mask out."""

from __future__ import annotations

import re
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
SEGMENT_ENGINES = ("auto", "classic")


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
) -> np.ndarray:
    """Segment what ``prompt`` names in ``image``.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.
        prompt (`str`): what to segment, e.g. ``"person"`` or ``"garment"``.
        engine (`str`, *optional*, defaults to ``"classic"``): ``classic`` or ``auto`` (classic when no
            segmentation weights are found under ``model_root``).
        model_root (`str | Path`, *optional*): where model weights live.
        threshold (`float`, *optional*, defaults to 0.5): soft-mask threshold, in [0, 1].

    Returns:
        `np.ndarray`: HxW uint8 mask, 0 or 255, the image's exact size. All zeros when nothing is found.
    """
    if engine not in SEGMENT_ENGINES:
        raise InputError(f"unknown segmentation engine {engine!r}; expected one of {', '.join(SEGMENT_ENGINES)}",
                         key="engine")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an HxWx3 uint8 RGB image, got shape {getattr(image, 'shape', None)}")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}", key="threshold")
    target = classic_target(prompt)
    if target == "person":
        from .classic.person import segment_person
        from .classic.pose import get_pose_estimator

        pose = get_pose_estimator()(image)
        soft = segment_person(image, pose=pose)
        return np.where(soft >= threshold, 255, 0).astype(np.uint8)
    from .classic.cutout import cutout_product
    from .errors import NothingFoundError

    try:
        return cutout_product(image).mask
    except NothingFoundError:
        return np.zeros(image.shape[:2], np.uint8)

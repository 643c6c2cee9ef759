"""A segmentation result back in the photo's own pixels.

`pipelines.imageio.load_image` may hand a segmenter a downscaled copy of the photo (``LoadedImage.scale`` < 1,
``LoadedImage.source_size`` the full ``(width, height)``); these map the mask and the report's boxes back.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def mask_to_source_size(mask: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
    """``mask`` at the photo's full size.

    Args:
        mask (`np.ndarray`): ``(H, W)`` ``uint8`` mask (0/255, or soft values) at the size the segmenter saw.
        source_size (`tuple[int, int]`): ``(width, height)`` of the photo.

    Returns:
        `np.ndarray`: ``(height, width)`` ``uint8``: ``mask`` itself when already that size, else a
        nearest-neighbour resize (no new mask values appear).
    """
    width, height = source_size
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def _scaled(box: list[float], factor: float) -> list[float]:
    return [round(v * factor, 2) for v in box]


def report_to_source_pixels(report: dict[str, Any], scale: float) -> dict[str, Any]:
    """A copy of a segmentation report (`pipelines.segmentation.api.segment_image_detailed`) with its boxes in
    the photo's pixels.

    Args:
        report (`dict`): ``boxes`` (each with ``box`` = ``[x0, y0, x1, y1]``) and ``rejected_boxes`` (each with
            ``box`` and ``person_box``), both optional, in the pixels of the image the segmenter saw.
        scale (`float`): that image's size divided by the photo's (``LoadedImage.scale``); 0 is taken as 1.

    Returns:
        `dict`: ``report``'s keys in their order, ``boxes`` and ``rejected_boxes`` always present (``[]`` when
        missing), each coordinate divided by ``scale`` and rounded to 2 decimals; ``report`` is not changed.
    """
    factor = 1.0 / scale if scale else 1.0
    boxes = [{**b, "box": _scaled(b["box"], factor)} for b in report.get("boxes", [])]
    rejected = [{**r, "box": _scaled(r["box"], factor), "person_box": _scaled(r["person_box"], factor)}
                for r in report.get("rejected_boxes", [])]
    return {**report, "boxes": boxes, "rejected_boxes": rejected}

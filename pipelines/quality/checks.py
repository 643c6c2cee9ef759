"""Quality checks recorded in manifests: marketplace rules and mask agreement."""

from __future__ import annotations

import numpy as np

from pipelines.compositing.composite import dilate


def white_background_check(image: np.ndarray, alpha: np.ndarray, *, clearance_px: int = 2) -> dict:
    """The marketplace main-image rule: every background pixel is pure white (#FFFFFF).

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB output.
        alpha (`np.ndarray`): HxW uint8 product alpha in output coordinates.
        clearance_px (`int`, *optional*, defaults to 2): pixels within this distance of the product
            (its anti-aliased edge) are not counted as background.

    Returns:
        `dict`: ``ok`` (bool), ``background_pixels``, ``non_white_pixels``, ``border_white`` (the outer
        one-pixel frame is white wherever the product does not touch it).
    """
    near = dilate(np.where(alpha > 0, 255, 0).astype(np.uint8), clearance_px) > 0
    bg = ~near
    white = np.all(image == 255, axis=2)
    non_white = int((bg & ~white).sum())
    frame = np.zeros_like(bg)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    border_white = bool(np.all(white[frame & bg]))
    return {
        "ok": non_white == 0 and border_white,
        "background_pixels": int(bg.sum()),
        "non_white_pixels": non_white,
        "border_white": border_white,
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = foreground); 1.0 when both are empty."""
    a, b = a > 0, b > 0
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union

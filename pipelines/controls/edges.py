"""Canny edge control images (the input format of ControlNet canny models)."""

from __future__ import annotations

import cv2
import numpy as np


def canny_control(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    low_threshold: int = 100,
    high_threshold: int = 200,
    boundary_width: int = 2,
) -> np.ndarray:
    """Edge control image of a garment: Canny edges inside the mask plus the mask's outline.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.
        mask (`np.ndarray`, *optional*): HxW uint8, nonzero = garment. Without it, edges of the whole image.
        low_threshold (`int`, *optional*, defaults to 100): Canny hysteresis low threshold (0-255).
        high_threshold (`int`, *optional*, defaults to 200): Canny hysteresis high threshold (0-255);
            edges start only where the gradient exceeds it.
        boundary_width (`int`, *optional*, defaults to 2): line width in pixels of the mask outline.

    Returns:
        `np.ndarray`: HxWx3 uint8, white (255) edges on black, the layout ControlNet canny models expect.
    """
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold})")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low_threshold, high_threshold)
    if mask is not None:
        m = (mask > 0).astype(np.uint8)
        inside = cv2.dilate(m, np.ones((3, 3), np.uint8))
        edges = np.where(inside > 0, edges, 0).astype(np.uint8)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(edges, contours, -1, 255, thickness=max(1, boundary_width))
    return np.repeat(edges[:, :, None], 3, axis=2)

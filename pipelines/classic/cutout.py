"""Product cutout from plain or studio backgrounds (classic engine, OpenCV only).

The background colour is estimated from the image border; pixels far from it in CIE Lab are the
product. The hard mask is cleaned morphologically, refined with GrabCut in a narrow band around its
edge, and given a soft alpha edge from the colour distance so that anti-aliased borders stay smooth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError, NothingFoundError

logger = logging.getLogger(__name__)

#: Border width (fraction of the shorter side) sampled to estimate the background colour.
BORDER_FRACTION = 0.03
#: Images are analysed at most at this longer side; masks are scaled back up.
ANALYSIS_SIDE = 1024


@dataclass
class Cutout:
    """Result of :func:`cutout_product`.

    Attributes:
        alpha (`np.ndarray`): HxW uint8 soft alpha, 255 = product, 0 = background.
        mask (`np.ndarray`): HxW uint8 hard mask, 0/255 (``alpha >= 128``).
        background_color (`tuple[int, int, int]`): estimated RGB background colour.
        background_uniformity (`float`): share of border pixels within the background tolerance, in [0, 1].
            Near 1 for a plain or studio background; low for a scene.
        bbox (`tuple[int, int, int, int]`): XYXY pixel box of the mask (x1, y1 exclusive).
    """

    alpha: np.ndarray
    mask: np.ndarray
    background_color: tuple[int, int, int]
    background_uniformity: float
    bbox: tuple[int, int, int, int]


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(
            f"expected an HxWx3 uint8 RGB array, got {getattr(image, 'dtype', type(image))} "
            f"with shape {getattr(image, 'shape', None)}"
        )


def border_pixels(image: np.ndarray, fraction: float = BORDER_FRACTION) -> np.ndarray:
    """Return the pixels of a band along the four image edges as an (N, C) array."""
    h, w = image.shape[:2]
    b = max(1, int(round(min(h, w) * fraction)))
    parts = [image[:b].reshape(-1, image.shape[2]), image[-b:].reshape(-1, image.shape[2]),
             image[:, :b].reshape(-1, image.shape[2]), image[:, -b:].reshape(-1, image.shape[2])]
    return np.concatenate(parts, axis=0)


def estimate_background(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Estimate the background colour from the border.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.

    Returns:
        `(lab_color, tolerance, uniformity)`: the median border colour in OpenCV 8-bit Lab (float32,
        shape (3,)), a distance tolerance in Lab units that covers the border's noise and gradient, and
        the share of border pixels within that tolerance (in [0, 1]).
    """
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    border = border_pixels(lab)
    center = np.median(border, axis=0)
    dist = np.linalg.norm(border - center, axis=1)
    # 90th percentile of border spread: robust to a product touching the edge on one side.
    spread = float(np.percentile(dist, 90))
    tolerance = float(np.clip(3.0 * spread + 6.0, 10.0, 40.0))
    uniformity = float((dist <= tolerance).mean())
    return center, tolerance, uniformity


def _fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill enclosed background regions smaller than ``max_area`` pixels (0/255 uint8 in, out)."""
    inv = (mask == 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches_border = x == 0 or y == 0 or x + bw >= w or y + bh >= h
        if not touches_border and area <= max_area:
            out[labels == i] = 255
    return out


def _remove_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    keep = np.zeros(n, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = int(areas.max())
    for i, area in enumerate(areas, start=1):
        keep[i] = area >= max(min_area, 0.02 * largest)
    return np.where(keep[labels], 255, 0).astype(np.uint8)


def _grabcut_refine(image: np.ndarray, mask: np.ndarray, band: int, iterations: int = 3) -> np.ndarray:
    """Refine a 0/255 mask with GrabCut, letting only a ``band``-pixel ring around its edge change."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_fg = cv2.erode(mask, kernel)
    maybe = cv2.dilate(mask, kernel)
    gc = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    gc[maybe > 0] = cv2.GC_PR_BGD
    gc[mask > 0] = cv2.GC_PR_FGD
    gc[sure_fg > 0] = cv2.GC_FGD
    if not (gc == cv2.GC_PR_FGD).any() and not (gc == cv2.GC_PR_BGD).any():
        return mask
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:  # degenerate colour models (e.g. a flat image): keep the input mask
        logger.debug("GrabCut skipped: %s", exc)
        return mask
    return np.where((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


def cutout_product(
    image: np.ndarray,
    *,
    tolerance: float | None = None,
    refine: bool = True,
    hole_fraction: float = 0.002,
) -> Cutout:
    """Cut a product out of a plain or studio background.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB photo of a product on a roughly uniform background.
        tolerance (`float`, *optional*): Lab distance below which a pixel counts as background; by
            default estimated from the border's noise (10 to 40).
        refine (`bool`, *optional*, defaults to `True`): run GrabCut in a narrow band around the edge.
        hole_fraction (`float`, *optional*, defaults to 0.002): enclosed background regions smaller than
            this share of the image are filled (specks inside the product); larger ones (a bag handle's
            opening) stay background.

    Returns:
        `Cutout` with a soft alpha and a hard mask at the input's full resolution.

    Raises:
        `NothingFoundError`: when no pixel differs from the background.
    """
    _check_rgb(image)
    h, w = image.shape[:2]
    scale = min(1.0, ANALYSIS_SIDE / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]

    # 1. Background colour and tolerance from the border.
    bg_lab, auto_tol, uniformity = estimate_background(small)
    tol = float(tolerance) if tolerance is not None else auto_tol
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    dist = np.linalg.norm(lab - bg_lab, axis=2)

    # 2. Hard mask, cleaned.
    mask = np.where(dist > tol, 255, 0).astype(np.uint8)
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k3)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = _remove_small_components(mask, min_area=max(16, int(sh * sw * 1e-4)))
    if not mask.any():
        raise NothingFoundError("no product found: every pixel matches the background colour")
    mask = _fill_small_holes(mask, int(sh * sw * hole_fraction))

    # 3. GrabCut in a narrow band (pulls in low-contrast edges such as white fabric on white).
    if refine:
        band = max(2, int(round(max(sh, sw) * 0.006)))
        refined = _grabcut_refine(small, mask, band)
        if refined.any():
            mask = _fill_small_holes(_remove_small_components(refined, 16), int(sh * sw * hole_fraction))

    # 4. Soft alpha: colour distance ramp inside a 2-px ring around the hard edge.
    ring_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    ring = (cv2.dilate(mask, ring_k) > 0) & (cv2.erode(mask, ring_k) == 0)
    ramp = np.clip((dist - 0.5 * tol) / max(tol, 1e-6), 0.0, 1.0)
    alpha_small = (mask > 0).astype(np.float32)
    alpha_small[ring] = np.where(mask[ring] > 0, np.maximum(ramp[ring], 0.5), np.minimum(ramp[ring], 0.49))

    # 5. Back to full resolution.
    if scale != 1.0:
        alpha_full = cv2.resize(alpha_small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        alpha_full = alpha_small
    alpha = np.clip(np.round(alpha_full * 255.0), 0, 255).astype(np.uint8)
    hard = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(hard)
    if len(xs) == 0:
        raise NothingFoundError("no product found after refinement")
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    bg_rgb = cv2.cvtColor(np.uint8([[np.clip(bg_lab, 0, 255)]]), cv2.COLOR_LAB2RGB)[0, 0]
    return Cutout(
        alpha=alpha,
        mask=hard,
        background_color=(int(bg_rgb[0]), int(bg_rgb[1]), int(bg_rgb[2])),
        background_uniformity=uniformity,
        bbox=bbox,
    )

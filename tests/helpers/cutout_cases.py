"""Code-built hard cutout cases with exact masks: light garments on white and light-grey backdrops.

Each builder returns ``(rgb, mask)``: an HxWx3 uint8 photo and its exact HxW uint8 0/255 garment mask
(interior holes of a knit count as garment, as in the shop_garments dev set). Deterministic per seed.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 512


def _tee_mask(size: int = SIZE) -> np.ndarray:
    s = size / 512
    pts = np.array([[186, 85], [225, 75], [256, 102], [287, 75], [326, 85], [425, 150], [390, 215],
                    [350, 190], [350, 440], [162, 440], [162, 190], [122, 215], [87, 150]], np.float32) * s
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 255, cv2.LINE_8)
    return mask


def _fabric(mask: np.ndarray, base: float | tuple, rng: np.random.Generator, grain: float = 1.6) -> np.ndarray:
    """Fabric pixels: ``base`` colour with soft folds and fine grain (HxWx3 float32)."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    folds = 2.0 * np.sin(xx / 23.0 + 0.7 * np.sin(yy / 41.0)) * np.sin(yy / 57.0)
    noise = cv2.GaussianBlur(rng.normal(0, grain, (h, w)).astype(np.float32), (0, 0), 0.7) * 1.6
    col = np.broadcast_to(np.array(base, np.float32), (3,))
    return col[None, None, :] + (folds + noise)[:, :, None]


def _backdrop(h: int, w: int, top: float, bottom: float, rng: np.random.Generator, noise: float = 0.8,
              left_right: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = top + (bottom - top) * (yy / (h - 1)) + left_right * (xx / (w - 1) - 0.5)
    return np.repeat(base[:, :, None] + rng.normal(0, noise, (h, w, 1)).astype(np.float32), 3, axis=2)


def _outline(img: np.ndarray, mask: np.ndarray, darker: float, rng: np.random.Generator) -> None:
    """A faint seam along the garment's edge, broken in places (real outlines have gaps)."""
    inner = cv2.erode(mask, np.ones((3, 3), np.uint8))
    edge = (mask > 0) & (inner == 0)
    gaps = cv2.GaussianBlur(rng.random(mask.shape).astype(np.float32), (0, 0), 6) > 0.53
    sel = edge & ~gaps
    img[sel] -= darker


def white_tee_shadow_on_white(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A white tee (brighter than the backdrop by ~3 levels) with a faint drop shadow, on white (250)."""
    rng = np.random.default_rng(seed)
    mask = _tee_mask()
    img = _backdrop(SIZE, SIZE, 251.0, 248.0, rng)
    shadow = cv2.GaussianBlur(np.roll(mask, (9, 7), axis=(0, 1)).astype(np.float32) / 255.0, (0, 0), 7)
    img -= 9.0 * shadow[:, :, None]
    fab = _fabric(mask, 253.0, rng)
    img[mask > 0] = fab[mask > 0]
    _outline(img, mask, 7.0, rng)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


def cream_knit_with_holes_on_white(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A pale cream knit with an open-work grid of holes (the backdrop shows through), on white."""
    rng = np.random.default_rng(seed)
    mask = _tee_mask()
    img = _backdrop(SIZE, SIZE, 252.0, 249.0, rng)
    fab = _fabric(mask, (247.0, 242.0, 231.0), rng, grain=2.0)
    knit = mask.copy()
    for y in range(150, 420, 34):
        for x in range(180, 340, 34):
            cv2.circle(knit, (x + (17 if (y // 34) % 2 else 0), y), 9, 0, -1)
    knit = np.where(mask > 0, knit, 0)
    img[knit > 0] = fab[knit > 0]
    _outline(img, mask, 6.0, rng)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


def white_tee_on_grey_gradient(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A white tee on a light-grey sweep that darkens from 232 (top) to 196 (bottom) and sideways."""
    rng = np.random.default_rng(seed)
    mask = _tee_mask()
    img = _backdrop(SIZE, SIZE, 232.0, 196.0, rng, left_right=10.0)
    fab = _fabric(mask, 247.0, rng)
    img[mask > 0] = fab[mask > 0]
    _outline(img, mask, 6.0, rng)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


def light_grey_garment_on_grey(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A light-grey tee (212) on a flat mid-grey backdrop (203): ~4 L* apart."""
    rng = np.random.default_rng(seed)
    mask = _tee_mask()
    img = _backdrop(SIZE, SIZE, 203.0, 203.0, rng, noise=0.6)
    fab = _fabric(mask, 212.0, rng)
    img[mask > 0] = fab[mask > 0]
    _outline(img, mask, 8.0, rng)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


HARD_CASES = {
    "white-shadow-on-white": white_tee_shadow_on_white,
    "cream-knit-holes-on-white": cream_knit_with_holes_on_white,
    "white-on-grey-gradient": white_tee_on_grey_gradient,
    "light-grey-on-grey": light_grey_garment_on_grey,
}

"""Classic seam inpainting: fix the product's edge inside a narrow band, and nowhere else."""

from __future__ import annotations

import cv2
import numpy as np


def extrapolate_colors(image: np.ndarray, known: np.ndarray, smooth_sigma: float = 2.0) -> np.ndarray:
    """Fill unknown pixels with the colour of the nearest known pixel, then smooth across them.

    Args:
        image (`np.ndarray`): HxWx3 uint8.
        known (`np.ndarray`): HxW bool/uint8, nonzero where ``image`` is trustworthy.
        smooth_sigma (`float`, *optional*, defaults to 2.0): Gaussian sigma (pixels) of a normalised blur
            applied to the extrapolated pixels only, which hides the nearest-neighbour facets.

    Returns:
        `np.ndarray`: HxWx3 float32; equal to ``image`` where known, extrapolated elsewhere.
    """
    k = known > 0
    if not k.any():
        return image.astype(np.float32)
    # Nearest known pixel of every pixel: labels of the zero pixels of ``~known`` (one label per pixel).
    _, labels = cv2.distanceTransformWithLabels((~k).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(k)  # known pixels in the scan order the labels use
    lut = image[ys, xs].astype(np.float32)
    nearest = lut[np.clip(labels - 1, 0, len(lut) - 1)]
    out = np.where(k[:, :, None], image.astype(np.float32), nearest)
    if smooth_sigma > 0:
        blurred = cv2.GaussianBlur(out, (0, 0), smooth_sigma)
        out = np.where(k[:, :, None], out, blurred)
    return out


def inpaint_seam(
    composite: np.ndarray,
    foreground: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray,
    band: np.ndarray,
    *,
    smooth_sigma: float = 0.6,
) -> np.ndarray:
    """Repair the seam between a pasted product and its new background, inside ``band`` only.

    Partially transparent edge pixels of a cutout still carry the colour of the photo's original
    background (a light or dark halo on the new one). Inside the band, the product's colour is
    re-estimated from its opaque interior, re-composited with the same alpha over the new background,
    and the transition is smoothed slightly. Pixels outside ``band`` are returned unchanged, bit for bit.

    Args:
        composite (`np.ndarray`): HxWx3 uint8, the plain alpha composite.
        foreground (`np.ndarray`): HxWx3 uint8, the placed product layer.
        alpha (`np.ndarray`): HxW uint8 alpha of the placed product.
        background (`np.ndarray`): HxWx3 uint8 new background.
        band (`np.ndarray`): HxW uint8 0/255, where changes are allowed (see `pipelines.composite.seam_band`).
        smooth_sigma (`float`, *optional*, defaults to 0.6): Gaussian sigma of the edge smoothing, pixels.

    Returns:
        `np.ndarray`: HxWx3 uint8.
    """
    sel = band > 0
    if not sel.any():
        return composite.copy()
    ys, xs = np.nonzero(sel)
    pad = 40
    y0, y1 = max(0, ys.min() - pad), min(band.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(band.shape[1], xs.max() + pad + 1)
    sl = (slice(y0, y1), slice(x0, x1))
    a = alpha[sl].astype(np.float32)[:, :, None] / 255.0
    fg_est = extrapolate_colors(foreground[sl], alpha[sl] == 255)
    fixed = fg_est * a + background[sl].astype(np.float32) * (1.0 - a)
    if smooth_sigma > 0:
        fixed = cv2.GaussianBlur(fixed, (0, 0), smooth_sigma)
    out = composite.copy()
    region = out[sl]
    s = sel[sl]
    region[s] = np.clip(np.round(fixed[s]), 0, 255).astype(np.uint8)
    return out

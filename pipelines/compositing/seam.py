"""Classic seam inpainting: fix the product's edge inside a narrow band, and nowhere else."""

from __future__ import annotations

import cv2
import numpy as np


def _blur_radius(sigma: float) -> int:
    """Half-size of the kernel ``cv2.GaussianBlur(..., (0, 0), sigma)`` uses on float32 images."""
    return (int(round(sigma * 8 + 1)) | 1) // 2


def extrapolate_colors(image: np.ndarray, known: np.ndarray, smooth_sigma: float = 2.0,
                       need: np.ndarray | None = None) -> np.ndarray:
    """Fill unknown pixels with the colour of the nearest known pixel, then smooth across them.

    Args:
        image (`np.ndarray`): HxWx3 uint8.
        known (`np.ndarray`): HxW bool/uint8, nonzero where ``image`` is trustworthy.
        smooth_sigma (`float`, *optional*, defaults to 2.0): Gaussian sigma (pixels) of a normalised blur
            applied to the extrapolated pixels only, which hides the nearest-neighbour facets.
        need (`np.ndarray`, *optional*): HxW bool, the pixels whose result is used; the work is restricted
            to them and to what their values depend on (the result elsewhere is then unspecified). The
            values at ``need`` are bit-identical to those computed without it. `None`: every pixel.

    Returns:
        `np.ndarray`: HxWx3 float32; equal to ``image`` where known, extrapolated elsewhere.
    """
    k = known > 0
    out = image.astype(np.float32)
    if not k.any():
        return out
    # Nearest known pixel of every pixel: labels of the zero pixels of ``~known`` (one label per pixel).
    _, labels = cv2.distanceTransformWithLabels((~k).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    lut = out[k]  # known pixels in the scan order the labels use
    unknown = ~k
    if need is not None and smooth_sigma > 0:
        r = _blur_radius(smooth_sigma)  # the smoothing of a needed pixel reads this far
        reach = cv2.dilate(need.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
        fill = unknown & (reach > 0)
    elif need is not None:
        fill = unknown & need
    else:
        fill = unknown
    out[fill] = lut[np.clip(labels[fill] - 1, 0, len(lut) - 1)]
    if smooth_sigma > 0:
        blurred = cv2.GaussianBlur(out, (0, 0), smooth_sigma)
        sel = unknown if need is None else unknown & need
        out[sel] = blurred[sel]
    return out


def inpaint_seam(
    composite: np.ndarray,
    foreground: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray,
    band: np.ndarray,
    *,
    smooth_sigma: float = 0.6,
    extrapolate_sigma: float = 2.0,
) -> np.ndarray:
    """Repair the seam between a pasted product and its new background, inside ``band`` only.

    Partially transparent edge pixels of a cutout still carry the colour of the photo's original
    background (a light or dark halo on the new one). Inside the band, the product's colour is
    re-estimated from its opaque interior (`extrapolate_colors`), re-composited with the same alpha over the
    new background, and the transition is smoothed slightly. Pixels outside ``band`` are returned
    unchanged, bit for bit.

    The figures are those of `extrapolate_colors` and two Gaussian blurs on the band's bounding box (plus
    40 px), but computed only on the tiles of that box the band touches (each grown by the blur radii, so
    every band pixel gets exactly the value the whole-box computation gives): a ring, not the whole product.

    Args:
        composite (`np.ndarray`): HxWx3 uint8, the plain alpha composite.
        foreground (`np.ndarray`): HxWx3 uint8, the placed product layer.
        alpha (`np.ndarray`): HxW uint8 alpha of the placed product.
        background (`np.ndarray`): HxWx3 uint8 new background.
        band (`np.ndarray`): HxW uint8 0/255, where changes are allowed (see `pipelines.compositing.composite.seam_band`).
        smooth_sigma (`float`, *optional*, defaults to 0.6): Gaussian sigma of the edge smoothing, pixels.
        extrapolate_sigma (`float`, *optional*, defaults to 2.0): smoothing of the extrapolated colours.

    Returns:
        `np.ndarray`: HxWx3 uint8.
    """
    band_u8 = np.ascontiguousarray(band if band.dtype == np.uint8 else (band > 0).astype(np.uint8))
    bx, by, bw, bh = cv2.boundingRect(band_u8)
    if bw == 0 or bh == 0:
        return composite.copy()
    pad = 40
    H, W = band.shape
    y0, y1 = max(0, by - pad), min(H, by + bh + pad)
    x0, x1 = max(0, bx - pad), min(W, bx + bw + pad)
    known = alpha[y0:y1, x0:x1] == 255
    out = composite.copy()
    if not known.any():  # nothing to extrapolate from: the foreground as it is
        flat_known, labels = None, None
    else:
        _, labels = cv2.distanceTransformWithLabels((~known).astype(np.uint8), cv2.DIST_L2, 5,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
        flat_known = np.flatnonzero(known)  # label i = the i-th known pixel in scan order
    r1 = _blur_radius(smooth_sigma) if smooth_sigma > 0 else 0
    r2 = _blur_radius(extrapolate_sigma) if extrapolate_sigma > 0 else 0
    margin = r1 + r2
    cw = x1 - x0
    fg_flat = foreground[y0:y1, x0:x1].reshape(-1, 3) if flat_known is not None else None
    tile = 128
    for ty in range(y0, y1, tile):
        for tx in range(x0, x1, tile):
            cy1, cx1 = min(ty + tile, y1), min(tx + tile, x1)
            core = band_u8[ty:cy1, tx:cx1] > 0
            if not core.any():
                continue
            # the tile grown by the blur radii, clipped to the box (where the whole-box blurs reflect too)
            gy0, gy1, gx0, gx1 = max(y0, ty - margin), min(y1, cy1 + margin), max(x0, tx - margin), min(x1, cx1 + margin)
            g = (slice(gy0, gy1), slice(gx0, gx1))
            a = alpha[g].astype(np.float32)[:, :, None] / 255.0
            fg = foreground[g].astype(np.float32)
            if flat_known is not None:
                k = known[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0]
                unknown = ~k
                lab = labels[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0]
                idx = flat_known[np.clip(lab[unknown] - 1, 0, len(flat_known) - 1)]
                fg[unknown] = fg_flat[idx]
                if extrapolate_sigma > 0:
                    fg[unknown] = cv2.GaussianBlur(fg, (0, 0), extrapolate_sigma)[unknown]
            fixed = fg * a + background[g].astype(np.float32) * (1.0 - a)
            if smooth_sigma > 0:
                fixed = cv2.GaussianBlur(fixed, (0, 0), smooth_sigma)
            fixed = fixed[ty - gy0:cy1 - gy0, tx - gx0:cx1 - gx0]
            region = out[ty:cy1, tx:cx1]
            region[core] = np.clip(np.round(fixed[core]), 0, 255).astype(np.uint8)
    del cw
    return out

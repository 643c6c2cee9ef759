"""Garment fidelity: how close an output's garment is to the garment as placed, inside the garment mask.

Two figures, both computed only over the mask's pixels:

- **SSIM** (structural similarity, scikit-image, 7x7 Gaussian-free window, per RGB channel, data range
  255): the SSIM map is computed on the mask's bounding box and averaged over the mask. 1.0 = identical
  structure (prints, logos, seams); generative drift in text and patterns lowers it first.
- **CIEDE2000** colour difference (ΔE00, sRGB D65 → CIELAB): mean and 95th percentile over the mask.
  ΔE00 < 1 is not perceptible, 1-2 perceptible on close inspection, > 5 a different colour.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.errors import InputError

#: SSIM window side (odd); masks whose bounding box is smaller get ``ssim = None``.
SSIM_WINDOW = 7


def _check(name: str, a: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
        raise InputError(f"{name} must be a uint8 array, got {getattr(a, 'dtype', type(a).__name__)}", key=name)
    if shape is not None and a.shape != shape:
        raise InputError(f"{name} has shape {a.shape}, expected {shape}", key=name)


def garment_fidelity(placed: np.ndarray, output: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """SSIM and CIEDE2000 between the garment as placed and an output, inside ``mask``.

    Args:
        placed (`np.ndarray`): HxWx3 uint8 RGB, the garment as placed on the output canvas.
        output (`np.ndarray`): HxWx3 uint8 RGB, the output (same size).
        mask (`np.ndarray`): HxW uint8, nonzero = compare (the garment mask, in output coordinates).

    Returns:
        `dict`: ``pixels`` (compared), ``ssim`` (float in [-1, 1], or `None` when the mask's box is smaller
        than the 7x7 window or empty), ``delta_e00_mean`` and ``delta_e00_p95`` (floats >= 0, `None` for an
        empty mask), ``identical_fraction`` (share of pixels equal in all channels, in [0, 1]).

    Raises:
        `InputError`: wrong dtypes or shapes.
    """
    _check("placed", placed)
    if placed.ndim != 3 or placed.shape[2] != 3:
        raise InputError(f"placed must be HxWx3, got {placed.shape}", key="placed")
    _check("output", output, placed.shape)
    _check("mask", mask, placed.shape[:2])
    sel = mask > 0
    n = int(sel.sum())
    if n == 0:
        return {"pixels": 0, "ssim": None, "delta_e00_mean": None, "delta_e00_p95": None, "identical_fraction": None}
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import structural_similarity

    a, b = placed[sel], output[sel]
    identical = float(np.all(a == b, axis=1).mean())
    lab_a = rgb2lab(a[None].astype(np.float64) / 255.0)[0]
    lab_b = rgb2lab(b[None].astype(np.float64) / 255.0)[0]
    de = deltaE_ciede2000(lab_a, lab_b)
    ys, xs = np.nonzero(sel)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ssim = None
    if min(y1 - y0, x1 - x0) >= SSIM_WINDOW:
        _, smap = structural_similarity(placed[y0:y1, x0:x1], output[y0:y1, x0:x1], win_size=SSIM_WINDOW,
                                        channel_axis=2, data_range=255, full=True)
        ssim = round(float(smap.mean(axis=2)[sel[y0:y1, x0:x1]].mean()), 5)
    return {
        "pixels": n,
        "ssim": ssim,
        "delta_e00_mean": round(float(de.mean()), 4),
        "delta_e00_p95": round(float(np.percentile(de, 95)), 4),
        "identical_fraction": round(identical, 6),
    }

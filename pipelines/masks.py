"""Mask refinement: hole filling, small-component removal, smoothing, feathered or matted edges, and
garment minus occluders.

Masks in are HxW ``bool`` or ``uint8`` (nonzero = foreground); probabilities are HxW ``float`` in [0, 1].
Alphas out are HxW ``uint8`` (255 = foreground). Sizes given as fractions are fractions of the image
area (``fill_holes``) or of the largest component (``min_component``), so one setting fits every resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np

from pipelines.errors import InputError

Edges = Literal["hard", "feather", "matte"]
EDGES: tuple[str, ...] = ("hard", "feather", "matte")


@dataclass(frozen=True)
class RefineOptions:
    """How `refine_mask` cleans a mask.

    Args:
        fill_holes (`float`, *optional*, defaults to 0.001): fill enclosed holes smaller than this fraction of
            the image area (a bag handle's loop is larger and stays open); 0 turns it off.
        min_component (`float`, *optional*, defaults to 0.02): drop connected components smaller than this
            fraction of the largest one; 0 turns it off. The largest component is always kept.
        smooth_px (`float`, *optional*, defaults to 1.5): Gaussian sigma, in pixels, of the edge smoothing
            (blur then re-threshold at 0.5: jaggies go, the outline stays in place); 0 turns it off.
        edges (`str`, *optional*, defaults to ``"hard"``): ``hard`` (0/255), ``feather`` (a linear ramp of
            ``feather_px`` across the outline) or ``matte`` (a guided-filter matte following the photo's own
            edges within ``feather_px`` of the outline: for hair and sheer fabric).
        feather_px (`float`, *optional*, defaults to 3.0): width of the soft edge, pixels.
        matte_eps (`float`, *optional*, defaults to 1e-3): guided-filter regularisation (smaller follows the
            photo's edges more closely).
    """

    fill_holes: float = 0.001
    min_component: float = 0.02
    smooth_px: float = 1.5
    edges: Edges = "hard"
    feather_px: float = 3.0
    matte_eps: float = 1e-3

    def __post_init__(self):
        for name in ("fill_holes", "min_component"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {v!r}", key=name)
        for name in ("smooth_px", "feather_px", "matte_eps"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)!r}", key=name)
        if self.edges not in EDGES:
            raise InputError(f"edges must be one of {', '.join(EDGES)}, got {self.edges!r}", key="edges")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def as_bool(mask: np.ndarray) -> np.ndarray:
    """HxW ``bool`` from a bool/uint8 mask (nonzero = foreground)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"a mask must be HxW, got shape {mask.shape}")
    return mask.astype(bool) if mask.dtype != np.bool_ else mask


def to_alpha(mask: np.ndarray) -> np.ndarray:
    """HxW ``uint8`` 0/255 from a bool mask."""
    return np.where(as_bool(mask), 255, 0).astype(np.uint8)


def fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill background regions enclosed by the mask (not touching the border) of at most ``max_area`` pixels."""
    m = as_bool(mask)
    if max_area <= 0 or not m.any():
        return m.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~m).astype(np.uint8), connectivity=4)
    h, w = m.shape
    out = m.copy()
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches_border = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches_border and area <= max_area:
            out[labels == i] = True
    return out


def remove_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop 8-connected components smaller than ``min_area`` pixels; the largest is always kept."""
    m = as_bool(mask)
    if not m.any():
        return m.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 2:
        return m.copy()
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = areas >= min_area
    keep[1 + int(np.argmax(areas))] = True
    return keep[labels]


def smooth_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Blur with a Gaussian of ``sigma`` pixels and re-threshold at 0.5: smoother outline, same place."""
    m = as_bool(mask)
    if sigma <= 0 or not m.any():
        return m.copy()
    blurred = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    return blurred >= 0.5


def subtract(mask: np.ndarray, occluders: np.ndarray) -> np.ndarray:
    """The garment minus what covers it (hair, hands, a bag): ``mask & ~occluders``."""
    m, o = as_bool(mask), as_bool(occluders)
    if m.shape != o.shape:
        raise InputError(f"the occluder mask is {o.shape}, the mask is {m.shape}")
    return m & ~o


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the outline, positive inside, negative outside (pixels, float32)."""
    m = as_bool(mask).astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    return inside - outside


def feather(mask: np.ndarray, width: float) -> np.ndarray:
    """A soft alpha ramping linearly over ``width`` pixels centred on the outline (``alpha >= 128`` = the mask).

    Returns:
        `np.ndarray`: HxW ``uint8``.
    """
    m = as_bool(mask)
    if width <= 0 or not m.any() or m.all():
        return to_alpha(m)
    d = _signed_distance(m)
    # d is +1 on the first pixel inside and -1 on the first outside: the outline lies half-way, at d = 0.
    a = np.clip(0.5 + (d - 0.5 * np.sign(d)) / width, 0.0, 1.0)
    alpha = np.round(a * 255.0).astype(np.uint8)
    alpha[m & (alpha < 128)] = 128
    alpha[~m & (alpha >= 128)] = 127
    return alpha


def _box(img: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(img, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide: ``src`` smoothed so that its edges follow ``guide``'s.

    Args:
        guide (`np.ndarray`): HxW float32 in [0, 1].
        src (`np.ndarray`): HxW float32.
        radius (`int`): window radius, pixels.
        eps (`float`): regularisation.
    """
    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def matte(image: np.ndarray, mask: np.ndarray, width: float, eps: float = 1e-3) -> np.ndarray:
    """A soft alpha that follows the photo's edges (hair, sheer fabric) within ``width`` pixels of the outline.

    Pixels farther than ``width`` from the outline keep the hard mask's value; inside the band the alpha is
    a guided filter of the mask with the photo (grey) as guide.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.
        mask (`np.ndarray`): HxW bool/uint8.
        width (`float`): band half-width, pixels.
        eps (`float`, *optional*, defaults to 1e-3): guided-filter regularisation.

    Returns:
        `np.ndarray`: HxW ``uint8``.
    """
    m = as_bool(mask)
    if image.shape[:2] != m.shape:
        raise InputError(f"the image is {image.shape[:2]}, the mask is {m.shape}")
    if width <= 0 or not m.any() or m.all():
        return to_alpha(m)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(1, round(width))
    soft = np.clip(guided_filter(grey, m.astype(np.float32), radius, eps), 0.0, 1.0)
    band = np.abs(_signed_distance(m)) <= width
    out = np.where(band, soft, m.astype(np.float32))
    return np.round(out * 255.0).astype(np.uint8)


def refine_mask(mask: np.ndarray, options: RefineOptions | None = None, *, image: np.ndarray | None = None,
                exclude: np.ndarray | None = None) -> np.ndarray:
    """Clean a model mask into an alpha, in this order:

    1. fill small enclosed holes;
    2. subtract ``exclude`` (occluders such as hair, hands or a bag);
    3. drop small components;
    4. smooth the outline;
    5. make the edges: hard, feathered or matted (``image`` is needed for ``matte``).

    Args:
        mask (`np.ndarray`): HxW bool/uint8 (nonzero = foreground).
        options (`RefineOptions`, *optional*): defaults to `RefineOptions()`.
        image (`np.ndarray`, *optional*): HxWx3 uint8 RGB, for ``edges="matte"``.
        exclude (`np.ndarray`, *optional*): HxW bool/uint8 occluder mask to subtract.

    Returns:
        `np.ndarray`: HxW ``uint8`` alpha (255 = foreground); all zeros when the mask is empty.
    """
    opts = options or RefineOptions()
    m = as_bool(mask)
    area = m.shape[0] * m.shape[1]
    m = fill_holes(m, int(opts.fill_holes * area))
    if exclude is not None:
        m = subtract(m, exclude)
    if opts.min_component > 0 and m.any():
        n, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
        m = remove_small_components(m, math.ceil(opts.min_component * largest))
    m = smooth_mask(m, opts.smooth_px)
    if opts.edges == "feather":
        return feather(m, opts.feather_px)
    if opts.edges == "matte":
        if image is None:
            raise InputError("edges='matte' needs the image", key="edges")
        return matte(image, m, opts.feather_px, opts.matte_eps)
    return to_alpha(m)

"""Product cutout from plain or studio backgrounds (classic engine, OpenCV only).

The backdrop is *modelled* rather than assumed white (see :func:`fit_backdrop`): a quadratic colour
surface in CIE Lab fitted robustly to the image border covers light-grey sweeps, gradients and vignetting,
and the border's residual noise sets an adaptive tolerance. A pixel is backdrop when it lies within that
tolerance of the model (or is a faint, neutral, smooth shadow on it) *and* carries no edge evidence, and
is connected to the border through such pixels. Everything else is product, so a white garment on a white
backdrop is held by its outline (its edges) even where its colour equals the backdrop's. Enclosed
backdrop-coloured regions stay product (knit holes, a white shirt's body inside its seams) unless they
are clearly backdrop: large, backdrop-coloured and rimmed by material that differs clearly from the
backdrop (a bag handle's opening). The mask is found at a reduced working resolution and brought back
to full resolution by an edge-aware guided filter steered by the photo, which also gives the soft alpha.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipelines.errors import InputError, NothingFoundError
from pipelines.segmentation.person import guided_filter

logger = logging.getLogger(__name__)

#: Border width (fraction of the shorter side) sampled to estimate the background colour.
BORDER_FRACTION = 0.03
#: Images are analysed at most at this longer side; masks are scaled back up (edge-aware).
ANALYSIS_SIDE = 768
#: Darkest a neutral, smooth shadow on the backdrop may be (CIE L* units below the backdrop model).
SHADOW_MAX_DL = 12.0
#: Gaps in a faint outline narrower than about twice this (working-resolution pixels) do not let the
#: border flood into the product.
NECK_RADIUS = 3
#: Smallest local L* standard deviation that counts as fabric texture on a flat, noise-free backdrop.
TEXTURE_FLOOR = 0.12
#: Regions only the strict (texture) pass calls product are added when they hold a core at least this
#: thick (radius, as a share of the working image's longer side): a garment's body, not a JPEG halo.
THICK_FRACTION = 0.03
#: Boundary pixels less unlike the backdrop than this share of the adjacent product's contrast are peeled.
PEEL_RATIO = 0.3
#: How many one-pixel layers of the outline the peel may remove (working resolution).
PEEL_STEPS = 3
#: Edge evidence is dilated by this many pixels to close small gaps in an outline.
EDGE_GROW = 1


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
        evidence (`dict`): figures a second opinion or a quality flag can use (JSON-ready): ``backdrop_rgb``
            (model colour at the image centre), ``backdrop_noise`` and ``tolerance`` (CIE Lab units),
            ``backdrop_spread`` (Lab range of the model over the frame: gradient/vignette), ``uniformity``,
            ``edge_threshold`` (L* per pixel), ``contrast`` (median Lab distance of mask pixels from the
            backdrop model), ``confident_fraction`` (share of mask pixels clearly unlike the backdrop:
            low for white-on-white, where the outline alone holds the mask), ``holes_kept`` and
            ``holes_backdrop`` (enclosed backdrop-coloured regions kept as product / cut as backdrop),
            ``area_fraction``.
    """

    alpha: np.ndarray
    mask: np.ndarray
    background_color: tuple[int, int, int]
    background_uniformity: float
    bbox: tuple[int, int, int, int]
    evidence: dict = field(default_factory=dict)


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


@dataclass
class Backdrop:
    """A robust model of a studio backdrop, fitted to the image border (:func:`fit_backdrop`).

    Attributes:
        coef (`np.ndarray`): (6, 3) float64 coefficients of a quadratic surface per CIE Lab channel over
            normalised coordinates ``u, v`` in [-1, 1]: terms ``1, u, v, u*u, u*v, v*v``.
        noise (`float`): robust spread (Lab units) of border pixels around the model.
        tolerance (`float`): Lab distance within which a smooth pixel counts as backdrop (2 to 12).
        uniformity (`float`): share of border pixels within ``tolerance`` of the model, in [0, 1].
        edge_threshold (`float`): Lab gradient (units per pixel) above which a pixel is edge evidence.
        texture_threshold (`float`): local L* standard deviation (5x5) above which a pixel is textured
            (fabric) rather than backdrop; near 0 for a flat, noise-free (rendered or cleaned) backdrop.
    """

    coef: np.ndarray
    noise: float
    tolerance: float
    uniformity: float
    edge_threshold: float
    texture_threshold: float = float("inf")

    def render(self, height: int, width: int, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """The model as an HxWx3 float32 CIE Lab image (L in [0, 100]) over a ``height`` x ``width`` frame.

        ``window`` ``(y0, y1, x0, x1)`` renders only that part of the frame.
        """
        y0, y1, x0, x1 = window if window is not None else (0, height, 0, width)
        u = (np.arange(x0, x1, dtype=np.float32) / max(width - 1, 1) * 2.0 - 1.0)[None, :]
        v = (np.arange(y0, y1, dtype=np.float32) / max(height - 1, 1) * 2.0 - 1.0)[:, None]
        c = self.coef.astype(np.float32)
        uv = v * u
        chans = [(c[0, ch] + c[1, ch] * u + c[3, ch] * u * u) + (c[2, ch] * v + c[5, ch] * v * v) + c[4, ch] * uv
                 for ch in range(3)]
        return cv2.merge(chans)


def _lab(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> float32 CIE Lab (L in [0, 100], a/b roughly [-128, 127])."""
    return cv2.cvtColor(image.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2LAB)


def _gradient(lab: np.ndarray) -> np.ndarray:
    """Lab gradient magnitude per pixel (HxW float32), lightly smoothed against sensor/JPEG noise."""
    blur = cv2.GaussianBlur(lab, (0, 0), 0.8)
    gx = cv2.Sobel(blur, cv2.CV_32F, 1, 0, ksize=3) * 0.125
    gy = cv2.Sobel(blur, cv2.CV_32F, 0, 1, ksize=3) * 0.125
    return cv2.sqrt(_sumsq3(gx) + _sumsq3(gy))


def _sumsq3(x: np.ndarray) -> np.ndarray:
    """Per-pixel sum of squares over the 3 channels of an HxWx3 float32 array (HxW float32)."""
    return cv2.transform(cv2.multiply(x, x), np.ones((1, 3), np.float32))


def _ring(h: int, w: int, fraction: float) -> np.ndarray:
    b = max(2, int(round(min(h, w) * fraction)))
    ring = np.zeros((h, w), bool)
    ring[:b] = ring[-b:] = True
    ring[:, :b] = ring[:, -b:] = True
    return ring


def _local_std(lum: np.ndarray, size: int = 5) -> np.ndarray:
    """Standard deviation of ``lum`` (HxW float32) over a ``size`` x ``size`` window."""
    mean = cv2.boxFilter(lum, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(lum * lum, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(sq - mean * mean, 0.0))


def fit_backdrop(lab: np.ndarray, grad: np.ndarray | None = None, fraction: float = BORDER_FRACTION,
                 texture: np.ndarray | None = None) -> Backdrop:
    """Fit a quadratic CIE Lab surface to the border ring, ignoring what does not fit (a product at the edge).

    Args:
        lab (`np.ndarray`): HxWx3 float32 CIE Lab (from OpenCV's float conversion, L in [0, 100]).
        grad (`np.ndarray`, *optional*): HxW Lab gradient magnitude (see ``_gradient``); computed if absent.
        fraction (`float`, *optional*): ring width as a share of the shorter side (default 0.03).

    Returns:
        `Backdrop`.
    """
    h, w = lab.shape[:2]
    if grad is None:
        grad = _gradient(lab)
    ring = _ring(h, w, fraction)
    ys, xs = np.nonzero(ring)
    if len(xs) > 8000:  # a regular subsample keeps the fit fast and deterministic
        step = len(xs) // 8000 + 1
        ys, xs = ys[::step], xs[::step]
    px = lab[ys, xs].astype(np.float64)
    u = xs / max(w - 1, 1) * 2.0 - 1.0
    v = ys / max(h - 1, 1) * 2.0 - 1.0
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    center = np.median(px, axis=0)
    resid = np.linalg.norm(px - center, axis=1)
    inl = resid <= max(3.0 * 1.4826 * float(np.median(resid)), 2.0)
    coef = np.zeros((6, 3))
    coef[0] = center
    for _ in range(3):
        if inl.sum() < 12:
            break
        a_in = design[inl]
        coef = np.linalg.solve(a_in.T @ a_in + 1e-9 * np.eye(6), a_in.T @ px[inl])
        resid = np.linalg.norm(px - design @ coef, axis=1)
        sigma = 1.4826 * float(np.median(resid[inl]))
        inl = resid <= max(3.0 * sigma, 1.5)
    noise = 1.4826 * float(np.median(resid[inl])) if inl.any() else float(np.median(resid))
    tolerance = float(np.clip(3.0 * noise + 1.2, 2.0, 12.0))
    uniformity = float((resid <= max(tolerance, 10.0)).mean())
    g = grad[ys, xs][inl] if inl.any() else grad[ys, xs]
    edge_threshold = float(max(0.8, 1.5 * np.percentile(g, 99)))
    if texture is None:
        texture = _local_std(np.ascontiguousarray(lab[..., 0]))
    t = texture[ys, xs][inl] if inl.any() else texture[ys, xs]
    texture_threshold = float(1.3 * np.percentile(t, 95) + TEXTURE_FLOOR)
    return Backdrop(coef=coef, noise=noise, tolerance=tolerance, uniformity=uniformity,
                    edge_threshold=edge_threshold, texture_threshold=texture_threshold)


def _open_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening of a bool mask by a disk of ``radius`` px (via two distance transforms)."""
    eroded = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3) > radius
    return cv2.distanceTransform((~eroded).astype(np.uint8), cv2.DIST_L2, 3) <= radius


def _border_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: which of ``n`` component labels touch the image border (label 0, the rest, excluded)."""
    on_border = np.zeros(n, bool)
    on_border[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
    on_border[0] = False
    return on_border


def _backdrop_mask(lab: np.ndarray, grad: np.ndarray, texture: np.ndarray, bd: Backdrop, tolerance: float,
                   hole_fraction: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Border-connected backdrop at working resolution.

    Returns:
        `(product, dist, stats)`: HxW bool product mask (clearly-backdrop holes cut out), HxW float32 Lab
        distance from the backdrop model, and counts of the holes kept / cut.
    """
    h, w = lab.shape[:2]
    model = bd.render(h, w)
    diff = lab - model
    dist = cv2.sqrt(_sumsq3(diff))
    chroma = np.sqrt(diff[..., 1] ** 2 + diff[..., 2] ** 2)
    edges = grad > bd.edge_threshold
    edges = cv2.dilate(edges.astype(np.uint8), np.ones((2 * EDGE_GROW + 1,) * 2, np.uint8)) > 0
    shadow = (diff[..., 0] < 0) & (diff[..., 0] > -SHADOW_MAX_DL) & (chroma < max(tolerance, 3.0))
    # Loose pass: backdrop-coloured, no edge. Accurate outlines for products that differ from the
    # backdrop, but the flood leaks into a white garment through gaps in its faint outline.
    smooth = texture <= bd.texture_threshold
    # a faint, neutral, *smooth* darkening of the backdrop is its shadow (fabric folds are textured)
    cand = ((dist < tolerance) | (shadow & smooth)) & ~edges
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=4)
    is_border = _border_labels(labels, n)
    loose = ~is_border[labels]
    # Strict pass: also untextured (fabric is textured, a backdrop is not), and narrow necks cut, so a
    # white garment holds. JPEG ringing beside dark edges is "textured" too: from the strict pass only
    # thick regions (a garment's body, not a halo or a closed slot) are added to the loose one.
    strict_cand = cand & smooth
    n2, lab2 = cv2.connectedComponents(strict_cand.astype(np.uint8), connectivity=4)
    background = _border_labels(lab2, n2)[lab2]
    if NECK_RADIUS > 0:
        opened = _open_disk(background, NECK_RADIUS)
        n3, lab3 = cv2.connectedComponents(opened.astype(np.uint8), connectivity=4)
        background = _border_labels(lab3, n3)[lab3]
    extra = ~background & ~loose
    thick = max(3, int(round(THICK_FRACTION * max(h, w))))
    # a thick core: pixels farther than ``thick`` from the region's edge (an erosion by a disk)
    core = cv2.distanceTransform(extra.astype(np.uint8), cv2.DIST_L2, 3) > thick
    if core.any():
        n4, lab4 = cv2.connectedComponents(extra.astype(np.uint8), connectivity=8)
        has_core = np.zeros(n4, bool)
        has_core[np.unique(lab4[core])] = True
        has_core[0] = False
        loose = loose | has_core[lab4]
    product = loose
    # Enclosed backdrop-like regions: product (knit holes, a white body inside its seams) unless clearly
    # backdrop: large, backdrop-coloured (not a shaded fold) and rimmed by clearly different material.
    min_area = max(16, int(h * w * hole_fraction))
    strong = max(15.0, 4.0 * tolerance)
    kept = cut = 0
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    k_in = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for i in range(1, n):
        if is_border[i]:
            continue
        area = stats[i, cv2.CC_STAT_AREA]
        if area < min_area:
            continue
        x, y, bw, bh = stats[i, :4]
        x0, y0, x1, y1 = max(0, x - 6), max(0, y - 6), min(w, x + bw + 6), min(h, y + bh + 6)
        region = labels[y0:y1, x0:x1] == i
        # the rim skips the dilated edge pixels right next to the region (2 px), then spans 3 px
        rim = (cv2.dilate(region.astype(np.uint8), k) > 0) & ~(cv2.dilate(region.astype(np.uint8), k_in) > 0)
        d_reg = dist[y0:y1, x0:x1][region]
        d_rim = dist[y0:y1, x0:x1][rim]
        if (float(np.median(d_reg)) < tolerance and d_rim.size
                and float(np.median(d_rim)) >= strong and float(np.mean(d_rim >= strong)) >= 0.5):
            product[y0:y1, x0:x1][region] = False
            cut += 1
        else:
            kept += 1
    return product, dist, {"holes_kept": kept, "holes_backdrop": cut}


def _remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop components under ``min_area`` or under 2 % of the largest (bool in, bool out)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    areas = stats[:, cv2.CC_STAT_AREA].copy()
    areas[0] = 0
    keep = areas >= max(min_area, 0.02 * areas.max())
    keep[0] = False
    return keep[labels]


def _peel_outline(m: np.ndarray, dist: np.ndarray, tol: float) -> np.ndarray:
    """Peel the outline's backdrop-coloured outer pixels off the mask (step 3 of `cutout_product`)."""
    # a boundary pixel is backdrop when backdrop-coloured, or when far less unlike the backdrop than
    # the product right beside it (JPEG ringing and halos beside a dark garment)
    interior = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    win = (9, 9)
    local_fg = cv2.boxFilter(dist * interior, -1, win) / np.maximum(cv2.boxFilter(interior, -1, win), 1e-6)
    peelable = (dist < tol) | ((dist < PEEL_RATIO * local_fg) & (local_fg > 4.0 * tol))
    for _ in range(PEEL_STEPS):  # edge evidence was dilated and blurred: peel it back
        outer = m & ~(cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
        peel = outer & peelable
        if not peel.any():
            break
        m = m & ~peel
    return m


def _snap_to_edges(small: np.ndarray, m: np.ndarray, dist: np.ndarray, tol: float) -> np.ndarray:
    """The soft alpha (float32 in [0, 1]) at the working resolution: the mask's edge band snapped to the
    photo's edges with a guided filter (step 4 of `cutout_product`)."""
    sh, sw = small.shape[:2]
    soft = m.astype(np.float32)
    radius = 2
    k = np.ones((2 * radius + 3,) * 2, np.uint8)
    mu = m.astype(np.uint8)
    band = (cv2.dilate(mu, k) > 0) & ~(cv2.erode(mu, k) > 0)
    ys, xs = np.nonzero(band)
    if len(xs):
        y0, y1 = max(0, ys.min() - radius - 1), min(sh, ys.max() + radius + 2)
        x0, x1 = max(0, xs.min() - radius - 1), min(sw, xs.max() + radius + 2)
        patch = guided_filter(np.ascontiguousarray(small[y0:y1, x0:x1]),
                              np.ascontiguousarray(soft[y0:y1, x0:x1]), radius, 1e-3)
        # outside the mask, backdrop-coloured pixels stay backdrop (no filter tails on it)
        backdrop_like = (dist[y0:y1, x0:x1] < tol) & ~m[y0:y1, x0:x1]
        patch = np.where(backdrop_like, 0.0, patch)
        sel = band[y0:y1, x0:x1]
        soft[y0:y1, x0:x1][sel] = patch[sel]
    # the filter's faint tails (a few % of alpha, up to 2 radii out) are no edge: clamp them
    soft = np.where(soft < 0.06, 0.0, np.where(soft > 0.94, 1.0, soft)).astype(np.float32)
    return soft


def _evidence(bd: Backdrop, dist: np.ndarray, m: np.ndarray, hard: np.ndarray, tol: float, hole_stats: dict[str, int]
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """The backdrop's colour (RGB floats) and the cutout's ``evidence`` record (step 5 of `cutout_product`)."""
    model = bd.render(3, 3)
    bg_lab = model[1, 1]
    bg_rgb = np.clip(cv2.cvtColor(bg_lab[None, None, :].astype(np.float32), cv2.COLOR_LAB2RGB)[0, 0] * 255.0,
                     0, 255).round()
    d_in = dist[m]
    corners = bd.render(2, 2).reshape(-1, 3)
    evidence = {
        "backdrop_rgb": [int(c) for c in bg_rgb],
        "backdrop_noise": round(bd.noise, 3),
        "tolerance": round(tol, 3),
        "backdrop_spread": round(float(np.ptp(np.linalg.norm(corners - bg_lab, axis=1))
                                       + np.linalg.norm(corners - bg_lab, axis=1).max()), 3),
        "uniformity": round(bd.uniformity, 4),
        "edge_threshold": round(bd.edge_threshold, 3),
        "texture_threshold": round(bd.texture_threshold, 3),
        "contrast": round(float(np.median(d_in)), 3),
        "confident_fraction": round(float((d_in >= 2.0 * tol).mean()), 4),
        "area_fraction": round(float((hard > 0).mean()), 4),
        **hole_stats,
    }
    return bg_rgb, evidence


def cutout_product(
    image: np.ndarray,
    *,
    tolerance: float | None = None,
    refine: bool = True,
    hole_fraction: float = 0.002,
    analysis_side: int | None = None,
) -> Cutout:
    """Cut a product out of a plain or studio background (white, light grey, gradient, with shadow).

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB photo of a product on a plain or studio backdrop.
        tolerance (`float`, *optional*): CIE Lab distance from the backdrop model below which a smooth
            pixel counts as backdrop; by default from the border's noise (2 to 12).
        refine (`bool`, *optional*, defaults to `True`): snap the upscaled mask to the photo's edges with
            a guided filter (also the source of the soft alpha); `False`: a bilinear upscale only.
        hole_fraction (`float`, *optional*, defaults to 0.002): enclosed backdrop-coloured regions
            smaller than this share of the image always stay product (knit/lace holes, specks); larger
            ones are cut out only when clearly backdrop (see the module docstring).
        analysis_side (`int`, *optional*): longer side of the working resolution (default
            ``ANALYSIS_SIDE``, 768).

    Returns:
        `Cutout` with a soft alpha, a hard mask at the input's full resolution, and ``evidence``.

    Raises:
        `NothingFoundError`: when no pixel differs from the background.
    """
    _check_rgb(image)
    h, w = image.shape[:2]
    side = int(analysis_side or ANALYSIS_SIDE)
    scale = min(1.0, side / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                  interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]

    # 1. Backdrop model (colour surface, noise, edge threshold) from the border.
    lab = _lab(small)
    grad = _gradient(lab)
    texture = _local_std(np.ascontiguousarray(lab[..., 0]))
    bd = fit_backdrop(lab, grad, texture=texture)
    tol = float(tolerance) if tolerance is not None else bd.tolerance

    # 2. Border-connected backdrop (smooth, untextured, backdrop-coloured); enclosed regions judged one by one.
    product, dist, hole_stats = _backdrop_mask(lab, grad, texture, bd, tol, hole_fraction)

    # 3. Clean: the dilated edge evidence leaves a one-pixel line around the product and specks on the
    #    backdrop: open, drop small blobs, then peel the outline's backdrop-coloured outer pixels.
    m = _remove_small(product, max(16, int(sh * sw * 1e-4)))
    if not m.any():
        raise NothingFoundError("no product found: every pixel matches the background colour")
    m = _peel_outline(m, dist, tol)

    # 4. Snap to the photo's edges with a guided filter (the soft alpha), then back to full resolution.
    soft = _snap_to_edges(small, m, dist, tol) if refine else m.astype(np.float32)
    if scale != 1.0:
        soft = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = np.clip(np.round(soft * 255.0), 0, 255).astype(np.uint8)
    hard = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(hard)
    if len(xs) == 0:
        raise NothingFoundError("no product found after refinement")
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    # 5. The backdrop colour and what the decision rests on (the manifest's evidence).
    bg_rgb, evidence = _evidence(bd, dist, m, hard, tol, hole_stats)
    return Cutout(
        alpha=alpha,
        mask=hard,
        background_color=(int(bg_rgb[0]), int(bg_rgb[1]), int(bg_rgb[2])),
        background_uniformity=bd.uniformity,
        bbox=bbox,
        evidence=evidence,
    )

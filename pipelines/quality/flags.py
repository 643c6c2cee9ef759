"""Quality flags: checks that catch bad outputs, computed per output and stored in the manifest.

Every placed output of a catalog entry (main, alternates, lifestyle scenes, marketplace mains) gets
``quality.checks`` (the figures) and ``quality.flags`` (the checks it failed). A flagged output starts
with ``review: {"status": "needs-attention"}``; `vitrine verify --strict` fails on it until a reviewer
approves it. Documented in docs/quality.md and docs/catalog-format.md.

The checks:

- **cutout sanity** (`cutout_sanity`): the produced alpha against a second opinion made another way —
  a backdrop-difference mask (`backdrop_mask`: a quadratic backdrop model fitted to the photo's border
  ring, a tight CIE Lab tolerance, border-connected flood) for products, and mediapipe's raw selfie
  person mask (`person_mask`) for people. Flags ``cutout-lost-area`` (the cutout keeps too little of the
  second opinion's foreground: a white tee losing its body), ``cutout-holes`` (enclosed holes in the
  cutout where the second opinion sees subject: holes in a face) and ``cutout-extra-area`` (the cutout
  is much larger: backdrop or shadow kept). For people also ``cutout-uncertain`` (`alpha_uncertainty`):
  the embedded models' fused mask is undecided (alpha between 0.1 and 0.9) over a large share of the
  person's area, as on busy street scenes where they mix people and background.
- **halo** (`halo_score`): a bright or dark fringe along the alpha edge, brighter (darker) than both the
  subject just inside and the new background just outside.
- **upscale** (`upscale_check`): the placement enlarges the photo more than ``UPSCALE_FLAG`` (2x);
  `refuse_upscale` raises above the render's ``max_upscale`` (default 8x).
- **floor shadow** (`floor_contact`, `shadow_present`): a contact shadow drawn under a subject that does
  not stand on the floor (a torso cropped at the waist, a subject cut by the frame's bottom edge).
- **fill** (`fill_check`): the product's share of the canvas outside the allowed range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipelines.errors import InputError

#: Side (pixels) at which masks are compared; enough for area/hole figures, fast (~10 ms a photo).
ANALYSIS_SIDE = 512
#: Side at which the halo score is measured on an output (a fringe a few pixels wide at 2000 px is 1-2 px here).
HALO_SIDE = 768
#: Placements enlarging the photo by more than this are flagged ``upscaled``.
UPSCALE_FLAG = 2.0
#: Default refusal limit for the enlargement of a photo (``RenderOptions.max_upscale``): a 192x256 photo
#: filling a 2000 px main image (8.5x) is refused; the 384 px built-in samples (6.4x) and the 512 px test
#: products (4.8x) are not (both are flagged `upscaled`).
MAX_UPSCALE = 8.0
#: COCO-17 indices of the ankles.
_ANKLES = (15, 16)


@dataclass(frozen=True)
class FlagThresholds:
    """Where a check starts to flag. Measured against the demo products and real shop photos
    (docs/quality.md, "Quality flags").

    Attributes:
        min_kept (`float`, defaults to 0.75): ``cutout-lost-area`` when the cutout keeps less than this
            share of the second opinion's foreground.
        max_holes (`float`, defaults to 0.004): ``cutout-holes`` when enclosed holes of the cutout that
            the second opinion calls subject exceed this share of the second opinion's area.
        max_extra (`float`, defaults to 0.35): ``cutout-extra-area`` when more than this share of the
            cutout lies outside the second opinion's foreground.
        halo_excess (`float`, defaults to 10.0): an edge pixel is a fringe when its CIE L* is this much
            above (below) both the subject inside and the background outside.
        max_halo (`float`, defaults to 0.25): ``halo`` when more than this share of edge pixels is fringe.
        upscale (`float`, defaults to `UPSCALE_FLAG`): ``upscaled`` above this enlargement.
        fill_tolerance (`float`, defaults to 0.05): the fill may deviate this much from the requested fill
            (marketplace outputs use their rule set's range instead).
        max_uncertain (`float`, defaults to 0.25): ``cutout-uncertain`` (people only) when the undecided
            pixels of the alpha (between 0.1 and 0.9) exceed this share of the person's area (alpha >= 0.5).
            Measured: at most 0.19 on the on-model catalogue photos, 0.11-10 on street scenes.
    """

    min_kept: float = 0.75
    max_holes: float = 0.004
    max_extra: float = 0.35
    halo_excess: float = 10.0
    max_halo: float = 0.25
    upscale: float = UPSCALE_FLAG
    fill_tolerance: float = 0.05
    max_uncertain: float = 0.25


DEFAULT_THRESHOLDS = FlagThresholds()


def _flag(name: str, message: str, value: float, limit: float) -> dict[str, Any]:
    return {"flag": name, "message": message, "value": round(float(value), 4), "limit": round(float(limit), 4)}


def _small(array: np.ndarray, side: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    h, w = array.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return array
    return cv2.resize(array, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interpolation)


_Y = np.arange(256, dtype=np.float64) / 255.0
_Y = np.where(_Y <= 0.04045, _Y / 12.92, ((_Y + 0.055) / 1.055) ** 2.4)
#: CIE L* of an sRGB grey level (a lookup table; applied to Rec. 601 luma it approximates L* within ~2).
_LSTAR = np.where(_Y > 216 / 24389, 116 * np.cbrt(_Y) - 16, _Y * 24389 / 27).astype(np.float32)


def _lightness(rgb: np.ndarray) -> np.ndarray:
    """Approximate CIE L* (0-100) of an HxWx3 uint8 RGB image, float32 (fast: luma through a table)."""
    return _LSTAR[cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (L* in [0, 100]) of an HxWx3 uint8 RGB image, float32."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


# --------------------------------------------------------------------------------------------------
# Second opinions
# --------------------------------------------------------------------------------------------------


def backdrop_mask(image: np.ndarray, *, ring_px: int = 6, opening_fraction: float = 0.002) -> dict[str, Any] | None:
    """A second-opinion product mask from a backdrop model (not the cutout's method).

    A quadratic surface per Lab channel is fitted to a ``ring_px`` border ring (robustly: refitted on the
    80% of ring pixels it explains best), so gradients and vignetting are modelled; pixels within a tight
    tolerance of the model (3.5x the ring's residual spread, at least 2.5 dE) that connect to the border
    are backdrop. Enclosed backdrop-coloured regions larger than ``opening_fraction`` of the image stay
    backdrop (a bag handle's opening); smaller ones are filled (specks, knit holes).

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB photo.
        ring_px (`int`, *optional*, defaults to 6): border ring width at `ANALYSIS_SIDE`.
        opening_fraction (`float`, *optional*, defaults to 0.002): enclosed backdrop regions above this
            share of the image are openings, not holes.

    Returns:
        `dict | None`: ``mask`` (hxw uint8 0/255 at `ANALYSIS_SIDE`), ``tolerance`` (dE), ``residual``
        (ring spread, dE), ``border_share`` (ring pixels matching the model); `None` when the border is not
        a backdrop (a scene: under 60% of the ring matches), so there is no second opinion.
    """
    small = _small(image, ANALYSIS_SIDE)
    lab = _lab(small)
    h, w = lab.shape[:2]
    ring = np.zeros((h, w), bool)
    r = max(1, min(ring_px, min(h, w) // 8))
    ring[:r], ring[-r:], ring[:, :r], ring[:, -r:] = True, True, True, True
    ys, xs = np.nonzero(ring)
    step = max(1, len(ys) // 4000)  # a few thousand ring pixels fit the 6 coefficients well
    ys, xs = ys[::step], xs[::step]
    yn, xn = ys / max(h - 1, 1) - 0.5, xs / max(w - 1, 1) - 0.5
    basis = np.stack([np.ones_like(xn), xn, yn, xn * xn, yn * yn, xn * yn], axis=1)
    values = lab[ys, xs]
    keep = np.ones(len(values), bool)
    coef = None
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(basis[keep], values[keep], rcond=None)
        resid = np.linalg.norm(values - basis @ coef, axis=1)
        keep = resid <= np.percentile(resid, 80)
    residual = float(np.percentile(resid, 80))
    tol = max(2.5, 3.5 * residual)
    border_share = float((resid <= tol).mean())
    if border_share < 0.6:
        return None
    # The smooth model evaluated on a coarse grid and upsampled (same to ~0.01 dE, 20x cheaper).
    gh, gw = max(2, h // 8), max(2, w // 8)
    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, gh), np.linspace(-0.5, 0.5, gw), indexing="ij")
    grid = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=-1) @ coef
    model = cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    diff = lab - model
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    like_bg = (dist <= tol).astype(np.uint8)
    like_bg = cv2.morphologyEx(like_bg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(like_bg, connectivity=4)
    background = _touches_border(stats, h, w) | (stats[:, cv2.CC_STAT_AREA] > opening_fraction * h * w)
    background[0] = False  # label 0: the non-backdrop pixels
    fg = (~background[labels]).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep_ids = np.nonzero(areas >= 0.05 * areas.max())[0] + 1
        fg = np.isin(labels, keep_ids).astype(np.uint8)
    return {"mask": fg * 255, "tolerance": round(tol, 3), "residual": round(residual, 3),
            "border_share": round(border_share, 4)}


def person_mask(image: np.ndarray) -> np.ndarray | None:
    """A second-opinion person mask: mediapipe's general selfie model, one pass, thresholded at 0.5.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB photo.

    Returns:
        `np.ndarray | None`: hxw uint8 0/255 at `ANALYSIS_SIDE`; `None` when mediapipe is unavailable.
    """
    try:
        from pipelines.segmentation.person import get_selfie_segmenter

        prob = get_selfie_segmenter(0)(np.ascontiguousarray(_small(image, ANALYSIS_SIDE)))
    except Exception:  # noqa: BLE001 - a missing backend means no second opinion, never a failed SKU
        return None
    return np.where(prob > 0.5, 255, 0).astype(np.uint8)


def _touches_border(stats: np.ndarray, h: int, w: int) -> np.ndarray:
    """Per connected component (rows of OpenCV ``stats``): does its box touch the image border?"""
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    return (x == 0) | (y == 0) | (x + stats[:, cv2.CC_STAT_WIDTH] >= w) | (y + stats[:, cv2.CC_STAT_HEIGHT] >= h)


def _holes(mask: np.ndarray) -> np.ndarray:
    """Enclosed background of a 0/255 mask (components of its complement not touching the border)."""
    inv = (mask == 0).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    enclosed = ~_touches_border(stats, *mask.shape)
    enclosed[0] = False  # label 0: the mask itself
    return enclosed[labels]


def cutout_sanity(
    image: np.ndarray,
    alpha: np.ndarray,
    kind: str,
    *,
    reference: np.ndarray | None = None,
    reference_name: str | None = None,
    thresholds: FlagThresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Compare a subject's alpha with a second opinion; flag large disagreement.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB photo (the normalised input).
        alpha (`np.ndarray`): HxW uint8 produced alpha (255 = subject), same size.
        kind (`str`): ``product`` (second opinion: `backdrop_mask`) or ``person`` (`person_mask`).
        reference (`np.ndarray`, *optional*): a second-opinion 0/255 mask to use instead (any size; it is
            resized to the analysis size).
        reference_name (`str`, *optional*): what ``reference`` is, for the record.
        thresholds (`FlagThresholds`, *optional*): where flags start.

    Returns:
        `dict`: ``reference`` (``backdrop-model``, ``mediapipe-selfie``, the given name, or ``none``),
        ``kept`` (share of the second opinion's area the cutout keeps, [0, 1]), ``extra`` (share of the
        cutout outside it), ``holes`` (enclosed cutout holes the second opinion calls subject, as a share of
        its area), ``iou``; for people ``uncertain`` (`alpha_uncertainty` at the analysis size); and ``flags``
        (list of flag dicts, empty when they agree or there is no second opinion).
    """
    if alpha.shape != image.shape[:2]:
        raise InputError(f"alpha is {alpha.shape} but the image is {image.shape[:2]}", key="alpha")
    small = _small(alpha, ANALYSIS_SIDE, cv2.INTER_LINEAR)
    out = _person_uncertainty(small, thresholds) if kind == "person" else {"flags": []}
    rec = _against_reference(image, small >= 128, kind, reference, reference_name, thresholds)
    return {**rec, **{k: v for k, v in out.items() if k != "flags"}, "flags": rec["flags"] + out["flags"]}


def alpha_uncertainty(alpha: np.ndarray) -> float:
    """Undecided pixels of a soft alpha over the subject's area.

    Args:
        alpha (`np.ndarray`): HxW uint8 alpha (255 = subject), at any size.

    Returns:
        `float`: the count of pixels with alpha in (0.1, 0.9) x 255 over the count with alpha >= 128, in
        [0, inf) (0 for a hard mask; an empty subject counts its undecided pixels over 1).
    """
    undecided = int(((alpha > 25) & (alpha < 230)).sum())
    return undecided / max(int((alpha >= 128).sum()), 1)


def _person_uncertainty(small: np.ndarray, thresholds: FlagThresholds) -> dict[str, Any]:
    u = alpha_uncertainty(small)
    flags = []
    if u > thresholds.max_uncertain:
        flags.append(_flag("cutout-uncertain", f"the person segmenter is undecided over {u:.0%} of the person's area "
                           f"(limit {thresholds.max_uncertain:.0%}): a busy scene or other people; check the cutout",
                           u, thresholds.max_uncertain))
    return {"uncertain": round(u, 4), "flags": flags}


def _against_reference(image: np.ndarray, a: np.ndarray, kind: str, reference: np.ndarray | None,
                       reference_name: str | None, thresholds: FlagThresholds) -> dict[str, Any]:
    name = reference_name
    if reference is None:
        if kind == "person":
            reference, name = person_mask(image), "mediapipe-selfie"
        else:
            bd = backdrop_mask(image)
            reference, name = (bd["mask"] if bd else None), "backdrop-model"
    if reference is None:
        return {"reference": "none", "flags": []}
    if reference.shape != a.shape:
        reference = cv2.resize(reference, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_NEAREST)
    ref = reference >= 128
    ref_area, a_area = int(ref.sum()), int(a.sum())
    if ref_area == 0:
        return {"reference": f"{name} (empty)", "flags": []}
    kept = float((a & ref).sum()) / ref_area
    extra = float((a & ~ref).sum()) / max(a_area, 1)
    holes = float((_holes(np.where(a, 255, 0).astype(np.uint8)) & ref).sum()) / ref_area
    union = int((a | ref).sum())
    out: dict[str, Any] = {"reference": name, "kept": round(kept, 4), "extra": round(extra, 4),
                           "holes": round(holes, 4), "iou": round(float((a & ref).sum()) / union, 4)}
    flags = []
    if kept < thresholds.min_kept:
        flags.append(_flag("cutout-lost-area", f"the cutout keeps only {kept:.0%} of the subject the {name} sees "
                           f"(limit {thresholds.min_kept:.0%}): part of the subject is missing", kept,
                           thresholds.min_kept))
    if holes > thresholds.max_holes:
        flags.append(_flag("cutout-holes", f"the cutout has holes covering {holes:.1%} of the subject where the "
                           f"{name} sees subject (limit {thresholds.max_holes:.1%})", holes, thresholds.max_holes))
    if extra > thresholds.max_extra:
        flags.append(_flag("cutout-extra-area", f"{extra:.0%} of the cutout lies outside the subject the {name} "
                           f"sees (limit {thresholds.max_extra:.0%}): backdrop or shadow kept", extra,
                           thresholds.max_extra))
    out["flags"] = flags
    return out


# --------------------------------------------------------------------------------------------------
# Output checks
# --------------------------------------------------------------------------------------------------


def backdrop_lightness(image: np.ndarray) -> float:
    """Median approximate CIE L* of a photo's outer 2% frame: what an old-backdrop fringe looks like."""
    h, w = image.shape[:2]
    b = max(1, int(0.02 * min(h, w)))
    lum = _lightness(np.ascontiguousarray(image))
    frame = np.concatenate([lum[:b].ravel(), lum[-b:].ravel(), lum[:, :b].ravel(), lum[:, -b:].ravel()])
    return round(float(np.median(frame)), 2)


def halo_score(output: np.ndarray, alpha: np.ndarray, *, backdrop_l: float | None = None,
               thresholds: FlagThresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Bright or dark fringe along the subject's edge in an output, against its new background.

    Measured at up to `HALO_SIDE`: the edge band is the subject's outer 1-3 px (alpha >= 128); at each edge
    pixel the local mean CIE L* of the edge band (21 px window, so texture averages out) is compared with
    the local mean L* of the subject 4-10 px inside and of the background 1-6 px outside. A pixel brighter than both by ``halo_excess`` is a bright fringe (the old white
    backdrop on a darker scene), darker than both a dark fringe. With ``backdrop_l`` only fringes that
    lean toward the old backdrop count (a white fringe from a white backdrop; a garment's naturally darker
    rolled edge on white is not a halo).

    Args:
        output (`np.ndarray`): HxWx3 uint8 output.
        alpha (`np.ndarray`): HxW uint8 subject alpha in output coordinates.
        backdrop_l (`float`, *optional*): L* of the source photo's backdrop (`backdrop_lightness`).
        thresholds (`FlagThresholds`, *optional*): where the flag starts.

    Returns:
        `dict`: ``bright`` and ``dark`` (share of edge pixels that are fringe, [0, 1]), ``edge_pixels``,
        ``flags``.
    """
    x, y, bw, bh = cv2.boundingRect((alpha >= 128).astype(np.uint8))
    if bw == 0 or bh == 0:
        return {"bright": 0.0, "dark": 0.0, "edge_pixels": 0, "flags": []}
    scale = min(1.0, HALO_SIDE / max(alpha.shape))
    m = int(np.ceil(16 / scale))  # 16 analysis pixels of context around the subject
    y0, y1, x0, x1 = max(0, y - m), min(alpha.shape[0], y + bh + m), max(0, x - m), min(alpha.shape[1], x + bw + m)
    crop_o, crop_a = output[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    if scale < 1.0:
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        crop_o, crop_a = cv2.resize(crop_o, size, interpolation=cv2.INTER_AREA), cv2.resize(crop_a, size)
    out_s, a_s = crop_o, crop_a
    fg = (a_s >= 128).astype(np.uint8)
    if not fg.any() or fg.all():
        return {"bright": 0.0, "dark": 0.0, "edge_pixels": 0, "flags": []}
    d_in = cv2.distanceTransform(fg, cv2.DIST_L2, 3)
    d_out = cv2.distanceTransform(1 - fg, cv2.DIST_L2, 3)
    edge = (fg > 0) & (d_in <= 3)
    inner = ((d_in >= 4) & (d_in <= 10)).astype(np.float32)
    outer = ((a_s == 0) & (d_out >= 1) & (d_out <= 6)).astype(np.float32)
    lum = _lightness(out_s)
    k = (21, 21)
    w_in, w_out = cv2.boxFilter(inner, -1, k, normalize=False), cv2.boxFilter(outer, -1, k, normalize=False)
    m_in = cv2.boxFilter(lum * inner, -1, k, normalize=False) / np.maximum(w_in, 1e-6)
    m_out = cv2.boxFilter(lum * outer, -1, k, normalize=False) / np.maximum(w_out, 1e-6)
    # The edge band's own local mean: a fringe is a continuous band, while a knit's dark and light yarns
    # at the edge average out to the interior's lightness.
    edge_f = edge.astype(np.float32)
    m_edge = cv2.boxFilter(lum * edge_f, -1, k, normalize=False) / np.maximum(
        cv2.boxFilter(edge_f, -1, k, normalize=False), 1e-6)
    valid = edge & (w_in > 0) & (w_out > 0)
    n = int(valid.sum())
    if n < 50:
        return {"bright": 0.0, "dark": 0.0, "edge_pixels": n, "flags": []}
    e, mi, mo = m_edge[valid], m_in[valid], m_out[valid]
    toward_bright = toward_dark = np.ones_like(e, bool)
    if backdrop_l is not None:
        toward_bright, toward_dark = backdrop_l > mi + thresholds.halo_excess, backdrop_l < mi - thresholds.halo_excess
    bright = float(((e - np.maximum(mi, mo) > thresholds.halo_excess) & toward_bright).mean())
    dark = float(((np.minimum(mi, mo) - e > thresholds.halo_excess) & toward_dark).mean())
    flags = []
    for name, share in (("bright", bright), ("dark", dark)):
        if share > thresholds.max_halo:
            flags.append(_flag("halo", f"a {name} fringe runs along {share:.0%} of the subject's edge "
                               f"(limit {thresholds.max_halo:.0%}) against the new background", share,
                               thresholds.max_halo))
    return {"bright": round(bright, 4), "dark": round(dark, 4), "edge_pixels": n, "flags": flags}


def upscale_factor(placement_json: dict[str, Any]) -> float:
    """How much a placement enlarges the photo: the larger of its x/y scales (1.0 = native size)."""
    crop = placement_json["crop_box"]
    rw, rh = placement_json["resized_size"]
    return max(rw / max(crop[2] - crop[0], 1), rh / max(crop[3] - crop[1], 1))


def upscale_check(factor: float, *, thresholds: FlagThresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """``{"factor", "flags"}``: flag ``upscaled`` above ``thresholds.upscale``."""
    flags = []
    if factor > thresholds.upscale:
        flags.append(_flag("upscaled", f"the photo is enlarged {factor:.1f}x (flagged above {thresholds.upscale:.1f}x):"
                           " the output will look soft; supply a larger photo", factor, thresholds.upscale))
    return {"factor": round(float(factor), 3), "flags": flags}


def refuse_upscale(factor: float, limit: float, *, path: Any, source_size: tuple[int, int],
                   output: str, size: tuple[int, int], cutout: dict[str, Any] | None = None) -> None:
    """Raise `InputError` naming the photo and its size when ``factor`` exceeds ``limit``.

    Args:
        factor (`float`): the placement's enlargement (`upscale_factor`).
        limit (`float`): the render's ``max_upscale``.
        path: the photo (named in the message).
        source_size (`tuple[int, int]`): the photo's (width, height) as supplied.
        output (`str`): the output file it was placed for.
        size (`tuple[int, int]`): that output's (width, height).
        cutout (`dict`, *optional*): the photo's `cutout_sanity`; when it flags lost area the message says
            so (a cutout that kept only a print enlarges that print).
    """
    if factor <= limit:
        return
    need = factor / limit
    msg = (f"{output} ({size[0]}x{size[1]}) would enlarge this {source_size[0]}x{source_size[1]} photo {factor:.1f}x, "
           f"above the limit of {limit:g}x (max_upscale: --max-upscale, VITRINE_MAX_UPSCALE); supply a photo "
           f"at least {int(np.ceil(source_size[0] * need))}x{int(np.ceil(source_size[1] * need))} or raise the limit")
    lost = [f for f in (cutout or {}).get("flags", []) if f["flag"] == "cutout-lost-area"]
    if lost:
        msg += f"; note that {lost[0]['message']}, which also makes the subject small"
    raise InputError(msg, path=path)


def floor_contact(alpha: np.ndarray, kind: str, keypoints: np.ndarray | None = None) -> dict[str, Any]:
    """Whether a subject stands on the floor, so that a contact shadow belongs under it.

    A subject cut by the photo's bottom edge (its mask within 1.5% of the bottom and at least a quarter
    of its width wide there) does not: the frame cut it, the floor is not in the picture. A person
    stands only when a confident ankle (COCO keypoints 15/16, score >= 0.5) lies in the lowest 20% of
    the mask: a torso cropped at the waist has no feet. Products not cut by the frame stand.

    Args:
        alpha (`np.ndarray`): HxW uint8 subject alpha in the photo's coordinates.
        kind (`str`): ``product`` or ``person``.
        keypoints (`np.ndarray`, *optional*): (17, 3) COCO keypoints ``[x, y, score]`` for a person.

    Returns:
        `dict`: ``stands`` (bool), ``reason``, ``bottom_gap`` (rows between the mask and the bottom edge,
        as a share of the height), ``bottom_width`` (mask width in its lowest row over its box width).
    """
    fg = alpha >= 128
    h = fg.shape[0]
    rows = np.nonzero(fg.any(axis=1))[0]
    if len(rows) == 0:
        return {"stands": False, "reason": "empty mask", "bottom_gap": 1.0, "bottom_width": 0.0}
    cols = np.nonzero(fg.any(axis=0))[0]
    y0, y1 = int(rows[0]), int(rows[-1])
    box_w = int(cols[-1] - cols[0] + 1)
    bottom_width = float(fg[y1].sum()) / box_w
    gap = (h - 1 - y1) / h
    rec = {"bottom_gap": round(gap, 4), "bottom_width": round(bottom_width, 4)}
    if gap <= 0.015 and bottom_width >= 0.25:
        return {"stands": False, "reason": "cut by the photo's bottom edge", **rec}
    if kind == "person":
        if keypoints is None:
            return {"stands": False, "reason": "a person with no pose: feet not seen", **rec}
        kp = np.asarray(keypoints, np.float32)
        low = y1 - 0.2 * (y1 - y0 + 1)
        feet = [int(i) for i in _ANKLES if kp[i, 2] >= 0.5 and kp[i, 1] >= low]
        if not feet:
            return {"stands": False, "reason": "no ankle in the lowest fifth of the person (cropped above the feet)",
                    **rec}
        return {"stands": True, "reason": "ankles seen at the bottom of the person", **rec}
    return {"stands": True, "reason": "a product not cut by the frame", **rec}


def shadow_present(output: np.ndarray, alpha: np.ndarray, *, darkening: float = 4.0) -> dict[str, Any]:
    """Detect a contact shadow under the subject of an output from its pixels.

    Compares the mean L* of the background just below the subject (the middle 60% of its width, a band
    2-6% of the canvas height under its lowest row) with the same rows beside the subject.

    Args:
        output (`np.ndarray`): HxWx3 uint8 output.
        alpha (`np.ndarray`): HxW uint8 subject alpha in output coordinates.
        darkening (`float`, *optional*, defaults to 4.0): L* drop that counts as a shadow.

    Returns:
        `dict`: ``present`` (bool), ``darkening`` (L* below vs beside; `None` when not measurable).
    """
    full = alpha >= 128
    x0, y0, bw, bh = cv2.boundingRect(full.astype(np.uint8))
    if bw == 0 or bh == 0:
        return {"present": False, "darkening": None}
    h, w = full.shape
    y1, x1 = y0 + bh - 1, x0 + bw - 1
    top, bot = y1 + max(1, int(0.005 * h)), min(h, y1 + max(3, int(0.05 * h)))
    if bot - top < 2:
        return {"present": False, "darkening": None}
    lum = _lightness(np.ascontiguousarray(output[top:bot]))
    fg = full[top:bot]
    band = np.zeros((bot - top, w), bool)
    band[:, x0 + int(0.2 * bw):x1 - int(0.2 * bw) + 1] = True
    side = np.zeros((bot - top, w), bool)
    margin = max(4, int(0.1 * bw))
    side[:, :max(0, x0 - margin)] = True
    side[:, min(w, x1 + margin):] = True
    band &= ~fg
    side &= ~fg
    if band.sum() < 10 or side.sum() < 10:
        return {"present": False, "darkening": None}
    drop = float(lum[side].mean() - lum[band].mean())
    return {"present": drop >= darkening, "darkening": round(drop, 3)}


def shadow_check(output: np.ndarray, alpha: np.ndarray, floor: dict[str, Any]) -> dict[str, Any]:
    """``shadow-without-floor`` when the output shows a contact shadow but the subject does not stand."""
    found = shadow_present(output, alpha)
    rec = {"stands": floor["stands"], "reason": floor["reason"], "shadow": found["present"],
           "darkening": found["darkening"], "flags": []}
    if found["present"] and not floor["stands"]:
        rec["flags"].append(_flag("shadow-without-floor", f"a floor shadow is drawn under a subject that does not "
                                  f"stand on the floor ({floor['reason']})", found["darkening"] or 0.0, 0.0))
    return rec


def fill_check(fill: float, allowed: tuple[float, float], rule: str) -> dict[str, Any]:
    """``fill-out-of-range`` when ``fill`` (product's longer side over the canvas side) leaves ``allowed``.

    A rounding slack of 0.005 is allowed on both ends (the measured box is whole pixels).
    """
    lo, hi = allowed
    flags = []
    if fill < lo - 0.005 or fill > hi + 0.005:
        flags.append(_flag("fill-out-of-range", f"the product fills {fill:.0%} of the image, outside {lo:.0%}-"
                           f"{hi:.0%} ({rule})", fill, lo if fill < lo else hi))
    return {"fill": round(float(fill), 4), "allowed": [round(lo, 4), round(hi, 4)], "rule": rule, "flags": flags}


def collect_flags(checks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every check's flags in one list, each tagged with its ``check`` name (the order of ``checks``)."""
    return [{"check": name, **f} for name, rec in checks.items() for f in rec.get("flags", [])]


def output_flags(output: dict[str, Any]) -> list[dict[str, Any]]:
    """The quality flags recorded on a manifest output (``quality.flags``; [] for none or old manifests)."""
    q = output.get("quality")
    flags = q.get("flags") if isinstance(q, dict) else None
    return [f for f in flags if isinstance(f, dict)] if isinstance(flags, list) else []


def output_checks(final: np.ndarray, alpha: np.ndarray, placement_json: dict[str, Any], cutout: dict[str, Any],
                  floor: dict[str, Any], fill: float, fill_range: tuple[float, float], fill_rule: str,
                  *, backdrop_l: float | None = None, thresholds: FlagThresholds = DEFAULT_THRESHOLDS
                  ) -> dict[str, dict[str, Any]]:
    """Every check of one placed output, by name (``cutout``, ``halo``, ``upscale``, ``shadow``, ``fill``).

    Args:
        final (`np.ndarray`): HxWx3 uint8 output pixels.
        alpha (`np.ndarray`): HxW uint8 subject alpha in output coordinates.
        placement_json (`dict`): the output's placement (`Placement.to_json`).
        cutout (`dict`): the source photo's `cutout_sanity` (shared by its outputs).
        floor (`dict`): the source photo's `floor_contact`.
        fill (`float`): measured fill; ``fill_range``/``fill_rule``: what it must meet, and whose rule.
        backdrop_l (`float`, *optional*): the source photo's backdrop L* (`backdrop_lightness`).
    """
    return {
        "cutout": cutout,
        "halo": halo_score(final, alpha, backdrop_l=backdrop_l, thresholds=thresholds),
        "upscale": upscale_check(upscale_factor(placement_json), thresholds=thresholds),
        "shadow": shadow_check(final, alpha, floor),
        "fill": fill_check(fill, fill_range, fill_rule),
    }


def apply_flags(rec: dict[str, Any], outputs: list[dict[str, Any]]) -> None:
    """Set ``rec["quality"]["flags"]`` from its checks and its review to ``needs-attention`` when flagged.

    Exports derived from ``rec`` (``main.jpg``) take the same review, as they do for reviewer decisions.
    """
    flags = collect_flags(rec["quality"].get("checks", {}))
    rec["quality"]["flags"] = flags
    if flags:
        rec["review"] = {"status": "needs-attention"}
        for o in outputs:
            if o.get("derived_from") == rec["file"] and o.get("kind") == "export":
                o["review"] = {"status": "needs-attention"}

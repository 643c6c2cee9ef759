"""The two anchor points of a garment photo, found from its mask: the ends of its shoulder line (tops,
outerwear, dresses) or of its waistband (lower garments), spaced by the garment's body width.

Both the similarity placement (`pipelines.tryon.warp`) and the body warp's garment landmarks
(`pipelines.tryon.bodywarp`) start from them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.errors import InputError

#: Garment types that can be tried on, and the body part their anchors go to.
TRYON_TYPES = ("upper", "outerwear", "dress", "lower")
#: Garment rows (share of the garment's height from its top) whose width is the garment's body width.
WIDTH_ROWS = {"upper": (0.6, 0.9), "outerwear": (0.55, 0.85), "dress": (0.15, 0.3), "lower": (0.0, 0.06)}
#: Garment row (share of its height) of its anchors: the shoulder line, or the waistband.
ANCHOR_ROW = {"upper": 0.1, "outerwear": 0.1, "dress": 0.07, "lower": 0.03}


def _run_width(row: np.ndarray, cx: int) -> tuple[int, int] | None:
    """The contiguous run of ``row`` (bool) containing column ``cx`` (or the nearest run): (x0, x1 excl)."""
    xs = np.flatnonzero(row)
    if len(xs) == 0:
        return None
    breaks = np.flatnonzero(np.diff(xs) > 1)
    starts = np.concatenate([[xs[0]], xs[breaks + 1]])
    ends = np.concatenate([xs[breaks], [xs[-1]]]) + 1
    inside = np.flatnonzero((starts <= cx) & (ends > cx))
    i = int(inside[0]) if len(inside) else int(np.argmin(np.minimum(abs(starts - cx), abs(ends - 1 - cx))))
    return int(starts[i]), int(ends[i])


def garment_anchors(alpha: np.ndarray, garment_type: str) -> dict[str, Any]:
    """The two anchor points of a garment photo: the ends of its shoulder line or waistband.

    Args:
        alpha (`np.ndarray`): HxW uint8 alpha of the garment photo (255 = garment).
        garment_type (`str`): one of `TRYON_TYPES`.

    Returns:
        `dict`: ``left`` and ``right`` ([x, y] floats, image left/right), ``width`` (px, the garment's
        body width measured on the rows `WIDTH_ROWS`), ``bbox`` (XYXY).

    Raises:
        `InputError`: an unknown garment type or an empty mask.
    """
    if garment_type not in TRYON_TYPES:
        raise InputError(f"garment type {garment_type!r} cannot be tried on; expected one of "
                         f"{', '.join(TRYON_TYPES)}", key="garment_type")
    hard = alpha >= 128
    ys, xs = np.nonzero(hard)
    if len(xs) == 0:
        raise InputError("the garment mask is empty", key="garment")
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    h = y1 - y0
    cx = int(np.median(xs))
    r0, r1 = WIDTH_ROWS[garment_type]
    rows = range(y0 + int(r0 * h), max(y0 + int(r0 * h) + 1, y0 + int(r1 * h)))
    widths, centres = [], []
    for y in rows:
        run = _run_width(hard[y], cx)
        if run is not None:
            widths.append(run[1] - run[0])
            centres.append((run[0] + run[1]) / 2)
    if not widths:
        widths, centres = [x1 - x0], [(x0 + x1) / 2]
    width = float(np.median(widths))
    c = float(np.median(centres))
    ay = y0 + ANCHOR_ROW[garment_type] * h
    return {"left": [c - width / 2, ay], "right": [c + width / 2, ay], "width": width, "bbox": [x0, y0, x1, y1]}

"""The classic try-on's body-shaped warp: a thin-plate spline from garment landmarks to the pose.

The rigid placement (`pipelines.tryon.warp.place_garment` without ``body_warp``) pastes the flat garment
photo by a similarity: sleeves stick out where the flat lay had them, whatever the arms do. The body warp
keeps that similarity as its starting point and bends it with a thin-plate spline (TPS):

- **garment landmarks** (`garment_landmarks`, from the garment mask's geometry alone): the shoulder-line
  ends (the rigid anchors), the collar (top of the mask at its centre), the torso's sides on three rows,
  the hem corners; per sleeve (tops, outerwear, dresses with sleeves) its far end (the cuff: centre and the
  two corners, found along the sleeve's principal axis) and the armpit; per trouser leg (lower garments)
  its hem (centre and corners);
- **body targets** (`body_targets`): every landmark goes where the similarity puts it, except the limbs:
  each sleeve's cuff (each trouser leg's hem) is turned about its shoulder (waist) anchor onto the
  direction of the matching arm (shoulder -> elbow keypoints) or leg (hip -> knee), its length and width
  kept, the turn clamped to `MAX_TURN_DEG`; without the elbow (knee) keypoint the limb stays rigid;
- **the map** (`tps_backward_map`): the TPS from body targets to garment landmarks (a backward map, so
  every canvas pixel gets one garment position), solved in float64 with regularisation `TPS_REG`,
  evaluated every `TPS_GRID` canvas pixels and interpolated bilinearly in between, then
  ``cv2.remap(..., INTER_LINEAR, BORDER_CONSTANT 0)``. The landmarks and targets are recorded in the
  manifest (``garment_transform.warp``), so `pipelines.tryon.warp.apply_transform` rebuilds the garment as
  placed from the normalised garment photo, pixel for pixel (same numpy/OpenCV arithmetic; the map is
  rounded by ``cv2.remap`` to 1/32 px, so last-bit float differences between machines do not move pixels
  in practice).

Two more things the rigid paste got wrong, and what is done about them here:

- `back_neck_region`: a flat lay seen from the front shows the inside of the back panel (and its label)
  through the neckline. When the mask's top edge runs across the neck (no neckline notch in the mask), a
  half ellipse below it — the neck opening's width (the top plateau of the mask), `NECK_DEPTH` of it deep —
  is taken out of the garment's alpha: it is not pasted;
- `in_front_mask`: forearms and hands (for short sleeves; hands only for long ones), the upper arms below
  the warped sleeves, and the head stay in front of the garment: bands along the pose's arm segments,
  inside the person's mask, minus the pixels that look like the worn garment (its median colour), minus the
  warped sleeves themselves.

All of this is a heuristic from a mask and 17 keypoints: the output is labelled ``preview``.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from pipelines.controls.pose import COCO17_NAMES, PoseResult
from pipelines.tryon.anchors import garment_anchors

#: The backward map is evaluated every TPS_GRID canvas pixels, bilinear in between.
TPS_GRID = 8
#: TPS regularisation (in units of the canvas's longer side squared); 0 interpolates the points exactly.
TPS_REG = 1e-4
#: The largest turn of a sleeve or trouser leg towards its limb, degrees.
MAX_TURN_DEG = 60.0
#: Depth of the hidden back-neck region, as a share of the neck opening's width.
NECK_DEPTH = 0.45
#: Keypoints below this score are treated as not found (as `pipelines.tryon.warp.MIN_SCORE`).
MIN_SCORE = 0.3
#: Arm band width over the shoulder distance (occlusion), and hand disc radius.
ARM_WIDTH = 0.26
HAND_RADIUS = 0.2
#: A pixel of an arm band whose colour is within this RGB distance of the worn garment's median is cloth.
WORN_COLOUR_DIST = 60.0


# -- thin-plate spline ------------------------------------------------------------------------------------
def _u(r2: np.ndarray) -> np.ndarray:
    """The TPS kernel r^2 log r^2 (0 at r = 0)."""
    out = np.zeros_like(r2)
    nz = r2 > 0
    out[nz] = r2[nz] * np.log(r2[nz])
    return out


def tps_fit(src: np.ndarray, dst: np.ndarray, reg: float = TPS_REG) -> np.ndarray:
    """Coefficients of the TPS mapping ``src`` points (Nx2) onto ``dst`` points (Nx2); (N+3)x2 float64."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n = len(src)
    d2 = ((src[:, None, :] - src[None, :, :]) ** 2).sum(-1)
    k = _u(d2) + reg * np.eye(n)
    p = np.hstack([np.ones((n, 1)), src])
    lhs = np.zeros((n + 3, n + 3))
    lhs[:n, :n], lhs[:n, n:], lhs[n:, :n] = k, p, p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = dst
    return np.linalg.solve(lhs, rhs)


def tps_eval(src: np.ndarray, coef: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The TPS (`tps_fit` of ``src``) at ``pts`` (Mx2); Mx2 float64."""
    src, pts = np.asarray(src, np.float64), np.asarray(pts, np.float64)
    n = len(src)
    d2 = ((pts[:, None, :] - src[None, :, :]) ** 2).sum(-1)
    return _u(d2) @ coef[:n] + np.hstack([np.ones((len(pts), 1)), pts]) @ coef[n:]


def tps_backward_map(body_pts: np.ndarray, garment_pts: np.ndarray, canvas_size: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """For every canvas pixel, the garment-photo position it samples: (map_x, map_y), HxW float32 each.

    The TPS from ``body_pts`` (canvas px) onto ``garment_pts`` (garment px), in coordinates divided by the
    canvas's longer side, evaluated on a `TPS_GRID` lattice and interpolated bilinearly.
    """
    w, h = canvas_size
    norm = float(max(w, h))
    bp = np.asarray(body_pts, np.float64) / norm
    coef = tps_fit(bp, np.asarray(garment_pts, np.float64) / norm)
    gx = np.arange(0, w + TPS_GRID, TPS_GRID, dtype=np.float64)
    gy = np.arange(0, h + TPS_GRID, TPS_GRID, dtype=np.float64)
    lattice = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    coarse = (tps_eval(bp, coef, lattice / norm) * norm).reshape(len(gy), len(gx), 2)
    # bilinear: rows, then columns (exact at the lattice points)
    ys = np.arange(h, dtype=np.float64) / TPS_GRID
    y0 = np.minimum(ys.astype(np.int64), len(gy) - 2)
    fy = (ys - y0)[:, None, None]
    rows = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy  # h x len(gx) x 2
    xs = np.arange(w, dtype=np.float64) / TPS_GRID
    x0 = np.minimum(xs.astype(np.int64), len(gx) - 2)
    fx = (xs - x0)[None, :, None]
    full = rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx
    return np.ascontiguousarray(full[..., 0], np.float32), np.ascontiguousarray(full[..., 1], np.float32)


def remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """``image`` sampled at the map (bilinear, 0 outside the photo)."""
    return cv2.remap(np.ascontiguousarray(image), map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# -- garment landmarks ------------------------------------------------------------------------------------
def _limb_end(pix: np.ndarray, root: np.ndarray) -> dict[str, list[float]] | None:
    """Far end of a limb (sleeve / trouser leg) from its pixels (Nx2 x, y) and its root (where it joins the
    body: the armhole's or the leg top's centre): centre and two corners of the cuff (hem).

    The limb's axis runs from the root to the pixels' centroid; the far end is the 6% of pixels farthest
    along it, its corners their spread across the axis.
    """
    if len(pix) < 20:
        return None
    axis = pix.mean(0) - root
    n = float(np.linalg.norm(axis))
    if n < 1e-6:
        return None
    axis /= n
    proj = (pix - root) @ axis
    perp = np.array([-axis[1], axis[0]])
    out: dict[str, list[float]] = {}
    for prefix, sel in (("", proj >= np.percentile(proj, 94)),
                        ("mid_", np.abs(proj - np.percentile(proj, 50)) <= max(1.0, 0.03 * float(np.ptp(proj))))):
        part = pix[sel]
        if not len(part):
            continue
        centre = part.mean(0)
        side = (part - centre) @ perp
        half = max(1.0, float(np.percentile(np.abs(side), 95)))
        out.update({f"{prefix}centre": [float(v) for v in centre],
                    f"{prefix}corner_a": [float(v) for v in centre + perp * half],
                    f"{prefix}corner_b": [float(v) for v in centre - perp * half]})
    return out


def garment_landmarks(alpha: np.ndarray, garment_type: str) -> dict[str, Any]:
    """Landmarks of a garment photo from its mask's geometry.

    Args:
        alpha (`np.ndarray`): HxW uint8 alpha of the garment photo (255 = garment).
        garment_type (`str`): one of `pipelines.tryon.anchors.TRYON_TYPES`.

    Returns:
        `dict`: ``points`` (name -> [x, y], garment px), ``limbs`` (``left``/``right`` -> {``pivot`` name,
        ``points``: names of the limb-end points, ``length``}), ``torso`` ([x0, x1] columns of the torso),
        ``armpit_y`` (per side), ``anchors`` (`pipelines.tryon.anchors.garment_anchors`).
    """
    g = garment_anchors(alpha, garment_type)
    hard = alpha >= 128
    x0, y0, x1, y1 = g["bbox"]
    h = y1 - y0
    tl, tr = float(g["left"][0]), float(g["right"][0])
    c = (tl + tr) / 2
    tw = tr - tl
    pts: dict[str, list[float]] = {"shoulder_left": list(map(float, g["left"])),
                                   "shoulder_right": list(map(float, g["right"]))}
    col = hard[:, int(np.clip(round(c), 0, hard.shape[1] - 1))]
    top = np.flatnonzero(col)
    if len(top):
        pts["collar"] = [c, float(top[0])]
    if garment_type != "lower":  # the shoulder seams' tops, at the torso's edges
        for side, x in (("left", tl), ("right", tr - 1)):
            colx = np.flatnonzero(hard[:, int(np.clip(round(x), 0, hard.shape[1] - 1))])
            if len(colx) and colx[0] < pts[f"shoulder_{side}"][1] - 1:
                pts[f"shoulder_top_{side}"] = [float(x), float(colx[0])]
    side_rows = {"upper": (0.4, 0.7, 0.97), "outerwear": (0.4, 0.7, 0.97), "dress": (0.35, 0.6, 0.97),
                 "lower": (0.35, 0.7, 0.97)}[garment_type]
    for i, f in enumerate(side_rows):
        y = int(min(y1 - 1, y0 + f * h))
        xs = np.flatnonzero(hard[y])
        if not len(xs):
            continue
        if garment_type == "lower" and i > 0:
            continue  # trouser legs: their hems are limb ends, the crotch is not a side
        name = "hem" if i == len(side_rows) - 1 else f"side{i}"
        pts[f"{name}_left"], pts[f"{name}_right"] = [float(xs[0]), float(y)], [float(xs[-1] + 1), float(y)]
    # interior pins: the torso keeps its shape (prints stay legible); only the limbs bend
    rows = (0.12, 0.3) if garment_type == "lower" else (0.3, 0.55, 0.8)
    for i, f in enumerate(rows):
        y = int(min(y1 - 1, y0 + f * h))
        for j, fx in enumerate((0.25, 0.5, 0.75)):
            x = int(round(tl + fx * tw))
            if 0 <= x < hard.shape[1] and hard[y, x]:
                pts[f"torso_{i}{j}"] = [float(x), float(y)]
    limbs: dict[str, Any] = {}
    zones: dict[str, list[list[float]]] = {}
    armpit_y: dict[str, float] = {}
    ys_all, xs_all = np.nonzero(hard)
    if garment_type == "lower":
        yb = int(y1 - 1 - 0.01 * h)
        row = np.flatnonzero(hard[yb])
        if len(row):
            breaks = np.flatnonzero(np.diff(row) > 1)
            if len(breaks):  # two legs
                cut = int(row[breaks[0]]) + 1
                for side, sel, piv in (("left", xs_all < cut, "shoulder_left"), ("right", xs_all >= cut,
                                                                                  "shoulder_right")):
                    low = sel & (ys_all > y0 + 0.45 * h)
                    if not low.any():
                        continue
                    top_row = low & (ys_all <= ys_all[low].min() + 2)
                    root = np.array([xs_all[top_row].mean(), ys_all[top_row].mean()])
                    end = _limb_end(np.stack([xs_all[low], ys_all[low]], 1).astype(np.float64), root)
                    if end is None:
                        continue
                    for k, v in end.items():
                        pts[f"leg_{side}_{k}"] = v
                    pts[f"leg_{side}_root"] = [float(v) for v in root]
                    zones[side] = _hull(xs_all[low], ys_all[low])
                    limbs[side] = {"pivot": f"leg_{side}_root", "points": [f"leg_{side}_{k}" for k in end],
                                   "length": float(np.linalg.norm(np.subtract(end["centre"], root)))}
                pts.pop("hem_left", None), pts.pop("hem_right", None)
    else:
        margin = 0.06 * tw
        upper = ys_all < y0 + (0.35 if garment_type == "dress" else 0.65) * h
        for side, sel in (("left", upper & (xs_all < tl - margin)), ("right", upper & (xs_all > tr + margin))):
            if sel.sum() < max(20, 0.01 * hard.sum()):
                continue
            # a sleeve sticks out: just below its lowest pixel the garment is back within the torso's
            # width (an armpit); a skirt or a flared hem keeps widening, it is no sleeve
            below = int(min(y1 - 1, ys_all[sel].max() + 1 + max(1, 0.03 * h)))
            row = np.flatnonzero(hard[below])
            if len(row) and ((side == "left" and row[0] < tl - margin) or (side == "right" and row[-1] > tr + margin)):
                continue
            piv = f"shoulder_{side}"
            # the armhole: the sleeve's pixels in its columns next to the torso
            cut = tl - margin if side == "left" else tr + margin
            hole = sel & (np.abs(xs_all - cut) <= 2)
            if not hole.any():
                continue
            root = np.array([xs_all[hole].mean(), ys_all[hole].mean()])
            end = _limb_end(np.stack([xs_all[sel], ys_all[sel]], 1).astype(np.float64), root)
            if end is None:
                continue
            for k, v in end.items():
                pts[f"sleeve_{side}_{k}"] = v
            pts[f"sleeve_{side}_root"] = [float(v) for v in root]
            zones[side] = _hull(xs_all[sel], ys_all[sel])
            # the armpit: where the armhole's lowest sleeve pixel meets the torso's side
            ay = float(ys_all[hole].max() + 1)
            pts[f"armpit_{side}"] = [tl if side == "left" else tr, ay]
            armpit_y[side] = ay
            limbs[side] = {"pivot": f"sleeve_{side}_root", "points": [f"sleeve_{side}_{k}" for k in end],
                           "length": float(np.linalg.norm(np.subtract(end["centre"], pts[piv])))}
    return {"points": pts, "limbs": limbs, "zones": zones, "torso": [tl, tr], "armpit_y": armpit_y, "anchors": g}


def _hull(xs: np.ndarray, ys: np.ndarray) -> list[list[float]]:
    """Convex hull of pixels (their outer corners), as a polygon of [x, y] (px)."""
    pts = np.stack([xs, ys], 1).astype(np.int32)
    corners = np.concatenate([pts, pts + [1, 0], pts + [0, 1], pts + [1, 1]])
    hull = cv2.convexHull(corners).reshape(-1, 2)
    return [[float(x), float(y)] for x, y in hull]


def zone_mask(zones: list[list[list[float]]], size: tuple[int, int]) -> np.ndarray:
    """HxW uint8 0/255 (``size`` = (w, h)): the limb zones (polygons in px) filled."""
    w, h = size
    out = np.zeros((h, w), np.uint8)
    for poly in zones:
        cv2.fillPoly(out, [np.round(np.asarray(poly, np.float64)).astype(np.int32)], 255)
    return out


def sleeve_mask(alpha: np.ndarray, marks: dict[str, Any]) -> np.ndarray:
    """HxW uint8 0/255: the garment's sleeves (garment px): mask pixels beside the torso above the armpits."""
    hard = alpha >= 128
    out = np.zeros(alpha.shape, np.uint8)
    tl, tr = marks["torso"]
    xs = np.arange(alpha.shape[1])[None, :]
    ys = np.arange(alpha.shape[0])[:, None]
    for side, ay in marks["armpit_y"].items():
        beside = (xs < tl) if side == "left" else (xs > tr)
        out[hard & beside & (ys <= ay)] = 255
    return out


# -- body targets -----------------------------------------------------------------------------------------
def _kp(pose: PoseResult, name: str) -> np.ndarray | None:
    k = pose.keypoints[COCO17_NAMES.index(name)]
    return k[:2].astype(np.float64) if k[2] >= MIN_SCORE else None


def _rot(v: np.ndarray, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _limb_keypoints(pose: PoseResult, at: np.ndarray, kind: str, length: float
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """(joint, next joint) of the arm (kind ``arm``: shoulder, elbow) or leg (``leg``: hip, knee) nearest
    ``at``; the next joint is the wrist (ankle) instead when the limb end is farther than the elbow (knee)
    and the wrist (ankle) is visible (a long sleeve follows the forearm's end, a trouser leg the shin)."""
    names = (("left_shoulder", "left_elbow", "left_wrist"), ("right_shoulder", "right_elbow", "right_wrist")) \
        if kind == "arm" else (("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"))
    best = None
    for a, b, c in names:
        p, q, r = _kp(pose, a), _kp(pose, b), _kp(pose, c)
        if p is None or q is None or np.linalg.norm(q - p) < 2:
            continue
        if r is not None and length > 1.1 * float(np.linalg.norm(q - p)):
            q = r
        d = float(np.linalg.norm(p - at))
        if best is None or d < best[0]:
            best = (d, p, q)
    return (best[1], best[2]) if best else None


def _aim(pivot: np.ndarray, length: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The point of the limb line a -> b (extended up to 1.5x beyond a) at ``length`` from ``pivot`` (the
    farther one), so that a limb end turned about ``pivot`` lands on the limb; when no point of it is that
    far, the point ``length`` from ``pivot`` along the limb's direction."""
    d = b - a
    dd = float(d @ d)
    f = a - pivot
    bq, cq = 2 * float(f @ d), float(f @ f) - length ** 2
    disc = bq * bq - 4 * dd * cq
    if disc >= 0:
        t = (-bq + math.sqrt(disc)) / (2 * dd)
        if 0 <= t <= 1.5:
            return a + d * t
    return pivot + d / math.sqrt(dd) * length  # out of reach: along the limb's direction


def body_targets(marks: dict[str, Any], matrix: np.ndarray, pose: PoseResult, garment_type: str
                 ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Where each landmark goes on the canvas (see the module docstring).

    Args:
        marks (`dict`): `garment_landmarks`, in the coordinates ``matrix`` maps from.
        matrix (`np.ndarray`): 2x3 similarity (the rigid placement).
        pose (`PoseResult`): the person's keypoints.
        garment_type (`str`): the garment type.

    Returns:
        `tuple`: (name -> [x, y] canvas px, per-limb record ``{"turn_deg", "followed"}``).
    """
    m = np.asarray(matrix, np.float64)
    rigid = {k: m[:, :2] @ np.asarray(v) + m[:, 2] for k, v in marks["points"].items()}
    out = dict(rigid)
    rec: dict[str, Any] = {}
    kind = "leg" if garment_type == "lower" else "arm"
    for side, limb in marks["limbs"].items():
        pivot = rigid[limb["pivot"]]
        centre_name = [p for p in limb["points"] if p.endswith("_centre") and "_mid_" not in p][0]
        now = rigid[centre_name] - pivot
        joints = _limb_keypoints(pose, pivot, kind, float(np.linalg.norm(now)))
        if joints is None:
            rec[side] = {"followed": None, "turn_deg": 0.0}
            continue
        want = _aim(pivot, float(np.linalg.norm(now)), joints[0], joints[1]) - pivot
        turn = math.atan2(want[1], want[0]) - math.atan2(now[1], now[0])
        turn = (turn + math.pi) % (2 * math.pi) - math.pi
        lim = math.radians(MAX_TURN_DEG)
        clamped = max(-lim, min(lim, turn))
        for name in limb["points"]:  # the limb bends gradually: its middle turns half as much as its end
            out[name] = pivot + _rot(rigid[name] - pivot, clamped * (0.5 if "_mid_" in name else 1.0))
        rec[side] = {"followed": f"{kind} line to {[round(float(v), 1) for v in joints[1]]}",
                     "turn_deg": round(math.degrees(clamped), 3),
                     "wanted_turn_deg": round(math.degrees(turn), 3)}
    return {k: [float(v[0]), float(v[1])] for k, v in out.items()}, rec


# -- what is hidden / in front ----------------------------------------------------------------------------
def back_neck_region(alpha: np.ndarray, garment_type: str, marks: dict[str, Any]) -> tuple[np.ndarray, dict]:
    """The inside of the back panel seen through the neckline (with its label): HxW uint8 0/255, record.

    Empty for lower garments, and when the mask already has a neckline notch (its top at the centre lies
    well below its highest row: the front neckline is the mask's edge, nothing shows through it).
    """
    out = np.zeros(alpha.shape, np.uint8)
    if garment_type == "lower" or "collar" not in marks["points"]:
        return out, {"hidden_pixels": 0, "why": "no neckline"}
    hard = alpha >= 128
    x0, y0, x1, y1 = marks["anchors"]["bbox"]
    tl, tr = marks["torso"]
    cols = np.arange(int(max(x0, tl)), int(min(x1, tr)))
    tops = np.array([np.argmax(hard[:, x]) if hard[:, x].any() else hard.shape[0] for x in cols])
    if not len(tops):
        return out, {"hidden_pixels": 0, "why": "no neckline"}
    ymin = int(tops.min())
    tol = max(2, int(0.02 * (y1 - y0)))
    plateau = cols[tops <= ymin + tol]
    nx0, nx1 = int(plateau.min()), int(plateau.max()) + 1
    neck_w = nx1 - nx0
    cx = (nx0 + nx1) / 2
    centre_top = float(marks["points"]["collar"][1])
    if neck_w < 0.15 * (tr - tl) or neck_w > 0.8 * (tr - tl):
        return out, {"hidden_pixels": 0, "why": f"no neck plateau (width {neck_w} px)"}
    depth = NECK_DEPTH * neck_w
    if centre_top > ymin + 0.5 * depth:
        return out, {"hidden_pixels": 0, "why": "the mask has a neckline notch: nothing shows through it"}
    cv2.ellipse(out, (int(round(cx)), ymin), (max(1, int(round(neck_w / 2))), max(1, int(round(depth)))), 0, 0, 180,
                255, -1)
    out[~hard] = 0
    return out, {"hidden_pixels": int((out > 0).sum()), "box": [nx0, ymin, nx1, int(round(ymin + depth))],
                 "why": "back panel through the neckline"}


def in_front_mask(person_rgb: np.ndarray, person_alpha: np.ndarray, pose: PoseResult, worn: np.ndarray,
                  placed_sleeves: np.ndarray, *, long_sleeves: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """What stays in front of the new garment: HxW uint8 0/255 and a record.

    Arms (shoulder -> elbow -> wrist bands, `ARM_WIDTH` x the shoulder distance wide; with ``long_sleeves``
    only the hands) and hands (discs at the wrists, beyond them along the forearm), and the head (a disc at
    the nose), inside the person's mask, without the pixels whose colour is the worn garment's (its
    median) and without the warped sleeves (``placed_sleeves``: the arm is inside its own sleeve).
    """
    h, w = person_alpha.shape
    out = np.zeros((h, w), np.uint8)
    ls, rs = _kp(pose, "left_shoulder"), _kp(pose, "right_shoulder")
    if ls is None or rs is None:
        return out, {"pixels": 0}
    s = float(np.linalg.norm(ls - rs))
    width = max(2, int(round(ARM_WIDTH * s)))
    parts = []

    def line(p, q, t):
        cv2.line(out, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q), 255, t)

    for side in ("left", "right"):
        sh, el, wr = (_kp(pose, f"{side}_{j}") for j in ("shoulder", "elbow", "wrist"))
        if el is not None and wr is not None:
            hand = wr + (wr - el) * 0.35
            cv2.circle(out, tuple(int(round(v)) for v in hand), max(2, int(round(HAND_RADIUS * s))), 255, -1)
            line(wr, hand, width)
            parts.append(f"{side} hand")
            if not long_sleeves:
                line(el, wr, width)
                if sh is not None:
                    line(sh, el, width)
                parts.append(f"{side} arm")
    nose = _kp(pose, "nose")
    if nose is not None:
        cv2.circle(out, tuple(int(round(v)) for v in nose), max(2, int(round(0.3 * s))), 255, -1)
        parts.append("head")
    front = (out > 0) & (person_alpha >= 128) & (placed_sleeves < 128)
    worn_px = person_rgb[worn > 0]
    if len(worn_px) >= 20:
        med = np.median(worn_px.reshape(-1, 3), axis=0)
        dist = np.sqrt(((person_rgb.astype(np.float32) - med.astype(np.float32)) ** 2).sum(-1))
        front &= dist > WORN_COLOUR_DIST
    # only what is connected to the limbs' and the head's keypoints (a hand disc may reach past the arm)
    seeds = np.zeros((h, w), np.uint8)
    for name in ("nose", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_shoulder",
                 "right_shoulder"):
        p = _kp(pose, name)
        if p is not None:
            cv2.circle(seeds, tuple(int(round(v)) for v in p), max(1, width // 3), 255, -1)
    _, labels = cv2.connectedComponents(front.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[(seeds > 0) & front])
    front &= np.isin(labels, keep[keep > 0])
    mask = np.where(front, 255, 0).astype(np.uint8)
    return mask, {"pixels": int(front.sum()), "parts": parts, "arm_width_px": width}


def body_mask(pose: PoseResult, size: tuple[int, int]) -> np.ndarray | None:
    """HxW uint8 0/255: where bare skin is the plausible fill of old clothes the new garment leaves
    uncovered: the arms (bands along the keypoints), from the keypoints; `None` without shoulders. (Under
    the neck or at the torso's sides, the inpainting from the surroundings is used instead.)"""
    w, h = size
    ls, rs = _kp(pose, "left_shoulder"), _kp(pose, "right_shoulder")
    if ls is None or rs is None:
        return None
    s = float(np.linalg.norm(ls - rs))
    out = np.zeros((h, w), np.uint8)
    t = max(2, int(round(ARM_WIDTH * s)))

    def line(p, q, th):
        if p is not None and q is not None:
            cv2.line(out, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q), 255, th)

    for side in ("left", "right"):
        sh, el, wr = (_kp(pose, f"{side}_{j}") for j in ("shoulder", "elbow", "wrist"))
        line(sh, el, t)
        line(el, wr, t)
    return out


def skin_colour(person_rgb: np.ndarray, person_alpha: np.ndarray, pose: PoseResult, worn: np.ndarray
                ) -> np.ndarray | None:
    """Median colour of the person's visible skin (around the nose and the wrists, not worn), or `None`."""
    h, w = person_alpha.shape
    ls, rs = _kp(pose, "left_shoulder"), _kp(pose, "right_shoulder")
    if ls is None or rs is None:
        return None
    s = float(np.linalg.norm(ls - rs))
    probe = np.zeros((h, w), np.uint8)
    for name, r in (("nose", 0.12), ("left_wrist", 0.08), ("right_wrist", 0.08)):
        p = _kp(pose, name)
        if p is not None:
            cv2.circle(probe, tuple(int(round(v)) for v in p), max(1, int(round(r * s))), 255, -1)
    sel = (probe > 0) & (person_alpha >= 128) & (worn == 0)
    if sel.sum() < 10:
        return None
    return np.median(person_rgb[sel], axis=0).astype(np.uint8)

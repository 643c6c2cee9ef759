"""Pose-guided geometric placement of a garment photo on a person: anchors, a similarity transform, the warp.

The garment photo (a flat lay or ghost-mannequin shot on a plain background) has two *anchors* found from
its mask: the ends of its shoulder line (tops, outerwear, dresses) or of its waistband (lower garments),
spaced by the garment's torso (or waist) width. The person's pose gives the matching two points on the
body: the shoulder keypoints (or the hip keypoints) spread to the body's width. The similarity transform
(scale, rotation, translation; no shear, so prints keep their proportions) that maps the garment anchors
onto the body anchors places the garment: it follows the body's position, size and tilt.

The transform is recorded (`GarmentTransform.to_json`) so that the garment as placed can be rebuilt from
the normalised garment photo and compared with an output from outside (`apply_transform`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipelines.controls.pose import COCO17_NAMES, PoseResult
from pipelines.errors import InputError
from pipelines.tryon.anchors import garment_anchors
from pipelines.tryon.bodywarp import TPS_GRID, TPS_REG, body_targets, garment_landmarks, remap, tps_backward_map, zone_mask

#: Body width at the anchors over the keypoint distance (shoulder or hip joints lie inside the body).
BODY_WIDTH = {"upper": 1.25, "outerwear": 1.32, "dress": 1.2, "lower": 1.85}
#: Keypoints below this score are treated as not found.
MIN_SCORE = 0.3
#: Torso length over shoulder width, to extrapolate hips that are out of frame.
TORSO_RATIO = 1.4
#: Garments shrunk below this scale are first downscaled with area averaging (no aliasing).
PRESCALE_BELOW = 0.75


@dataclass(frozen=True)
class GarmentTransform:
    """How the garment photo becomes the garment as placed on the output canvas.

    Step 1: when ``prescale_size`` differs from the photo's size, resize the photo to it with OpenCV's
    ``INTER_AREA``. Step 2: ``cv2.warpAffine(image, matrix, canvas_size, flags=INTER_LINEAR,
    borderMode=BORDER_CONSTANT, borderValue=0)``. A point (x, y) of the (prescaled) photo lands at
    ``matrix @ (x, y, 1)``.

    Attributes:
        matrix (`tuple`): 2x3 affine matrix (a similarity: scale, rotation, translation), floats.
        canvas_size (`tuple[int, int]`): (width, height) of the output (the person photo's size).
        source_size (`tuple[int, int]`): (width, height) of the normalised garment photo.
        prescale_size (`tuple[int, int]`): (width, height) the photo is resized to first.
        scale (`float`): the garment's overall scale (output px per photo px).
        angle_deg (`float`): its rotation in degrees (counter-clockwise positive in image coordinates).
        anchors (`dict`): the garment and body anchor points and how they were found.
        warp (`dict`, *optional*): the body warp (`pipelines.tryon.bodywarp`), replacing step 2 when set:
            ``{"kind": "thin-plate-spline", "control_points": [{"name", "garment": [x, y] (prescaled photo
            px), "body": [x, y] (canvas px)}], ...}``; the canvas is sampled at the TPS from body to garment
            points (`pipelines.tryon.bodywarp.tps_backward_map`) with ``cv2.remap`` (bilinear, 0 outside).
            `None`: the rigid similarity ``matrix``.
    """

    matrix: tuple[tuple[float, float, float], tuple[float, float, float]]
    canvas_size: tuple[int, int]
    source_size: tuple[int, int]
    prescale_size: tuple[int, int]
    scale: float
    angle_deg: float
    anchors: dict[str, Any]
    warp: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = {
            "matrix": [list(r) for r in self.matrix], "canvas_size": list(self.canvas_size),
            "source_size": list(self.source_size), "prescale_size": list(self.prescale_size),
            "scale": self.scale, "angle_deg": self.angle_deg, "anchors": self.anchors,
            "interpolation": "linear", "prescale_interpolation": "area", "library": "cv2.warpAffine",
        }
        if self.warp is not None:
            d["warp"] = self.warp
            d["library"] = "cv2.remap (thin-plate spline)"
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GarmentTransform:
        try:
            return cls(matrix=tuple(tuple(float(v) for v in r) for r in d["matrix"]),  # type: ignore[arg-type]
                       canvas_size=tuple(d["canvas_size"]), source_size=tuple(d["source_size"]),
                       prescale_size=tuple(d["prescale_size"]), scale=float(d["scale"]),
                       angle_deg=float(d["angle_deg"]), anchors=dict(d.get("anchors") or {}),
                       warp=_check_warp(d.get("warp")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad garment transform: {exc}", key="garment_transform") from None


def _check_warp(w: Any) -> dict[str, Any] | None:
    """A recorded body warp, checked: `None`, or a dict with >= 3 control points of 2 numbers each."""
    if w is None:
        return None
    if not isinstance(w, dict) or w.get("kind") != "thin-plate-spline":
        raise ValueError("warp must be a thin-plate-spline record")
    cps = w["control_points"]
    if len(cps) < 3:
        raise ValueError("a thin-plate spline needs at least 3 control points")
    for cp in cps:
        if len(cp["garment"]) != 2 or len(cp["body"]) != 2:
            raise ValueError(f"control point {cp.get('name')!r} needs 2 garment and 2 body coordinates")
        [float(v) for v in (*cp["garment"], *cp["body"])]
    for poly in (w.get("zones") or {}).values():
        if len(poly) < 3 or any(len(p) != 2 for p in poly):
            raise ValueError("a warp zone must be a polygon of at least 3 [x, y] points")
    return w


def apply_transform(image: np.ndarray, transform: GarmentTransform, *, alpha: np.ndarray | None = None
                    ) -> np.ndarray:
    """Place a garment photo (or its alpha) on the canvas with ``transform``.

    With a body warp (``transform.warp``) the garment is placed in two layers: everything but the limb
    zones by the similarity, then the limb zones (sleeves, trouser legs) through the thin-plate spline over
    it, wherever the bent garment is present (its alpha > 0): so the garment's alpha is needed.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB or HxW uint8 alpha, at ``transform.source_size``.
        transform (`GarmentTransform`): the recorded transform.
        alpha (`np.ndarray`, *optional*): HxW uint8 alpha of the garment photo; required for an RGB image
            with a body warp; an HxW ``image`` is its own alpha by default.

    Returns:
        `np.ndarray`: canvas-sized (``transform.canvas_size``) uint8 array of the same kind; 0 where the
        garment does not reach.
    """
    h, w = image.shape[:2]
    if (w, h) != tuple(transform.source_size):
        raise InputError(f"the garment image is {w}x{h}, the transform expects "
                         f"{transform.source_size[0]}x{transform.source_size[1]}", key="garment_transform")
    if transform.warp is not None and transform.warp.get("zones"):
        if alpha is None and image.ndim == 2:
            alpha = image
        if alpha is None or alpha.shape != (h, w):
            raise InputError("this garment transform bends the sleeves or legs: the garment's alpha "
                             f"({w}x{h}) is needed to place it", key="garment_transform")
    src = image
    if tuple(transform.prescale_size) != (w, h):
        src = cv2.resize(image, tuple(transform.prescale_size), interpolation=cv2.INTER_AREA)
        if alpha is not None:
            alpha = cv2.resize(alpha, tuple(transform.prescale_size), interpolation=cv2.INTER_AREA)
    m = np.asarray(transform.matrix, dtype=np.float64)
    out = cv2.warpAffine(np.ascontiguousarray(src), m, tuple(transform.canvas_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if transform.warp is not None and transform.warp.get("zones"):
        # the limbs (sleeves, trouser legs) bent by the spline over the rigidly placed rest

        cps = transform.warp["control_points"]
        zones = zone_mask(list(transform.warp.get("zones", {}).values()), (src.shape[1], src.shape[0]))
        rigid_zone = cv2.warpAffine(zones, m, tuple(transform.canvas_size), flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[rigid_zone > 0] = 0
        mx, my = tps_backward_map(np.array([c["body"] for c in cps], np.float64),
                                  np.array([c["garment"] for c in cps], np.float64), tuple(transform.canvas_size))
        # the bent zone reaches 2 px past the limb's polygon so that it overlaps the rigid rest at the seam;
        # only where the bent garment is present (alpha > 0) does it win
        grown = cv2.dilate(zones, np.ones((5, 5), np.uint8))
        bent_zone = (cv2.remap(grown, mx, my, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0) > 0) & (remap(alpha, mx, my) > 0)
        out[bent_zone] = remap(src, mx, my)[bent_zone]
    return out


def keypoint(pose: PoseResult, name: str) -> np.ndarray | None:
    """The (x, y) pixel position of a COCO-17 keypoint, or `None` when its score is below `MIN_SCORE`."""

    k = pose.keypoints[COCO17_NAMES.index(name)]
    return k[:2].astype(np.float64) if k[2] >= MIN_SCORE else None


_kp = keypoint


def shoulder_frame(pose: PoseResult) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray] | None:
    """The body's frame from the shoulders: (image-left shoulder, image-right shoulder, their distance,
    unit vector along the shoulder line, unit vector down the body perpendicular to it), or `None`
    when a shoulder is not visible or they coincide."""
    ls, rs = keypoint(pose, "left_shoulder"), keypoint(pose, "right_shoulder")
    if ls is None or rs is None:
        return None
    a, b = sorted([ls, rs], key=lambda p: p[0])
    s = float(np.linalg.norm(b - a))
    if s < 2:
        return None
    u = (b - a) / s
    n = np.array([-u[1], u[0]])
    if n[1] < 0:
        n = -n  # the body's "down", perpendicular to the shoulder line
    return a, b, s, u, n


def body_anchors(pose: PoseResult, garment_type: str) -> dict[str, Any] | None:
    """The two body points the garment's anchors go to, from a pose; `None` without visible shoulders.

    Tops, outerwear and dresses: the shoulder keypoints, spread about their midpoint to the body's width
    (`BODY_WIDTH` x their distance). Lower garments: the hip keypoints (extrapolated from the shoulders
    when out of frame: `TORSO_RATIO` shoulder widths down the body axis), spread likewise and raised to
    the waist.

    Returns:
        `dict`: ``left``, ``right`` ([x, y], image left/right), ``how`` (which keypoints), or `None`.
    """
    frame = shoulder_frame(pose)
    if frame is None:
        return None
    a, b, s, u, n = frame
    how = "shoulders"
    if garment_type == "lower":
        lh, rh = _kp(pose, "left_hip"), _kp(pose, "right_hip")
        if lh is not None and rh is not None:
            a, b = sorted([lh, rh], key=lambda p: p[0])
            how = "hips"
        else:
            mid = (a + b) / 2 + n * TORSO_RATIO * s
            a, b = mid - u * s * 0.45, mid + u * s * 0.45
            how = "hips extrapolated from the shoulders"
        mid = (a + b) / 2 - n * 0.12 * s
    else:
        mid = (a + b) / 2
    half = float(np.linalg.norm(b - a)) * BODY_WIDTH[garment_type] / 2
    d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    return {"left": list(mid - d * half), "right": list(mid + d * half), "how": how}


def similarity(src: tuple, dst: tuple) -> tuple[np.ndarray, float, float]:
    """The 2x3 similarity matrix mapping two points ``src`` onto two points ``dst``; (matrix, scale, angle°)."""
    (p0, p1), (q0, q1) = (np.asarray(v, np.float64) for v in src), (np.asarray(v, np.float64) for v in dst)
    vs, vd = p1 - p0, q1 - q0
    ls, ld = float(np.linalg.norm(vs)), float(np.linalg.norm(vd))
    if ls < 1e-6 or ld < 1e-6:
        raise InputError("degenerate anchors: the two points coincide", key="pose")
    s = ld / ls
    ang = math.atan2(vd[1], vd[0]) - math.atan2(vs[1], vs[0])
    c, si = s * math.cos(ang), s * math.sin(ang)
    r = np.array([[c, -si], [si, c]])
    t = (q0 + q1) / 2 - r @ ((p0 + p1) / 2)
    return np.hstack([r, t[:, None]]), s, math.degrees(ang)


def place_garment(
    garment_alpha: np.ndarray,
    canvas_size: tuple[int, int],
    garment_type: str,
    *,
    pose: PoseResult | None = None,
    worn_mask: np.ndarray | None = None,
    body_warp: bool = False,
) -> GarmentTransform:
    """Compute where a garment photo goes on a person photo.

    Args:
        garment_alpha (`np.ndarray`): HxW uint8 alpha of the garment photo.
        canvas_size (`tuple[int, int]`): (width, height) of the person photo (the output).
        garment_type (`str`): one of `TRYON_TYPES`.
        pose (`PoseResult`, *optional*): the person's pose, in person-photo pixels.
        worn_mask (`np.ndarray`, *optional*): HxW uint8 mask of what the person wears now; used when the
            pose has no visible shoulders (the garment is fitted to the mask's box instead).
        body_warp (`bool`, *optional*, defaults to `False`): bend the similarity by the body
            (`pipelines.tryon.bodywarp`: a thin-plate spline from garment landmarks to the pose); only with
            a pose whose shoulders are visible (else the rigid placement, ``warp`` stays `None`).

    Returns:
        `GarmentTransform`.

    Raises:
        `InputError`: no visible shoulders and no usable worn mask; an empty garment mask.
    """
    g = garment_anchors(garment_alpha, garment_type)
    body = body_anchors(pose, garment_type) if pose is not None else None
    if body is not None:
        m, s, ang = similarity((g["left"], g["right"]), (body["left"], body["right"]))
        how = f"pose: {body['how']}"
    elif worn_mask is not None and (worn_mask >= 128).any():
        ys, xs = np.nonzero(worn_mask >= 128)
        wx0, wy0, wx1 = float(xs.min()), float(ys.min()), float(xs.max()) + 1
        gx0, gy0, gx1, _ = g["bbox"]
        s = (wx1 - wx0) / max(1.0, gx1 - gx0)
        m = np.array([[s, 0.0, (wx0 + wx1) / 2 - s * (gx0 + gx1) / 2], [0.0, s, wy0 - s * gy0]])
        ang, how = 0.0, "worn-mask box (no visible shoulders)"
        body = {"left": [wx0, wy0], "right": [wx1, wy0]}
    else:
        raise InputError("cannot place the garment: no shoulders are visible in the person photo and no mask of "
                         "what the person wears was found (add masks/person.garment.png)", key="pose")
    gh, gw = garment_alpha.shape
    pw, ph = gw, gh
    if s < PRESCALE_BELOW:
        pw, ph = max(1, int(round(gw * s))), max(1, int(round(gh * s)))
        m = m @ np.array([[gw / pw, 0.0, 0.0], [0.0, gh / ph, 0.0], [0.0, 0.0, 1.0]])
    warp = None
    if body_warp and pose is not None and how.startswith("pose"):
        try:
            warp = _body_warp(garment_alpha, garment_type, m, pose, (gw / pw, gh / ph))
        except (np.linalg.LinAlgError, ValueError, IndexError) as exc:  # odd geometry: the rigid placement
            how += f" (body warp not possible: {type(exc).__name__}: {exc})"
    matrix = tuple(tuple(float(v) for v in row) for row in m)
    anchors = {"garment": {k: g[k] for k in ("left", "right", "width", "bbox")},
               "body": {"left": [float(v) for v in body["left"]], "right": [float(v) for v in body["right"]]},
               "how": how, "garment_type": garment_type}
    return GarmentTransform(matrix=matrix, canvas_size=(int(canvas_size[0]), int(canvas_size[1])),  # type: ignore[arg-type]
                            source_size=(gw, gh), prescale_size=(pw, ph), scale=round(float(s), 6),
                            angle_deg=round(float(ang), 4), anchors=anchors, warp=warp)


def _body_warp(garment_alpha: np.ndarray, garment_type: str, m: np.ndarray, pose: PoseResult,
               prescale: tuple[float, float]) -> dict[str, Any]:
    """The TPS record of `GarmentTransform.warp`: landmarks (in prescaled photo px) and their body targets.

    ``m`` maps prescaled photo px to the canvas; ``prescale`` is (full-size px per prescaled px) per axis.
    """

    marks = garment_landmarks(garment_alpha, garment_type)
    fx, fy = prescale
    scaled = {**marks, "points": {k: [v[0] / fx, v[1] / fy] for k, v in marks["points"].items()}}
    targets, limbs = body_targets(scaled, m, pose, garment_type)
    cps = [{"name": k, "garment": [round(float(v[0]), 4), round(float(v[1]), 4)],
            "body": [round(float(targets[k][0]), 4), round(float(targets[k][1]), 4)]}
           for k, v in scaled["points"].items()]
    zones = {side: [[round(x / fx, 3), round(y / fy, 3)] for x, y in poly] for side, poly in marks["zones"].items()}
    return {"kind": "thin-plate-spline", "control_points": cps, "zones": zones, "limbs": limbs,
            "layers": "the garment by the similarity `matrix` without its limb zones, then the limb zones "
                      "(polygons, prescaled photo px) through the spline over it",
            "grid_px": TPS_GRID,
            "regularization": TPS_REG, "direction": "backward: body (canvas px) -> garment (prescaled px)",
            "coordinates": "divided by the canvas's longer side", "interpolation": "linear",
            "library": "numpy (solve) + cv2.remap"}

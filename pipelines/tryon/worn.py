"""What a person wears now: the mask of the clothes a try-on replaces.

Three sources, best first:

1. an analyst's mask (``masks/person.garment.png`` or ``product.yaml`` ``masks: {garment: ...}``; white =
   include, black = exclude, grey = keep the automatic mask), applied over 2. or 3.;
2. text-prompted segmentation (grounded-sam: GroundingDINO + SAM, the segmentation issue) with the
   garment type's preset (``upper`` → shirt, t-shirt, top...), when the engine has it;
3. the classic fallback (no weights): the body region the garment type covers, drawn from the pose
   keypoints (torso and upper arms for tops, torso to the knees for dresses, hips to ankles for lower
   garments; the face left out), intersected with the person's mask.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from pipelines.controls.pose import PoseResult
from pipelines.errors import InputError
from pipelines.tryon.anchors import TRYON_TYPES
from pipelines.tryon.warp import TORSO_RATIO, keypoint, shoulder_frame

logger = logging.getLogger(__name__)


_pt = keypoint


def pose_region_mask(pose: PoseResult, size: tuple[int, int], garment_type: str) -> np.ndarray | None:
    """The body region a garment type covers, drawn from pose keypoints.

    Args:
        pose (`PoseResult`): keypoints in pixels of an image of ``size``.
        size (`tuple[int, int]`): (width, height) of the mask.
        garment_type (`str`): one of ``upper``, ``outerwear``, ``dress``, ``lower``.

    Returns:
        `np.ndarray`: HxW uint8 0/255, or `None` when the shoulders are not visible.
    """
    if garment_type not in TRYON_TYPES:
        raise InputError(f"garment type {garment_type!r} cannot be tried on; expected one of "
                         f"{', '.join(TRYON_TYPES)}", key="garment_type")
    w, h = size
    frame = shoulder_frame(pose)
    if frame is None:
        return None
    a, b, s, u, n = frame

    def pair(names: tuple[str, str], fallback_mid: np.ndarray, half: float):
        p, q = _pt(pose, names[0]), _pt(pose, names[1])
        if p is not None and q is not None:
            return sorted([p, q], key=lambda v: v[0])
        return [fallback_mid - u * half, fallback_mid + u * half]

    mid_sh = (a + b) / 2
    hips = pair(("left_hip", "right_hip"), mid_sh + n * TORSO_RATIO * s, 0.45 * s)
    mid_hip = (hips[0] + hips[1]) / 2
    leg = max(1.0, float(np.linalg.norm(mid_hip - mid_sh))) * 0.85
    knees = pair(("left_knee", "right_knee"), mid_hip + n * leg, 0.45 * s)
    ankles = pair(("left_ankle", "right_ankle"), (knees[0] + knees[1]) / 2 + n * leg, 0.45 * s)
    mask = np.zeros((h, w), np.uint8)
    thick = max(2, int(round(0.38 * s)))

    def poly(points):
        cv2.fillPoly(mask, [np.round(np.asarray(points)).astype(np.int32)], 255)

    def limb(p, q, t=thick):
        if p is not None and q is not None:
            cv2.line(mask, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q), 255, t)

    if garment_type in ("upper", "outerwear", "dress"):
        top_l, top_r = a - u * 0.18 * s - n * 0.12 * s, b + u * 0.18 * s - n * 0.12 * s
        hem = 0.15 if garment_type == "upper" else 0.45
        bot_l = hips[0] - u * 0.45 * s + n * hem * s
        bot_r = hips[1] + u * 0.45 * s + n * hem * s
        poly([top_l, top_r, bot_r, bot_l])
        for side, (sh, el, wr) in {"l": ("left_shoulder", "left_elbow", "left_wrist"),
                                   "r": ("right_shoulder", "right_elbow", "right_wrist")}.items():
            p, e = _pt(pose, sh), _pt(pose, el)
            if p is None or e is None:
                continue
            if garment_type == "outerwear":
                limb(p, e)
                limb(e, _pt(pose, wr), max(2, int(thick * 0.8)))
            else:
                limb(p, p + (e - p) * 0.55)  # short sleeves
        if garment_type == "dress":
            skirt_l = knees[0] - u * 0.35 * s
            skirt_r = knees[1] + u * 0.35 * s
            poly([hips[0] - u * 0.45 * s, hips[1] + u * 0.45 * s, skirt_r + n * 0.1 * s, skirt_l + n * 0.1 * s])
    else:  # lower
        waist_l, waist_r = hips[0] - u * 0.5 * s - n * 0.15 * s, hips[1] + u * 0.5 * s - n * 0.15 * s
        poly([waist_l, waist_r, hips[1] + n * 0.3 * s, hips[0] + n * 0.3 * s])
        for side in (0, 1):
            limb(hips[side], knees[side], max(2, int(round(0.5 * s))))
            limb(knees[side], ankles[side], max(2, int(round(0.42 * s))))
    # the head is never clothing
    nose = _pt(pose, "nose")
    if nose is not None and garment_type != "lower":
        cv2.circle(mask, tuple(int(round(v)) for v in nose), max(2, int(round(0.42 * s))), 0, -1)
    return mask


def worn_garment_mask(
    person_rgb: np.ndarray,
    person_alpha: np.ndarray,
    garment_type: str,
    *,
    pose: PoseResult | None = None,
    segmenter: Any = None,
    override: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The mask of what a person wears now (the clothes a try-on of ``garment_type`` replaces).

    Args:
        person_rgb (`np.ndarray`): HxWx3 uint8 RGB person photo.
        person_alpha (`np.ndarray`): HxW uint8 alpha of the person (255 = person).
        garment_type (`str`): ``upper``, ``outerwear``, ``dress`` or ``lower``.
        pose (`PoseResult`, *optional*): the person's keypoints (for the classic fallback).
        segmenter (*optional*): a callable ``segmenter(rgb, garment_type) -> HxW uint8 mask`` (e.g.
            grounded-sam with the garment preset); its mask wins over the pose region when non-empty.
        override (`np.ndarray`, *optional*): HxW uint8 analyst mask: >= 224 include, <= 31 exclude,
            grey = keep the automatic mask.

    Returns:
        `tuple`: (HxW uint8 0/255 mask, record ``{"source", "pixels"}``).

    Raises:
        `InputError`: nothing is found (no segmenter mask, no visible shoulders, no override).
    """
    h, w = person_alpha.shape
    person = person_alpha >= 128
    mask, source = None, None
    if segmenter is not None:
        seg = segmenter(person_rgb, garment_type)
        if seg is not None and (seg >= 128).any():
            mask, source = np.where((seg >= 128) & person, 255, 0).astype(np.uint8), "segmenter"
    extended = 0
    if mask is None and pose is not None:
        region = pose_region_mask(pose, (w, h), garment_type)
        if region is not None:
            mask, source = np.where((region > 0) & person, 255, 0).astype(np.uint8), "pose-region"
            mask, extended = extend_by_colour(person_rgb, person_alpha, mask, pose, garment_type)
    if mask is None:
        mask, source = np.zeros((h, w), np.uint8), "none"
    if override is not None:
        if override.shape != (h, w):
            raise InputError(f"the worn-garment mask override is {override.shape[1]}x{override.shape[0]}, the "
                             f"person photo {w}x{h}", key="masks.garment")
        mask = mask.copy()
        mask[override >= 224] = 255
        mask[override <= 31] = 0
        source += "+override"
    if not (mask > 0).any():
        raise InputError("found nothing the person wears: no visible shoulders and no garment mask; add "
                         "masks/person.garment.png (white where the clothes to replace are)", key="person")
    rec = {"source": source, "pixels": int((mask > 0).sum()), "garment_type": garment_type}
    if extended:
        rec["colour_extended_pixels"] = extended
    return mask, rec


#: A person pixel within this RGB distance of the worn clothes' median colour is the same cloth.
SAME_CLOTH_DIST = 60.0


def extend_by_colour(person_rgb: np.ndarray, person_alpha: np.ndarray, mask: np.ndarray, pose: PoseResult,
                     garment_type: str) -> tuple[np.ndarray, int]:
    """Grow a pose-region worn mask over the rest of the same cloth (the person's own sleeves beyond the
    drawn region, a longer hem): person pixels within `SAME_CLOTH_DIST` of the mask's median colour,
    connected to the mask, inside the body region of the garment type's longer cousin (whole arms for
    tops, knees-to-ankles for lower garments) grown by 10% of the shoulder width. Nothing is added when
    the cloth's colour is the skin's (it would take the arms).

    Returns:
        `tuple`: (HxW uint8 0/255 mask, pixels added).
    """
    from pipelines.tryon.bodywarp import skin_colour

    sel = mask > 0
    if sel.sum() < 20:
        return mask, 0
    h, w = mask.shape
    frame = shoulder_frame(pose)
    reach_type = {"upper": "outerwear", "outerwear": "outerwear", "dress": "dress", "lower": "lower"}[garment_type]
    reach = pose_region_mask(pose, (w, h), reach_type)
    if reach is None or frame is None:
        return mask, 0
    grow = max(1, int(round(0.1 * frame[2])))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    reach = cv2.dilate(reach, k) > 0
    med = np.median(person_rgb[sel], axis=0).astype(np.float32)
    skin = skin_colour(person_rgb, person_alpha, pose, mask)
    if skin is not None and float(np.linalg.norm(skin.astype(np.float32) - med)) < SAME_CLOTH_DIST:
        return mask, 0
    dist = np.sqrt(((person_rgb.astype(np.float32) - med) ** 2).sum(-1))
    cand = (sel | ((dist < SAME_CLOTH_DIST) & reach)) & (person_alpha >= 128)
    _, labels = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[sel & cand])
    grown = np.isin(labels, keep[keep > 0]) | sel
    return np.where(grown, 255, 0).astype(np.uint8), int((grown & ~sel).sum())

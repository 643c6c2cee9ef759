"""A drawn person with arms (one hanging, one forearm across the belly) in a short-sleeve shirt, and a flat
tee whose back panel and label show through its neckline: the cases the body warp must handle."""

from __future__ import annotations

import cv2
import numpy as np

SKIN = (222, 178, 146)
SHIRT = (40, 160, 60)
LABEL = (252, 252, 252)


def person_with_arms(w: int = 240, h: int = 320, seed: int = 0):
    """Returns (rgb, alpha, PoseResult, worn shirt mask, forearm-in-front mask), all exact.

    The image-left arm hangs down and out; the image-right forearm crosses the belly in front of the shirt.
    The shirt has sleeves to mid upper arm and reaches below the hips.
    """
    from pipelines.controls.pose import COCO17_NAMES, PoseResult

    rng = np.random.default_rng(seed)
    img = rng.normal(110, 20, (h, w, 3)).clip(0, 255).astype(np.uint8)
    cx = w // 2
    sy, hy = int(0.3 * h), int(0.62 * h)
    half = int(0.17 * w)
    kp = {
        "nose": (cx, 0.17 * h), "left_eye": (cx + 7, 0.15 * h), "right_eye": (cx - 7, 0.15 * h),
        "left_ear": (cx + 14, 0.16 * h), "right_ear": (cx - 14, 0.16 * h),
        # image-left is the person's right
        "right_shoulder": (cx - half, sy), "right_elbow": (cx - half - 22, sy + 62), "right_wrist": (cx - half - 30, sy + 120),
        "left_shoulder": (cx + half, sy), "left_elbow": (cx + half + 14, sy + 62), "left_wrist": (cx + 4, sy + 92),
        "right_hip": (cx - half * 0.6, hy), "left_hip": (cx + half * 0.6, hy),
        "right_knee": (cx - half * 0.6, 0.8 * h), "left_knee": (cx + half * 0.6, 0.8 * h),
        "right_ankle": (cx - half * 0.6, 0.97 * h), "left_ankle": (cx + half * 0.6, 0.97 * h),
    }
    p = {k: (int(round(v[0])), int(round(v[1]))) for k, v in kp.items()}
    arm = max(6, int(0.22 * 2 * half))
    alpha = np.zeros((h, w), np.uint8)
    cv2.circle(alpha, p["nose"], int(0.09 * h), 255, -1)
    cv2.rectangle(alpha, (cx - 9, int(0.2 * h)), (cx + 9, sy), 255, -1)  # neck
    torso = np.zeros((h, w), np.uint8)
    cv2.fillPoly(torso, [np.array([(cx - half - 4, sy - 4), (cx + half + 4, sy - 4), (cx + half, hy + 12),
                                   (cx - half, hy + 12)], np.int32)], 255)
    alpha |= torso
    cv2.rectangle(alpha, (cx - half + 2, hy), (cx + half - 2, h - 1), 255, -1)  # legs
    arms = np.zeros((h, w), np.uint8)
    for a, b in (("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_elbow")):
        cv2.line(arms, p[a], p[b], 255, arm)
    forearm = np.zeros((h, w), np.uint8)
    cv2.line(forearm, p["left_elbow"], p["left_wrist"], 255, arm)
    cv2.circle(forearm, p["left_wrist"], arm // 2 + 2, 255, -1)
    alpha |= arms | forearm
    img[alpha > 0] = SKIN
    shirt = torso.copy()
    for side in ("right", "left"):  # sleeves to mid upper arm
        s, e = np.array(p[f"{side}_shoulder"]), np.array(p[f"{side}_elbow"])
        cv2.line(shirt, p[f"{side}_shoulder"], tuple(int(v) for v in s + (e - s) * 0.5), 255, arm + 4)
    shirt[forearm > 0] = 0  # the forearm is in front of the shirt
    shirt &= alpha
    img[shirt > 0] = SHIRT
    keypoints = np.array([[*kp[n], 1.0] for n in COCO17_NAMES], np.float32)
    return img, alpha, PoseResult(width=w, height=h, keypoints=keypoints), shirt, forearm


def tee_with_label(size: int = 320):
    """A flat navy tee on white whose top edge runs straight across the neck (the back panel shows inside
    the neckline) with a white label there. Returns (rgb, alpha, label mask)."""
    s = size / 1024
    pts = np.array([[372, 170], [450, 150], [574, 150], [652, 170], [850, 300], [780, 430], [700, 380],
                    [700, 860], [324, 860], [324, 380], [244, 430], [174, 300]], np.float32) * s
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    rng = np.random.default_rng(3)
    img = np.full((size, size, 3), 246, np.uint8)
    navy = np.clip(np.array([28, 44, 92]) + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)
    img[mask > 0] = navy[mask > 0]
    label = np.zeros((size, size), np.uint8)
    cv2.rectangle(label, (int(490 * s), int(158 * s)), (int(534 * s), int(182 * s)), 255, -1)
    img[label > 0] = LABEL
    cv2.ellipse(img, (int(512 * s), int(150 * s)), (int(62 * s), int(62 * s)), 0, 20, 160, (60, 70, 110),
                max(2, int(10 * s)))  # the front neckline rib
    cv2.putText(img, "VITRINE", (int(380 * s), int(520 * s)), cv2.FONT_HERSHEY_DUPLEX, 1.9 * s, (236, 196, 64),
                max(1, int(4 * s)))
    return img, mask, label

"""Subject routing for the classic engine: is there a person in the photo, or only a product?

Decided from evidence of a person, not from how plain the backdrop is (an on-model photo on a white
sweep is as plain as a flat lay):

- **face**: mediapipe face detection (short- and full-range models from the 0.10.14 wheel), best score;
- **pose keypoints**: mediapipe pose; the head keypoints (nose, eyes, ears) and limb keypoints (elbows,
  wrists, knees, ankles) that are confident *and* lie on the subject — on a plain backdrop the pose model
  happily "finds" a head in the empty backdrop above a T-shirt, but a real head is not backdrop;
- **person-mask coverage**: the share of the frame the pose model's person mask covers, and the share of
  that mask lying on the backdrop model's foreground.

A person is in frame when a confident face (>= ``FACE_SCORE``) lies on the subject, or at least
``LIMB_KEYPOINTS`` confident limb keypoints do, or at least ``HEAD_KEYPOINTS`` confident head keypoints
do with some support (2 limb keypoints or a face scoring 0.5): the pose model puts a confident "head" on
the collar of a flat-lay T-shirt, but finds no arms or legs there and the face detector no face.
Measured on 50 real shop garments + 6 PF-AFN garments (all product) and 12 on-model / 9 street photos
(all person): see ``docs/quality.md``.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipelines.controls.pose import PoseResult, get_pose_estimator, resize_for_inference
from pipelines.native_logs import quiet_native_stderr

logger = logging.getLogger(__name__)

#: The photo is analysed at most at this longer side (the mediapipe models run at 128-256 px inside).
ROUTE_SIDE = 512
#: A face detection at or above this score is evidence of a person (garment prints score up to ~0.62).
FACE_SCORE = 0.8
#: Keypoints at or above this score count as confident.
KEYPOINT_SCORE = 0.6
#: Confident head keypoints (of nose, eyes, ears) on the subject that make a person.
HEAD_KEYPOINTS = 3
#: Confident limb keypoints (of elbows, wrists, knees, ankles) on the subject that make a person.
LIMB_KEYPOINTS = 4

_HEAD = (0, 1, 2, 3, 4)
_LIMBS = (7, 8, 9, 10, 13, 14, 15, 16)


class FaceDetector:
    """mediapipe face detection (both wheel models), thread-safe, graphs built on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: list[Any] | None = None

    def __call__(self, image: np.ndarray) -> list[tuple[float, tuple[float, float]]]:
        """``(score, (cx, cy))`` of every face found in ``image`` (HxWx3 uint8 RGB), centre in pixels."""
        with self._lock, quiet_native_stderr():  # glog/TFLite lines go to fd 2 (pipelines/native_logs.py)
            if self._models is None:
                import mediapipe as mp

                fd = mp.solutions.face_detection
                self._models = [fd.FaceDetection(model_selection=i, min_detection_confidence=0.5) for i in (0, 1)]
            found = []
            h, w = image.shape[:2]
            for model in self._models:
                for det in model.process(image).detections or []:
                    box = det.location_data.relative_bounding_box
                    cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
                    found.append((float(det.score[0]), (float(cx), float(cy))))
        return found


@functools.cache
def get_face_detector() -> FaceDetector:
    """The process-wide :class:`FaceDetector`."""
    return FaceDetector()


@dataclass
class RouteEvidence:
    """Why a photo was routed to the person or the product path.

    Attributes:
        person (`bool`): a person is in frame.
        reason (`str`): the deciding evidence in words.
        face_score (`float`): best face score on the subject, in [0, 1] (0: none).
        head_keypoints (`int`): confident head keypoints on the subject (0-5).
        limb_keypoints (`int`): confident limb keypoints on the subject (0-8).
        pose_keypoints (`int`): confident keypoints anywhere (0-17), including ones on the backdrop.
        person_coverage (`float`): share of the frame under the pose model's person mask (>= 0.5).
        person_on_subject (`float`): share of that mask on the backdrop model's foreground (1 without one).
        pose (`PoseResult`, *optional*): the pose found, in pixels of the full-size photo.
    """

    person: bool
    reason: str
    face_score: float = 0.0
    head_keypoints: int = 0
    limb_keypoints: int = 0
    pose_keypoints: int = 0
    person_coverage: float = 0.0
    person_on_subject: float = 1.0
    pose: PoseResult | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The evidence as a JSON-ready dict (without the pose)."""
        return {
            "person": self.person, "reason": self.reason, "face_score": round(self.face_score, 3),
            "head_keypoints": self.head_keypoints, "limb_keypoints": self.limb_keypoints,
            "pose_keypoints": self.pose_keypoints, "person_coverage": round(self.person_coverage, 4),
            "person_on_subject": round(self.person_on_subject, 4),
        }


def route_subject(image: np.ndarray, foreground: np.ndarray | None = None) -> RouteEvidence:
    """Decide whether ``image`` shows a person (see the module docstring).

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB.
        foreground (`np.ndarray`, *optional*): HxW mask (nonzero = not backdrop) from the backdrop model, at
            any resolution; keypoints and faces on the backdrop then do not count. ``None``: everything counts
            (a scene without a backdrop model).

    Returns:
        `RouteEvidence`.
    """
    h, w = image.shape[:2]
    small = resize_for_inference(image, ROUTE_SIDE)
    sh, sw = small.shape[:2]
    if foreground is not None:
        fg = cv2.resize((foreground > 0).astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
        # a little slack: keypoints on a hairline or a face's edge still count
        fg = cv2.dilate(fg, np.ones((5, 5), np.uint8)) > 0
    else:
        fg = np.ones((sh, sw), bool)

    def on_subject(x: float, y: float) -> bool:
        xi, yi = int(np.clip(x, 0, sw - 1)), int(np.clip(y, 0, sh - 1))
        return bool(fg[yi, xi])

    pose, mask = get_pose_estimator().estimate(small)
    k = pose.keypoints
    confident = k[:, 2] >= KEYPOINT_SCORE
    head = sum(1 for i in _HEAD if confident[i] and on_subject(k[i, 0], k[i, 1]))
    limbs = sum(1 for i in _LIMBS if confident[i] and on_subject(k[i, 0], k[i, 1]))
    coverage = on = 0.0
    if mask is not None and pose.found:
        pm = mask >= 0.5
        coverage = float(pm.mean())
        on = float((pm & fg).sum() / max(int(pm.sum()), 1))
    faces = [s for s, (cx, cy) in get_face_detector()(small) if on_subject(cx, cy)]
    face = max(faces, default=0.0)
    full_pose = None
    if pose.found:
        kp = k.copy()
        kp[:, 0] *= w / sw
        kp[:, 1] *= h / sh
        full_pose = PoseResult(width=w, height=h, keypoints=kp)
    evidence = RouteEvidence(person=False, reason="", face_score=face, head_keypoints=head, limb_keypoints=limbs,
                             pose_keypoints=int(confident.sum()), person_coverage=coverage,
                             person_on_subject=on if mask is not None and pose.found else 1.0, pose=full_pose)
    if face >= FACE_SCORE:
        evidence.person, evidence.reason = True, f"a face (score {face:.2f})"
    elif limbs >= LIMB_KEYPOINTS:
        evidence.person, evidence.reason = True, f"{limbs} confident limb keypoints on the subject"
    elif head >= HEAD_KEYPOINTS and (limbs >= 2 or face >= 0.5):
        evidence.person, evidence.reason = True, (f"{head} confident head keypoints on the subject with "
                                                  f"{limbs} limb keypoints / face {face:.2f}")
    else:
        evidence.reason = (f"no person: face {face:.2f} < {FACE_SCORE}, {head} head / {limbs} limb keypoints on the "
                           f"subject (of {int(confident.sum())} confident)")
    return evidence


def fuse_person_with_backdrop(person_alpha: np.ndarray, cut: Any, band_fraction: float = 0.005
                              ) -> tuple[np.ndarray, dict[str, Any]]:
    """Clean a person mask's edges with the backdrop model (an on-model photo on a plain backdrop).

    The person segmenter decides *what* is the person (its 256-px model masks are soft at the boundary);
    inside a band around its boundary, pixels the backdrop model calls backdrop are cut (alpha = the
    smaller of the two), so the backdrop beside hair, hands and hems is cut cleanly. The band only takes
    away: a white garment the backdrop model misses is kept. (Taking the cutout's alpha over the whole
    band measured worse: mean IoU 0.978 vs 0.981 on the on-model photos, see ``docs/quality.md``.)

    Args:
        person_alpha (`np.ndarray`): HxW uint8 person alpha (255 = person).
        cut (`Cutout`): the backdrop-model cutout of the same photo (``alpha`` HxW uint8).
        band_fraction (`float`, *optional*, defaults to 0.005): half-width of the band as a share of the
            longer side.

    Returns:
        `(alpha, record)`: the fused HxW uint8 alpha, and a JSON-ready record (``band_px``, ``agreement``: IoU
        of the person mask and the cutout inside the band's outer edge).
    """
    h, w = person_alpha.shape
    person = person_alpha >= 128
    r = max(2, int(round(band_fraction * max(h, w))))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    outer = cv2.dilate(person.astype(np.uint8), k) > 0
    inner = cv2.erode(person.astype(np.uint8), k) > 0
    band = outer & ~inner
    out = np.where(inner, 255, 0).astype(np.uint8)
    out[band] = np.minimum(cut.alpha[band], person_alpha[band])
    cut_fg = (cut.alpha >= 128) & outer
    union = int((cut_fg | person).sum())
    agreement = float((cut_fg & person).sum() / union) if union else 1.0
    return out, {"band_px": r, "agreement": round(agreement, 4)}

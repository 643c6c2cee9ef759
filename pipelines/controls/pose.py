"""Embedded pose estimation: mediapipe Pose (legacy ``mp.solutions`` API) as COCO-17 keypoints.

The classic engine's pose backend. mediapipe 0.10.14 carries its models inside the wheel
(``pose_detection.tflite``, ``pose_landmark_full.tflite``), so nothing is downloaded; only
``model_complexity=1`` is available offline.

Outputs:
- :class:`PoseResult`: 17 COCO keypoints ``[x, y, score]`` in pixel coordinates of the input image.
- :func:`coco17_to_openpose18`: the same keypoints in OpenPose BODY-18 order (with a derived neck).
- :func:`render_openpose`: the skeleton image ControlNet openpose models are trained on.

mediapipe graphs are not thread-safe: one :class:`PoseEstimator` serialises its calls with a lock, and
:func:`get_pose_estimator` returns one shared instance per process.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipelines.errors import InputError, MissingBackendError
from pipelines.native_logs import quiet_native_stderr

logger = logging.getLogger(__name__)

# mediapipe 0.10.14 calls a protobuf API that protobuf 4.x deprecates, once per process() call.
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)

COCO17_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
"""COCO-17 keypoint names, in order. "left" is the person's left (on the image's right when they face us)."""

OPENPOSE18_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
"""OpenPose BODY-18 (COCO-18) keypoint names, in order."""

# Index of each COCO-17 keypoint among mediapipe's 33 pose landmarks.
_MEDIAPIPE33_FOR_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

# Index of each OpenPose-18 keypoint among COCO-17 (-1: the neck, derived from the shoulders).
_COCO17_FOR_OPENPOSE18 = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)

# The OpenPose limb sequence (1-based OpenPose-18 indices) and colours (RGB) used to render the
# control images ControlNet openpose models were trained on (lllyasviel/ControlNet annotator,
# controlnet_aux ``draw_bodypose``). Only the first 17 limbs are drawn (the shoulder-ear pairs are not).
_OPENPOSE_LIMBS = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
)  # fmt: skip
_OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
_OPENPOSE_STICK = 4  # stick half-width and joint radius in pixels, at any resolution (as controlnet_aux)

DEFAULT_MAX_SIDE = 1024


def check_rgb_uint8(image: Any, name: str = "image") -> np.ndarray:
    """Check that ``image`` is an RGB ``uint8`` HxWx3 array and return it C-contiguous.

    Args:
        image (`np.ndarray`): the array to check.
        name (`str`, *optional*, defaults to ``"image"``): how error messages call it.

    Returns:
        `np.ndarray`: the same pixels, HxWx3 ``uint8``, C-contiguous.

    Raises:
        InputError: not a numpy array, not HxWx3, not ``uint8``, or empty.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a numpy array (HxWx3 uint8 RGB), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must have shape HxWx3 (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"{name} must have dtype uint8 with values in [0, 255], got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{name} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def resize_for_inference(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale ``image`` so that its longer side is at most ``max_side`` pixels (never upscale).

    Args:
        image (`np.ndarray`): HxWxC ``uint8``.
        max_side (`int`): the largest allowed side in pixels.

    Returns:
        `np.ndarray`: the image itself when small enough, else an area-resampled copy.
    """
    h, w = image.shape[:2]
    longer = max(h, w)
    if longer <= max_side:
        return image
    scale = max_side / longer
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass
class PoseResult:
    """One person's pose: 17 COCO keypoints in pixel coordinates of the image they were found in.

    Args:
        width (`int`): width of the image the keypoints refer to, in pixels.
        height (`int`): height of that image, in pixels.
        keypoints (`np.ndarray`): shape (17, 3) ``float32``, rows in COCO-17 order
            (:data:`COCO17_NAMES`), each ``[x, y, score]``: ``x, y`` in pixels (0 at the top-left pixel
            corner), ``score`` in [0, 1] (mediapipe visibility; 0 for a keypoint outside the image).
            All zeros when no person was found.
    """

    width: int
    height: int
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float32)
        if kp.shape != (17, 3):
            raise InputError(f"PoseResult.keypoints must have shape (17, 3), got {kp.shape}")
        if self.width < 1 or self.height < 1:
            raise InputError(f"PoseResult size must be positive, got {self.width}x{self.height}")
        self.keypoints = kp

    @classmethod
    def empty(cls, width: int, height: int) -> PoseResult:
        """A result with no person: all keypoints (and scores) zero."""
        return cls(width=width, height=height, keypoints=np.zeros((17, 3), dtype=np.float32))

    @property
    def found(self) -> bool:
        """Whether a person was found (some keypoint has a non-zero score)."""
        return bool(np.any(self.keypoints[:, 2] > 0))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict.

        Returns:
            `dict`: ``{"width": int, "height": int, "keypoints": 17 x [x, y, score], "format": "coco17"}``.
        """
        return {
            "width": int(self.width),
            "height": int(self.height),
            "keypoints": [[round(float(v), 3) for v in row] for row in self.keypoints],
            "format": "coco17",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PoseResult:
        """Inverse of :meth:`to_json`.

        Raises:
            InputError: ``format`` is not ``"coco17"`` or a field is missing or malformed.
        """
        if data.get("format") != "coco17":
            raise InputError(
                f"unsupported pose format {data.get('format')!r} (expected 'coco17')", key="format"
            )
        try:
            return cls(
                width=int(data["width"]), height=int(data["height"]), keypoints=np.asarray(data["keypoints"])
            )
        except KeyError as err:
            raise InputError(f"pose JSON lacks {err.args[0]!r}", key=str(err.args[0])) from None


class PoseEstimator:
    """mediapipe Pose (``static_image_mode=True``, ``model_complexity=1``, segmentation on), thread-safe.

    The mediapipe graph is built on first use. Calls are serialised with a lock: mediapipe graphs are
    not thread-safe. Prefer :func:`get_pose_estimator`, which shares one instance per process.

    Args:
        max_side (`int`, *optional*, defaults to 1024): images whose longer side exceeds this are
            downscaled for inference; keypoints and masks are mapped back to full resolution.
        min_detection_confidence (`float`, *optional*, defaults to 0.5): mediapipe's person-detection
            threshold, in [0, 1].
    """

    def __init__(self, *, max_side: int = DEFAULT_MAX_SIDE, min_detection_confidence: float = 0.5):
        if max_side < 64:
            raise InputError(f"max_side must be at least 64 pixels, got {max_side}", key="max_side")
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise InputError(
                f"min_detection_confidence must be in [0, 1], got {min_detection_confidence}",
                key="min_detection_confidence",
            )
        self.max_side = max_side
        self.min_detection_confidence = min_detection_confidence
        self._lock = threading.Lock()
        self._model: Any = None

    def _get_model(self) -> Any:
        if self._model is None:
            try:
                import mediapipe as mp
            except ImportError as err:  # pragma: no cover - mediapipe is a core dependency
                raise MissingBackendError("mediapipe pose", "pip install mediapipe==0.10.14") from err
            logger.debug("building the mediapipe Pose graph (model_complexity=1)")
            self._model = mp.solutions.pose.Pose(
                static_image_mode=True,
                model_complexity=1,
                enable_segmentation=True,
                min_detection_confidence=self.min_detection_confidence,
            )
        return self._model

    def estimate(self, image: np.ndarray) -> tuple[PoseResult, np.ndarray | None]:
        """Find one person's pose and mediapipe's segmentation mask of that person.

        Args:
            image (`np.ndarray`): HxWx3 ``uint8`` RGB, values in [0, 255].

        Returns:
            `tuple[PoseResult, np.ndarray | None]`: the pose (all zeros when nobody was found) and the pose
            model's person mask, HxW ``float32`` in [0, 1] at the input's resolution, or ``None`` when
            nobody was found.

        Raises:
            InputError: ``image`` is not an HxWx3 ``uint8`` array.
        """
        # 1. Check inputs
        image = check_rgb_uint8(image)
        height, width = image.shape[:2]
        # 2. Downscale large images (mediapipe works at 256 px internally; the mask gains nothing)
        small = resize_for_inference(image, self.max_side)
        # 3. Run the graph (not thread-safe)
        with self._lock, quiet_native_stderr():  # TFLite/absl lines go to fd 2 (pipelines/native_logs.py)
            results = self._get_model().process(small)
        # 4. Post-process: landmarks are normalised to the image, so they map back to any resolution
        if results.pose_landmarks is None:
            return PoseResult.empty(width, height), None
        landmarks = results.pose_landmarks.landmark
        keypoints = np.zeros((17, 3), dtype=np.float32)
        for row, index in enumerate(_MEDIAPIPE33_FOR_COCO17):
            lm = landmarks[index]
            x, y = lm.x * width, lm.y * height
            inside = 0.0 <= x <= width and 0.0 <= y <= height
            score = float(np.clip(lm.visibility, 0.0, 1.0)) if inside else 0.0
            keypoints[row] = (x, y, score)
        mask = results.segmentation_mask
        if mask is not None:
            mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
            if mask.shape != (height, width):
                mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
        return PoseResult(width=width, height=height, keypoints=keypoints), mask

    def __call__(self, image: np.ndarray) -> PoseResult:
        """Find one person's pose. See :meth:`estimate` for the arguments.

        Returns:
            `PoseResult`: 17 COCO keypoints in pixels of ``image``; all zeros when nobody was found.
        """
        return self.estimate(image)[0]

    def close(self) -> None:
        """Release the mediapipe graph (it is rebuilt on the next call)."""
        with self._lock:
            if self._model is not None:
                self._model.close()
                self._model = None


@functools.cache
def get_pose_estimator() -> PoseEstimator:
    """The process-wide :class:`PoseEstimator` (built once, graph loaded on first call)."""
    return PoseEstimator()


def coco17_to_openpose18(keypoints: np.ndarray) -> np.ndarray:
    """Reorder COCO-17 keypoints into OpenPose BODY-18 order, adding the neck.

    Args:
        keypoints (`np.ndarray`): shape (17, 3), rows ``[x, y, score]`` in COCO-17 order.

    Returns:
        `np.ndarray`: shape (18, 3) ``float32`` in :data:`OPENPOSE18_NAMES` order. The neck is the midpoint
        of the two shoulders, its score the smaller of theirs.

    Raises:
        InputError: ``keypoints`` does not have shape (17, 3).
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape != (17, 3):
        raise InputError(f"keypoints must have shape (17, 3) (COCO-17), got {kp.shape}")
    out = np.zeros((18, 3), dtype=np.float32)
    for row, index in enumerate(_COCO17_FOR_OPENPOSE18):
        if index >= 0:
            out[row] = kp[index]
    left_shoulder, right_shoulder = kp[5], kp[6]
    out[1, :2] = (left_shoulder[:2] + right_shoulder[:2]) / 2.0
    out[1, 2] = min(left_shoulder[2], right_shoulder[2])
    return out


def render_openpose(
    pose: PoseResult, size: tuple[int, int] | None = None, min_score: float = 0.3
) -> np.ndarray:
    """Draw ``pose`` as the OpenPose skeleton image that ControlNet openpose models expect.

    Black background, the 17 OpenPose limbs as filled ellipses in the standard colours (at 60 %
    intensity) and the 18 joints as coloured discs, pixel-equal to ``controlnet_aux``'s
    ``draw_bodypose`` on the same keypoints (see `draw_bodypose_exact`): 4 px sticks and joints at any
    size, no antialiasing, at most 36 colours.

    Args:
        pose (`PoseResult`): the keypoints to draw, in pixels of a ``pose.width`` x ``pose.height`` image.
        size (`tuple[int, int]`, *optional*): ``(width, height)`` of the output; coordinates are scaled to
            it. Defaults to ``(pose.width, pose.height)``.
        min_score (`float`, *optional*, defaults to 0.3): keypoints scoring below this are not drawn,
            nor the limbs that touch them. In [0, 1].

    Returns:
        `np.ndarray`: HxWx3 ``uint8`` RGB skeleton image (all black when nobody was found).

    Raises:
        InputError: ``size`` is not two positive integers or ``min_score`` is outside [0, 1].
    """
    # 1. Check inputs
    if size is None:
        size = (pose.width, pose.height)
    if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
        raise InputError(f"size must be (width, height) with positive integers, got {size!r}", key="size")
    if not 0.0 <= min_score <= 1.0:
        raise InputError(f"min_score must be in [0, 1], got {min_score}", key="min_score")
    out_w, out_h = int(size[0]), int(size[1])

    # 2. Keypoints normalised to [0, 1] (as controlnet_aux keeps them), drawn on the output size
    points = coco17_to_openpose18(pose.keypoints)
    visible = points[:, 2] >= min_score
    if min_score == 0.0:
        visible &= points[:, 2] > 0  # a zero score means "absent", never drawable
    norm = [(float(x) / pose.width, float(y) / pose.height) if ok else None
            for (x, y, _), ok in zip(points, visible)]
    canvas = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    return draw_bodypose_exact(canvas, norm)


def draw_bodypose_exact(canvas: np.ndarray, keypoints: list[tuple[float, float] | None]) -> np.ndarray:
    """Draw an OpenPose-18 body on ``canvas`` in place, pixel for pixel as ``controlnet_aux`` 0.0.10's
    ``open_pose.util.draw_bodypose`` does (the annotator ControlNet openpose models were trained on).

    17 limbs as filled ellipses (half-length x stick width 4 px, angle truncated to whole degrees, the
    colour at 60 % truncated to integers, no antialiasing), then the 18 joints as discs of radius 4 px
    in the full colours, at ``int(x * W), int(y * H)``. Sizes do not scale with the image.

    Args:
        canvas (`np.ndarray`): HxWx3 ``uint8``, drawn on and returned.
        keypoints (`list`): 18 entries in OpenPose-18 order, each ``(x, y)`` normalised to [0, 1] by the
            canvas width and height, or ``None`` for a keypoint not to draw (nor its limbs).

    Returns:
        `np.ndarray`: ``canvas``.
    """
    h, w = canvas.shape[:2]
    for (a, b), color in zip(_OPENPOSE_LIMBS, _OPENPOSE_COLORS):
        k1, k2 = keypoints[a - 1], keypoints[b - 1]
        if k1 is None or k2 is None:
            continue
        ys = np.array([k1[0], k2[0]]) * float(w)  # controlnet_aux's names: Y holds x, X holds y
        xs = np.array([k1[1], k2[1]]) * float(h)
        m_x, m_y = np.mean(xs), np.mean(ys)
        length = ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
        polygon = cv2.ellipse2Poly((int(m_y), int(m_x)), (int(length / 2), _OPENPOSE_STICK), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in color])
    for k, color in zip(keypoints, _OPENPOSE_COLORS):
        if k is None:
            continue
        cv2.circle(canvas, (int(k[0] * w), int(k[1] * h)), _OPENPOSE_STICK, color, thickness=-1)
    return canvas

"""The controls stage of an engine: the control images of a photo's subject (Canny edges; for people an
OpenPose skeleton and the pose as COCO-17 JSON).

Pose estimation and drawing live in `pipelines.controls.pose`, edges in `pipelines.controls.edges`, the
standing templates of on-model outputs in `pipelines.controls.templates`: change pose there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipelines.controls.edges import canny_control
from pipelines.controls.pose import PoseResult, get_pose_estimator, render_openpose


@dataclass
class Controls:
    """Control images for generation (HxWx3 uint8 each) and the pose as JSON (COCO-17), if any."""

    images: dict[str, np.ndarray]
    pose: dict[str, Any] | None = None


class Controller(Protocol):
    """A controls backend.

    Attributes:
        kind (`str`): which backend this is (``classic``).
        uses_gpu (`bool`): whether its models may run on a GPU.
    """

    kind: str
    uses_gpu: bool

    def controls(self, rgb: np.ndarray, alpha: np.ndarray, *, person: bool,
                 pose: PoseResult | None = None) -> Controls:
        """The control images of the subject ``alpha`` (HxW uint8) in ``rgb``; a skeleton for a ``person``
        (``pose`` when the segmentation found one, else estimated)."""
        ...

    def backends(self) -> dict[str, str]:
        """Its entries of the engine's ``describe()["backends"]`` (``pose``, ``edges``)."""
        ...


class ClassicControls:
    """Canny edges of the subject; for people the mediapipe pose, drawn as an OpenPose-18 skeleton."""

    kind = "classic"
    uses_gpu = False

    def controls(self, rgb: np.ndarray, alpha: np.ndarray, *, person: bool,
                 pose: PoseResult | None = None) -> Controls:
        mask = np.where(alpha >= 128, 255, 0).astype(np.uint8)
        images = {"canny": canny_control(rgb, mask)}
        pose_json = None
        if person:
            pose = pose or get_pose_estimator()(rgb)
            if pose.found:
                images["openpose"] = render_openpose(pose)
                pose_json = pose.to_json()
        return Controls(images=images, pose=pose_json)

    def backends(self) -> dict[str, str]:
        return {"pose": "mediapipe pose (COCO-17 / OpenPose-18 skeleton)", "edges": "opencv canny"}

"""Shared by tests/test_tryon*.py and tests/test_edit*.py: tiny FLUX models (built once per process), the
Kontext editor and FLUX Fill loaded once through Vitrine's loader, and a synthetic person with a known pose.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

FAST = {"device": "cpu", "steps": 2, "seam_steps": 2, "work_side": 32}  # 32: the tiny models' native side


@functools.lru_cache(maxsize=1)
def tiny_flux_root() -> Path:
    """``vitrine dev tiny-models`` for the flux family (Kontext, Fill, dev, schnell...), once per process."""
    from pipelines.dev_models.tiny import build_tiny_models

    root = Path(tempfile.mkdtemp(prefix="vitrine-tiny-tryon-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    build_tiny_models(root, ["flux"])
    return root


def fast_settings(**changes):
    from pipelines.generation.settings import GenerationSettings

    return GenerationSettings(**{**FAST, **changes})


@functools.lru_cache(maxsize=1)
def tiny_kontext():
    """(KontextEditor, model record) on the tiny FLUX.1-Kontext-dev, loaded through `load_pipeline`."""
    from pipelines.catalog.edits import load_kontext_editor

    return load_kontext_editor(tiny_flux_root(), fast_settings())


@functools.lru_cache(maxsize=1)
def tiny_fill():
    from pipelines.generation.loading import load_pipeline

    return load_pipeline("black-forest-labs/FLUX.1-Fill-dev", model_root=tiny_flux_root(), settings=fast_settings(),
                         base="black-forest-labs/FLUX.1-dev")


def synthetic_person(w: int = 160, h: int = 200, seed: int = 0):
    """A drawn person facing the camera on a textured background, with its exact alpha and COCO-17 pose.

    Returns:
        `tuple`: (HxWx3 uint8 RGB, HxW uint8 alpha, `PoseResult`, HxW uint8 mask of the shirt it wears).
    """
    from pipelines.controls.pose import COCO17_NAMES, PoseResult

    rng = np.random.default_rng(seed)
    img = (rng.normal(120, 25, (h, w, 3))).clip(0, 255).astype(np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cx = w // 2
    sh_y, hip_y = int(0.3 * h), int(0.62 * h)
    sw = int(0.34 * w)
    cv2.circle(alpha, (cx, int(0.17 * h)), int(0.09 * h), 255, -1)  # head
    cv2.rectangle(alpha, (cx - sw // 2 - 4, sh_y - 4), (cx + sw // 2 + 4, hip_y), 255, -1)  # torso
    cv2.rectangle(alpha, (cx - sw // 2 + 2, hip_y), (cx + sw // 2 - 2, h - 1), 255, -1)  # legs
    skin = np.array([224, 180, 150], np.uint8)
    img[alpha > 0] = skin
    shirt = np.zeros((h, w), np.uint8)
    cv2.rectangle(shirt, (cx - sw // 2 - 4, sh_y - 4), (cx + sw // 2 + 4, hip_y), 255, -1)
    img[shirt > 0] = (40, 160, 60)
    kp = {
        "nose": (cx, 0.17 * h), "left_eye": (cx + 6, 0.15 * h), "right_eye": (cx - 6, 0.15 * h),
        "left_ear": (cx + 12, 0.16 * h), "right_ear": (cx - 12, 0.16 * h),
        "left_shoulder": (cx + sw / 2, sh_y), "right_shoulder": (cx - sw / 2, sh_y),
        "left_elbow": (cx + sw / 2 + 6, 0.45 * h), "right_elbow": (cx - sw / 2 - 6, 0.45 * h),
        "left_wrist": (cx + sw / 2 + 8, 0.58 * h), "right_wrist": (cx - sw / 2 - 8, 0.58 * h),
        "left_hip": (cx + sw / 4, hip_y), "right_hip": (cx - sw / 4, hip_y),
        "left_knee": (cx + sw / 4, 0.8 * h), "right_knee": (cx - sw / 4, 0.8 * h),
        "left_ankle": (cx + sw / 4, 0.97 * h), "right_ankle": (cx - sw / 4, 0.97 * h),
    }
    keypoints = np.array([[*kp[n], 1.0] for n in COCO17_NAMES], np.float32)
    return img, alpha, PoseResult(width=w, height=h, keypoints=keypoints), shirt


def garment_photo(size: int = 160):
    """The drawn navy tee with its logo on studio white (pipelines.samples), and its exact alpha."""
    from pipelines.samples import draw_tee

    rgb, mask = draw_tee(size)
    return rgb, mask

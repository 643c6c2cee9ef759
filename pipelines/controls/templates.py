"""Pose templates for on-model images: where a garment goes on the canvas and the skeleton around it.

A template is a frontal standing person in *height units*: ``y`` is a share of the canvas height from
the top, ``dx`` a horizontal offset from the canvas centre in the same unit (so the figure keeps its
proportions on any aspect ratio). Each garment type has a region of the body it covers; the garment's
box is fitted into that region (aspect kept, centred, top-aligned) and the skeleton is drawn around it.
"""

from __future__ import annotations

import numpy as np

from pipelines.controls.pose import COCO17_NAMES, PoseResult
from pipelines.compositing.composite import Placement, RESAMPLE_FILTERS
from pipelines.errors import InputError

#: Garment types that are worn, so that their lifestyle images are generated on a model.
ON_MODEL_TYPES = ("upper", "outerwear", "dress", "lower")

#: COCO-17 keypoints of the standing template: name -> (dx, y) in height units (see the module docstring).
STANDING_TEMPLATE: dict[str, tuple[float, float]] = {
    "nose": (0.0, 0.115),
    "left_eye": (0.018, 0.100), "right_eye": (-0.018, 0.100),
    "left_ear": (0.040, 0.110), "right_ear": (-0.040, 0.110),
    "left_shoulder": (0.115, 0.215), "right_shoulder": (-0.115, 0.215),
    "left_elbow": (0.145, 0.360), "right_elbow": (-0.145, 0.360),
    "left_wrist": (0.155, 0.490), "right_wrist": (-0.155, 0.490),
    "left_hip": (0.085, 0.500), "right_hip": (-0.085, 0.500),
    "left_knee": (0.080, 0.705), "right_knee": (-0.080, 0.705),
    "left_ankle": (0.075, 0.905), "right_ankle": (-0.075, 0.905),
}  # fmt: skip

#: The body region each garment type covers: (half width, top y, bottom y) in height units.
GARMENT_REGIONS: dict[str, tuple[float, float, float]] = {
    "upper": (0.165, 0.195, 0.540),
    "outerwear": (0.180, 0.195, 0.620),
    "dress": (0.165, 0.195, 0.780),
    "lower": (0.115, 0.480, 0.920),
}


def template_pose(canvas_size: tuple[int, int], template: dict[str, tuple[float, float]] | None = None) -> PoseResult:
    """The standing template as a `PoseResult` on a canvas.

    Args:
        canvas_size (`tuple[int, int]`): (width, height) in pixels.
        template (`dict`, *optional*): keypoints in height units; defaults to `STANDING_TEMPLATE`.

    Returns:
        `PoseResult`: 17 COCO keypoints in canvas pixels, every score 1.0.
    """
    w, h = canvas_size
    template = template or STANDING_TEMPLATE
    kp = np.zeros((17, 3), np.float32)
    for i, name in enumerate(COCO17_NAMES):
        dx, y = template[name]
        kp[i] = (w / 2 + dx * h, y * h, 1.0)
    return PoseResult(width=w, height=h, keypoints=kp)


def on_model_placement(
    bbox: tuple[int, int, int, int],
    canvas_size: tuple[int, int],
    garment_type: str,
    *,
    resample: str = "lanczos",
) -> Placement:
    """Place a garment where the template body wears it.

    Args:
        bbox (`tuple[int, int, int, int]`): XYXY box of the garment in the input photo.
        canvas_size (`tuple[int, int]`): (width, height) of the output.
        garment_type (`str`): one of `ON_MODEL_TYPES`.
        resample (`str`, *optional*, defaults to ``"lanczos"``): PIL filter name.

    Returns:
        `Placement`: the garment scaled to fit its body region (aspect kept), centred on the body axis
        and aligned with the region's top (shoulders, or the waist for ``lower``).

    Raises:
        `InputError`: an unknown garment type or an empty box.
    """
    if garment_type not in GARMENT_REGIONS:
        raise InputError(f"no on-model region for garment type {garment_type!r}; expected one of "
                         f"{', '.join(GARMENT_REGIONS)}", key="garment_type")
    if resample not in RESAMPLE_FILTERS:
        raise InputError(f"unknown resample filter {resample!r}", key="resample")
    x0, y0, x1, y1 = bbox
    bw, bh = x1 - x0, y1 - y0
    if bw <= 0 or bh <= 0:
        raise InputError(f"empty garment box {bbox}", key="bbox")
    cw, ch = canvas_size
    half, top, bottom = GARMENT_REGIONS[garment_type]
    region_w = min(2 * half * ch, cw * 0.95)
    region_h = (bottom - top) * ch
    s = min(region_w / bw, region_h / bh)
    rw, rh = max(1, int(round(bw * s))), max(1, int(round(bh * s)))
    return Placement(canvas_size=(cw, ch), crop_box=(x0, y0, x1, y1), resized_size=(rw, rh),
                     offset=((cw - rw) // 2, int(round(top * ch))), resample=resample)


def map_pose(pose: PoseResult, placement: Placement) -> PoseResult:
    """Map keypoints of an input photo to output coordinates with the photo's placement.

    Keypoints that land outside the canvas keep their position but get score 0 (not drawn).
    """
    sx, sy = placement.scale
    kp = pose.keypoints.copy()
    kp[:, 0] = (kp[:, 0] - placement.crop_box[0]) * sx + placement.offset[0]
    kp[:, 1] = (kp[:, 1] - placement.crop_box[1]) * sy + placement.offset[1]
    w, h = placement.canvas_size
    outside = (kp[:, 0] < 0) | (kp[:, 0] >= w) | (kp[:, 1] < 0) | (kp[:, 1] >= h)
    kp[outside, 2] = 0.0
    return PoseResult(width=w, height=h, keypoints=kp)

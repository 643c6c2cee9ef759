"""The OpenPose control image is pixel-equal to controlnet_aux 0.0.10's ``draw_bodypose`` on the same
keypoints (the annotator ControlNet openpose models were trained on)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipelines.controls.pose import PoseResult, coco17_to_openpose18, render_openpose


@pytest.fixture(scope="module")
def reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.open_pose.body import Keypoint
        from controlnet_aux.open_pose.util import draw_bodypose
    return Keypoint, draw_bodypose


def reference_render(reference, pose: PoseResult, size: tuple[int, int], min_score: float = 0.3) -> np.ndarray:
    """controlnet_aux's drawing of the same keypoints: OpenPose-18, normalised, ``None`` when hidden."""
    keypoint_cls, draw_bodypose = reference
    op = coco17_to_openpose18(pose.keypoints)
    kps = [keypoint_cls(float(x) / pose.width, float(y) / pose.height) if s >= min_score and s > 0 else None
           for x, y, s in op]
    return draw_bodypose(np.zeros((size[1], size[0], 3), np.uint8), kps)


def standing_pose(w: int, h: int, rng: np.random.Generator) -> PoseResult:
    """A plausible standing person (COCO-17) with jitter, a few keypoints hidden."""
    base = np.array([
        [.50, .12], [.52, .10], [.48, .10], [.55, .11], [.45, .11], [.60, .22], [.40, .22], [.66, .36],
        [.34, .36], [.68, .50], [.32, .50], [.56, .52], [.44, .52], [.57, .72], [.43, .72], [.58, .92], [.42, .92],
    ])  # fmt: skip
    xy = (base + rng.normal(0, 0.02, base.shape)) * [w, h]
    score = rng.uniform(0.35, 1.0, 17)
    score[rng.choice(17, 2, replace=False)] = rng.uniform(0.0, 0.29, 2)
    return PoseResult(w, h, np.column_stack([xy, score]).astype(np.float32))


@pytest.fixture(scope="module")
def astronaut_pose() -> PoseResult:
    import skimage.data

    from pipelines.controls.pose import get_pose_estimator

    return get_pose_estimator()(skimage.data.astronaut())


@pytest.mark.parametrize("size", [(512, 640), (64, 80), (1024, 1024), (1600, 2000)])
def test_render_is_pixel_equal_to_controlnet_aux(reference, size):
    rng = np.random.default_rng(size[0])
    for _ in range(5):
        pose = standing_pose(*size, rng)
        ours = render_openpose(pose)
        theirs = reference_render(reference, pose, size)
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_render_at_another_size_equals_reference_at_that_size(reference):
    """Keypoints found at 1600x2000 drawn at a 768x960 working size."""
    pose = standing_pose(1600, 2000, np.random.default_rng(7))
    np.testing.assert_array_equal(render_openpose(pose, size=(768, 960)), reference_render(reference, pose, (768, 960)))


def test_real_pose_and_colour_count(reference, astronaut_pose):
    pose = astronaut_pose
    assert pose.found
    ours = render_openpose(pose, size=(512, 640))
    np.testing.assert_array_equal(ours, reference_render(reference, pose, (512, 640)))
    colours = np.unique(ours.reshape(-1, 3), axis=0)
    assert len(colours) <= 36  # 18 joint colours, 17 limb colours at 60 %, black: no antialiasing


def test_min_score_zero_never_draws_absent_keypoints(reference):
    pose = standing_pose(256, 320, np.random.default_rng(3))
    pose.keypoints[0, 2] = 0.0
    ours = render_openpose(pose, min_score=0.0)
    np.testing.assert_array_equal(ours, reference_render(reference, pose, (256, 320), min_score=0.0))

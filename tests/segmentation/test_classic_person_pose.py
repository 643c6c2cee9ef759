"""The classic engine's pose estimation and person segmentation, on real photos that ship in packages.

skimage's ``astronaut`` (512x512, Eileen Collins facing the camera, head and torso) and matplotlib's
``grace_hopper`` sample (512x600 portrait). mediapipe's models load once for the module.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")

from pipelines.segmentation.person import (
    PersonSegmenter,
    binarize,
    get_person_segmenter,
    guided_filter,
    segment_person,
)
from pipelines.controls.pose import (
    COCO17_NAMES,
    OPENPOSE18_NAMES,
    PoseResult,
    coco17_to_openpose18,
    get_pose_estimator,
    render_openpose,
)
from pipelines.errors import InputError

# mediapipe 0.10.14 calls a protobuf 4.x API that warns on every process() call
pytestmark = pytest.mark.filterwarnings("ignore:SymbolDatabase.GetPrototype:UserWarning")

KP = {name: i for i, name in enumerate(COCO17_NAMES)}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.array(Image.open(f).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut_pose(astronaut) -> tuple[PoseResult, np.ndarray | None]:
    return get_pose_estimator().estimate(astronaut)


@pytest.fixture(scope="module")
def grace_pose(grace_hopper) -> PoseResult:
    return get_pose_estimator()(grace_hopper)


@pytest.fixture(scope="module")
def astronaut_mask(astronaut) -> np.ndarray:
    return segment_person(astronaut)


@pytest.fixture(scope="module")
def grace_mask(grace_hopper) -> np.ndarray:
    return segment_person(grace_hopper)


def _px(value: float) -> int:
    return int(np.rint(value))


def _at(mask: np.ndarray, x: float, y: float) -> bool:
    h, w = mask.shape
    return bool(mask[min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)])


# --- pose --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["astronaut", "grace"])
def test_pose_is_plausible_for_a_person_facing_the_camera(which, astronaut_pose, grace_pose):
    pose = astronaut_pose[0] if which == "astronaut" else grace_pose
    kp = pose.keypoints
    assert pose.found
    assert kp.shape == (17, 3) and kp.dtype == np.float32
    assert np.all((kp[:, 2] >= 0) & (kp[:, 2] <= 1))
    # the head and shoulders are clearly visible in both photos
    for name in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder"):
        assert kp[KP[name], 2] > 0.9, name
        assert 0 <= kp[KP[name], 0] <= pose.width and 0 <= kp[KP[name], 1] <= pose.height, name
    # vertical order: eyes above the nose, nose above the shoulders, shoulders above the hips
    eyes_y = kp[[KP["left_eye"], KP["right_eye"]], 1]
    shoulders_y = kp[[KP["left_shoulder"], KP["right_shoulder"]], 1]
    hips_y = kp[[KP["left_hip"], KP["right_hip"]], 1]
    assert eyes_y.max() < kp[KP["nose"], 1] < shoulders_y.min()
    assert shoulders_y.max() < hips_y.min()
    # facing the camera: the person's left appears on the image's right
    assert kp[KP["left_shoulder"], 0] > kp[KP["nose"], 0] > kp[KP["right_shoulder"], 0]
    assert kp[KP["left_eye"], 0] > kp[KP["right_eye"], 0]
    # shoulders span a sensible share of the frame (pixel coordinates, not normalised ones)
    span = kp[KP["left_shoulder"], 0] - kp[KP["right_shoulder"], 0]
    assert 0.25 * pose.width < span < 0.9 * pose.width


def test_astronaut_landmarks_where_they_are_in_the_photo(astronaut_pose):
    kp = astronaut_pose[0].keypoints
    # hand-read from the 512x512 photo: nose near (222, 128), shoulders near (305, 255) and (115, 240)
    assert np.hypot(*(kp[KP["nose"], :2] - (222, 128))) < 15
    assert np.hypot(*(kp[KP["left_shoulder"], :2] - (305, 255))) < 30
    assert np.hypot(*(kp[KP["right_shoulder"], :2] - (115, 240))) < 30


def test_pose_mask_from_estimate(astronaut_pose, astronaut):
    _, mask = astronaut_pose
    assert mask is not None and mask.shape == astronaut.shape[:2] and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    assert 0.25 < (mask > 0.5).mean() < 0.8


def test_large_image_keypoints_map_back_to_full_resolution(astronaut, astronaut_pose):
    import cv2

    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    pose, mask = get_pose_estimator().estimate(big)
    assert (pose.width, pose.height) == (2048, 2048)
    assert mask is not None and mask.shape == (2048, 2048)
    small = astronaut_pose[0].keypoints
    confident = small[:, 2] > 0.9
    # the same landmarks, 4x further from the origin (within 1.5 % of the image)
    assert np.abs(pose.keypoints[confident, :2] - 4 * small[confident, :2]).max() < 0.015 * 2048


def test_blank_image_has_no_person():
    blank = np.full((240, 320, 3), 128, np.uint8)
    pose, mask = get_pose_estimator().estimate(blank)
    assert not pose.found
    assert mask is None
    assert np.all(pose.keypoints == 0)
    assert (pose.width, pose.height) == (320, 240)
    person = segment_person(blank)
    assert person.shape == (240, 320)
    assert (person > 0.5).mean() < 0.01


def test_pose_json_round_trip(grace_pose):
    data = grace_pose.to_json()
    assert data["format"] == "coco17"
    assert (data["width"], data["height"]) == (512, 600)
    assert len(data["keypoints"]) == 17 and all(len(row) == 3 for row in data["keypoints"])
    import json

    back = PoseResult.from_json(json.loads(json.dumps(data)))
    np.testing.assert_allclose(back.keypoints, grace_pose.keypoints, atol=1e-3)
    with pytest.raises(InputError):
        PoseResult.from_json({**data, "format": "openpose18"})


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        [[0, 0, 0]],
    ],
    ids=["gray", "rgba", "float", "list"],
)
def test_bad_images_are_input_errors(bad):
    with pytest.raises(InputError):
        get_pose_estimator()(bad)
    with pytest.raises(InputError):
        segment_person(bad)


def test_pose_result_validates_its_shape():
    with pytest.raises(InputError):
        PoseResult(width=10, height=10, keypoints=np.zeros((18, 3)))


# --- COCO-17 -> OpenPose-18 and rendering --------------------------------------------------------------


def _synthetic_keypoints() -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = np.arange(17) * 10 + 5  # distinct x per joint
    kp[:, 1] = np.arange(17) * 3 + 100
    kp[:, 2] = np.linspace(0.5, 0.9, 17)
    return kp


def test_coco17_to_openpose18_mapping():
    kp = _synthetic_keypoints()
    op = coco17_to_openpose18(kp)
    assert op.shape == (18, 3) and op.dtype == np.float32
    for i, name in enumerate(OPENPOSE18_NAMES):
        if name == "neck":
            continue
        np.testing.assert_array_equal(op[i], kp[KP[name]], err_msg=name)
    # explicit spot checks of the order ControlNet expects
    np.testing.assert_array_equal(op[2], kp[KP["right_shoulder"]])
    np.testing.assert_array_equal(op[5], kp[KP["left_shoulder"]])
    np.testing.assert_array_equal(op[14], kp[KP["right_eye"]])
    np.testing.assert_array_equal(op[17], kp[KP["left_ear"]])
    # neck: midpoint of the shoulders, the smaller score
    ls, rs = kp[KP["left_shoulder"]], kp[KP["right_shoulder"]]
    np.testing.assert_allclose(op[1, :2], (ls[:2] + rs[:2]) / 2)
    assert op[1, 2] == pytest.approx(min(ls[2], rs[2]))
    with pytest.raises(InputError):
        coco17_to_openpose18(np.zeros((18, 3)))


def test_render_openpose_draws_the_skeleton_on_black(astronaut_pose):
    import cv2

    pose = astronaut_pose[0]
    canvas = render_openpose(pose)
    assert canvas.shape == (512, 512, 3) and canvas.dtype == np.uint8
    op = coco17_to_openpose18(pose.keypoints)
    visible = op[:, 2] >= 0.3
    assert visible.sum() >= 10
    # every drawn joint sits on a coloured pixel; the nose disc is OpenPose red, the neck orange
    for x, y, _ in op[visible]:
        assert canvas[_px(y), _px(x)].max() > 100
    nx, ny = op[0, :2].round().astype(int)
    np.testing.assert_array_equal(canvas[ny, nx], (255, 0, 0))
    kx, ky = op[1, :2].round().astype(int)
    np.testing.assert_array_equal(canvas[ky, kx], (255, 85, 0))
    # everything further than a few pixels from the skeleton is black
    near = np.zeros((512, 512), np.uint8)
    for x, y, _ in op[visible]:
        cv2.circle(near, (_px(x), _px(y)), 8, 1, -1)
    from pipelines.controls.pose import _OPENPOSE_LIMBS

    for a, b in _OPENPOSE_LIMBS:
        if visible[a - 1] and visible[b - 1]:
            p1 = tuple(int(v) for v in op[a - 1, :2].round())
            p2 = tuple(int(v) for v in op[b - 1, :2].round())
            cv2.line(near, p1, p2, 1, 14)
    assert canvas[near == 0].max() == 0
    assert 0.01 < (canvas.max(axis=2) > 0).mean() < 0.15


def test_render_openpose_size_and_min_score(astronaut_pose):
    pose = astronaut_pose[0]
    half = render_openpose(pose, size=(256, 128))
    assert half.shape == (128, 256, 3)
    nose = pose.keypoints[KP["nose"]]
    np.testing.assert_array_equal(half[_px(nose[1] / 4), _px(nose[0] / 2)], (255, 0, 0))
    # a keypoint below min_score is not drawn: hide the nose, its disc disappears
    hidden = PoseResult(pose.width, pose.height, pose.keypoints.copy())
    hidden.keypoints[KP["nose"], 2] = 0.1
    canvas = render_openpose(hidden, min_score=0.3)
    assert canvas[_px(nose[1]), _px(nose[0])].max() == 0
    assert render_openpose(PoseResult.empty(64, 48)).max() == 0
    with pytest.raises(InputError):
        render_openpose(pose, size=(0, 10))


# --- person segmentation ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["astronaut", "grace"])
def test_person_mask_contains_the_confident_keypoints(
    which, astronaut_mask, grace_mask, astronaut_pose, grace_pose
):
    mask = astronaut_mask if which == "astronaut" else grace_mask
    pose = astronaut_pose[0] if which == "astronaut" else grace_pose
    assert mask.dtype == np.float32 and 0.0 <= mask.min() and mask.max() <= 1.0
    binary = binarize(mask) > 0
    confident = pose.keypoints[pose.keypoints[:, 2] >= 0.5]
    assert len(confident) >= 5
    inside = np.mean([_at(binary, x, y) for x, y, _ in confident])
    assert inside >= 0.8


def test_astronaut_mask_covers_her_not_the_props(astronaut_mask):
    binary = binarize(astronaut_mask) > 0
    assert 0.25 < binary.mean() < 0.8
    assert _at(binary, 222, 128)  # face
    assert _at(binary, 160, 420)  # orange suit, left of the mission patch
    assert _at(binary, 225, 40)  # hair
    assert not _at(binary, 410, 150)  # the shuttle model
    assert not _at(binary, 30, 100)  # the flag
    assert not _at(binary, 390, 440)  # the helmet in front of her
    assert not binary[:40, 300:].any()  # the wall above her shoulder


def test_grace_hopper_mask(grace_mask, grace_pose):
    binary = binarize(grace_mask) > 0
    assert 0.3 < binary.mean() < 0.85
    assert _at(binary, *grace_pose.keypoints[KP["nose"], :2])
    assert not binary[:60, :60].any() and not binary[:60, -60:].any()  # background above her shoulders


def test_segment_person_checks_the_pose_size(astronaut, astronaut_pose):
    with pytest.raises(InputError):
        segment_person(astronaut, pose=PoseResult.empty(100, 100))
    # a matching pose is accepted and keeps the mask the same on this photo
    with_pose = segment_person(astronaut, pose=astronaut_pose[0])
    assert with_pose.shape == astronaut.shape[:2]


def test_person_segmenter_returns_poses_and_is_thread_safe(
    astronaut, grace_hopper, astronaut_mask, grace_mask
):
    segmenter = get_person_segmenter()
    result = segmenter(astronaut)
    assert len(result.poses) >= 1 and result.poses[0].found
    results: dict[str, np.ndarray] = {}

    def run(name: str, image: np.ndarray) -> None:
        results[name] = segment_person(image)

    threads = [threading.Thread(target=run, args=args) for args in (("a", astronaut), ("g", grace_hopper))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(results["a"], astronaut_mask, atol=1e-5)
    np.testing.assert_allclose(results["g"], grace_mask, atol=1e-5)


def test_person_segmenter_validates_settings():
    with pytest.raises(InputError):
        PersonSegmenter(max_persons=0)
    with pytest.raises(InputError):
        PersonSegmenter(person_agreement=1.5)


def test_binarize():
    mask = np.array([[0.0, 0.5, 0.51, 1.0]], np.float32)
    np.testing.assert_array_equal(binarize(mask), [[0, 0, 255, 255]])
    assert binarize(mask).dtype == np.uint8
    np.testing.assert_array_equal(binarize(mask, thr=0.9), [[0, 0, 0, 255]])
    with pytest.raises(InputError):
        binarize(np.zeros((2, 2, 3)))
    with pytest.raises(InputError):
        binarize(mask, thr=2.0)


def test_guided_filter_numpy_fallback_matches_opencv(astronaut, monkeypatch):
    import cv2

    if not hasattr(cv2, "ximgproc"):
        pytest.skip("OpenCV contrib (ximgproc) is not installed")
    src = (astronaut[..., 0] > 128).astype(np.float32)
    expected = guided_filter(astronaut, src, 4, 1e-2)
    monkeypatch.delattr(cv2, "ximgproc")
    got = guided_filter(astronaut, src, 4, 1e-2)
    np.testing.assert_allclose(got, expected, atol=1e-4)

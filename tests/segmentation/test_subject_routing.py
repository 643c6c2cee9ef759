"""Subject routing of the classic engine: person vs product by evidence, not by how plain the backdrop is."""

import json

import numpy as np
import pytest
from PIL import Image

from pipelines.segmentation.classic import ClassicSegmenter
from pipelines.imageio import load_image, save_image
from pipelines.product import load_product


def _on_white(rgb: np.ndarray, pad: float = 0.25) -> np.ndarray:
    """Composite a photo onto a white studio canvas (a person shot against a plain sweep)."""
    h, w = rgb.shape[:2]
    ph, pw = int(h * pad), int(w * pad)
    canvas = np.full((h + 2 * ph, w + 2 * pw, 3), 252, np.uint8)
    canvas[ph:ph + h, pw:pw + w] = rgb
    return canvas


@pytest.fixture(scope="module")
def hopper_on_white():
    """matplotlib's grace_hopper portrait on a white sweep, and where the portrait lies."""
    from pipelines.samples import grace_hopper

    rgb = grace_hopper()
    return _on_white(rgb), rgb.shape[:2]


def _find(tmp_path, rgb, name="front.png"):
    sku = tmp_path / "sku"
    sku.mkdir(exist_ok=True)
    save_image(sku / name, rgb)
    product = load_product(sku, root=tmp_path)
    return ClassicSegmenter().find_subject(load_image(sku / name), product)


def test_person_photo_on_white_takes_the_person_path(tmp_path, hopper_on_white):
    rgb, (h, w) = hopper_on_white
    subject = _find(tmp_path, rgb)
    # The backdrop is plain: the old routing (border uniformity >= 0.85) sent this to the colour cutout.
    assert subject.metrics["background_uniformity"] >= 0.85
    assert subject.kind == "person" and subject.source == "mediapipe-person"
    route = subject.metrics["route"]
    assert route["person"] is True and route["face_score"] >= 0.8
    assert "fused_with_backdrop" in route and 0.0 <= route["fused_with_backdrop"]["agreement"] <= 1.0
    assert subject.pose is not None and subject.pose.found
    # The person's face is kept whole (no holes where it is as light as the backdrop).
    nose = subject.pose.keypoints[0]
    assert subject.alpha[int(nose[1]), int(nose[0])] >= 128
    # The evidence is exposed for quality flags and is JSON-ready, as is the manifest's metrics block.
    assert subject.evidence["route"]["person"] is True and "backdrop" in subject.evidence
    json.dumps(subject.metrics)


def test_astronaut_on_white_takes_the_person_path(tmp_path):
    from pipelines.samples import astronaut

    subject = _find(tmp_path, _on_white(astronaut()))
    assert subject.kind == "person"
    assert subject.metrics["route"]["person"] is True


@pytest.mark.parametrize("name", ["tee", "dress", "tote"])
def test_garment_photo_takes_the_product_path(tmp_path, drawn_products, name):
    rgb, truth = drawn_products[name]
    subject = _find(tmp_path, rgb)
    assert subject.kind == "product" and subject.source == "classic-cutout"
    assert subject.metrics["route"]["person"] is False
    assert "no person" in subject.reason
    assert subject.evidence["backdrop"]["uniformity"] > 0.95
    inter = np.logical_and(subject.alpha >= 128, truth > 0).sum()
    assert inter / np.logical_or(subject.alpha >= 128, truth > 0).sum() >= 0.98


def test_white_garment_on_white_takes_the_product_path(tmp_path):
    from tests.helpers.cutout_cases import HARD_CASES

    rgb, _ = HARD_CASES["white-shadow-on-white"]()
    subject = _find(tmp_path, rgb)
    assert subject.kind == "product"


def test_head_keypoints_without_face_or_limbs_are_no_person(monkeypatch):
    """The pose model puts a confident head on a flat-lay tee's collar; with no face and no limbs: product."""
    from pipelines.segmentation import route
    from pipelines.controls.pose import PoseResult

    class FakePose:
        def estimate(self, image):
            h, w = image.shape[:2]
            k = np.zeros((17, 3), np.float32)
            k[:5] = [w / 2, h / 2, 0.97]  # nose, eyes, ears on the garment
            k[5:7] = [w / 2, h / 2, 0.99]  # shoulders
            return PoseResult(width=w, height=h, keypoints=k), np.ones((h, w), np.float32)

    monkeypatch.setattr(route, "get_pose_estimator", lambda: FakePose())
    monkeypatch.setattr(route, "get_face_detector", lambda: (lambda image: []))
    rgb = np.full((64, 64, 3), 30, np.uint8)
    ev = route.route_subject(rgb)
    assert ev.head_keypoints == 5 and ev.limb_keypoints == 0 and not ev.person
    # the same head with a face, or with limbs, is a person
    monkeypatch.setattr(route, "get_face_detector", lambda: (lambda image: [(0.9, (32.0, 32.0))]))
    assert route.route_subject(rgb).person


def test_keypoints_on_the_backdrop_do_not_count(monkeypatch):
    from pipelines.segmentation import route
    from pipelines.controls.pose import PoseResult

    class FakePose:
        def estimate(self, image):
            h, w = image.shape[:2]
            k = np.zeros((17, 3), np.float32)
            k[:, :2] = [2, 2]  # every keypoint in the backdrop corner
            k[:, 2] = 0.95
            return PoseResult(width=w, height=h, keypoints=k), None

    monkeypatch.setattr(route, "get_pose_estimator", lambda: FakePose())
    monkeypatch.setattr(route, "get_face_detector", lambda: (lambda image: [(0.95, (2.0, 2.0))]))
    rgb = np.full((64, 64, 3), 250, np.uint8)
    fg = np.zeros((64, 64), np.uint8)
    fg[20:50, 20:50] = 255
    ev = route.route_subject(rgb, fg)
    assert ev.head_keypoints == 0 and ev.limb_keypoints == 0 and ev.face_score == 0.0 and not ev.person
    assert route.route_subject(rgb, None).person  # without a backdrop model every keypoint counts


def test_fusion_only_cuts_backdrop_from_the_person_band():
    from pipelines.segmentation.cutout import Cutout
    from pipelines.segmentation.route import fuse_person_with_backdrop

    person = np.zeros((200, 200), np.uint8)
    person[40:160, 60:140] = 255
    cut_alpha = np.zeros_like(person)
    cut_alpha[42:158, 62:138] = 255  # the backdrop model's edge lies 2 px inside the person mask
    cut = Cutout(alpha=cut_alpha, mask=cut_alpha, background_color=(250, 250, 250), background_uniformity=1.0,
                 bbox=(62, 42, 138, 158))
    fused, rec = fuse_person_with_backdrop(person, cut)
    assert (fused >= 128).sum() == (cut_alpha >= 128).sum()
    assert rec["band_px"] >= 2 and 0.9 < rec["agreement"] < 1.0
    # where the backdrop model misses the subject entirely (a white garment), the person mask holds
    fused2, _ = fuse_person_with_backdrop(person, Cutout(alpha=np.zeros_like(person), mask=np.zeros_like(person),
                                                         background_color=(250, 250, 250),
                                                         background_uniformity=1.0, bbox=(0, 0, 1, 1)))
    assert fused2[100, 100] == 255


def test_scene_without_a_person_still_says_nothing_found(tmp_path):
    from pipelines.errors import NothingFoundError

    rng = np.random.default_rng(0)
    scene = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    scene = np.asarray(Image.fromarray(scene).resize((256, 256)))
    with pytest.raises(NothingFoundError, match="not plain"):
        _find(tmp_path, scene)


def test_face_admits_the_selfie_mask_when_the_pose_model_finds_nobody(monkeypatch):
    from pipelines.segmentation import person
    from pipelines.segmentation.person import PersonSegmentation

    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1.0
    monkeypatch.setattr(person, "get_person_segmenter", lambda: (lambda rgb: PersonSegmentation(mask=mask)))
    engine = ClassicSegmenter()
    rgb = np.zeros((32, 32, 3), np.uint8)
    assert engine._person(rgb) == (None, None)  # no pose and no other evidence: nobody
    alpha, pose = engine._person(rgb, without_pose=True)
    assert pose is None and (alpha >= 128).sum() == 256

"""Try-on building blocks without models: garment placement from a pose, the worn-garment mask, the fidelity
score, and the weight-free ``warp`` method end to end with its guarantees."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.errors import InputError, VitrineError
from pipelines.tryon.fidelity import garment_fidelity
from pipelines.tryon.pipeline import TryOnParams, TryOnPipeline
from pipelines.tryon.anchors import garment_anchors
from pipelines.tryon.warp import GarmentTransform, apply_transform, place_garment, similarity
from pipelines.tryon.worn import pose_region_mask, worn_garment_mask
from tests.helpers.tryon import garment_photo, synthetic_person


@pytest.fixture(scope="module")
def person():
    return synthetic_person()


@pytest.fixture(scope="module")
def garment():
    return garment_photo(160)


def test_similarity_maps_the_two_anchor_points_exactly():
    m, s, ang = similarity(((10, 20), (50, 20)), ((100, 200), (100, 280)))
    for src, dst in (((10, 20), (100, 200)), ((50, 20), (100, 280))):
        np.testing.assert_allclose(m @ np.array([*src, 1.0]), dst, atol=1e-9)
    assert s == pytest.approx(2.0)
    assert ang == pytest.approx(90.0)
    with pytest.raises(InputError):
        similarity(((1, 1), (1, 1)), ((0, 0), (5, 5)))


def test_garment_anchors_measure_the_torso_not_the_sleeves(garment):
    _, mask = garment
    a = garment_anchors(mask, "upper")
    x0, _, x1, _ = a["bbox"]
    assert a["width"] < 0.8 * (x1 - x0)  # the tee's sleeves stick out beyond its torso
    assert a["left"][0] < a["right"][0] and a["left"][1] == a["right"][1]
    with pytest.raises(InputError, match="cannot be tried on"):
        garment_anchors(mask, "shoes")
    with pytest.raises(InputError, match="empty"):
        garment_anchors(np.zeros_like(mask), "upper")


def test_placement_follows_the_shoulders_and_is_reproducible_from_its_record(person, garment):
    rgb, alpha, pose, _ = person
    grgb, gmask = garment
    t = place_garment(gmask, (rgb.shape[1], rgb.shape[0]), "upper", pose=pose)
    # the garment's anchors land on the shoulders spread to the body's width, centred on the body axis
    m = np.asarray(t.matrix)
    if t.prescale_size != t.source_size:  # anchors are in full-size photo pixels
        sx, sy = t.prescale_size[0] / t.source_size[0], t.prescale_size[1] / t.source_size[1]
        m = m @ np.diag([sx, sy, 1.0])
    left = m @ np.array([*t.anchors["garment"]["left"], 1.0])
    right = m @ np.array([*t.anchors["garment"]["right"], 1.0])
    np.testing.assert_allclose(left, t.anchors["body"]["left"], atol=1e-6)
    np.testing.assert_allclose(right, t.anchors["body"]["right"], atol=1e-6)
    assert abs((left[0] + right[0]) / 2 - rgb.shape[1] / 2) < 1.0
    assert t.angle_deg == pytest.approx(0.0, abs=1e-6)  # level shoulders: no rotation
    # the JSON record rebuilds the same pixels
    again = GarmentTransform.from_json(t.to_json())
    assert np.array_equal(apply_transform(grgb, t), apply_transform(grgb, again))
    placed_alpha = apply_transform(gmask, t)
    assert placed_alpha.shape == alpha.shape and (placed_alpha == 255).any()


def test_large_downscale_prescales_with_area_averaging(garment):
    grgb, gmask = garment
    big = np.kron(gmask, np.ones((4, 4), np.uint8))
    _, alpha, pose, _ = synthetic_person()
    t = place_garment(big, (alpha.shape[1], alpha.shape[0]), "upper", pose=pose)
    assert t.scale < 0.75 and t.prescale_size != t.source_size
    assert (apply_transform(big, t) == 255).any()


def test_placement_without_shoulders_needs_a_worn_mask(person, garment):
    rgb, alpha, pose, shirt = person
    no_pose = type(pose).empty(pose.width, pose.height)
    with pytest.raises(InputError, match="masks/person.garment.png"):
        place_garment(garment[1], (rgb.shape[1], rgb.shape[0]), "upper", pose=no_pose)
    t = place_garment(garment[1], (rgb.shape[1], rgb.shape[0]), "upper", pose=no_pose, worn_mask=shirt)
    assert t.anchors["how"].startswith("worn-mask box")


def test_pose_region_covers_the_clothes_for_each_garment_type(person):
    rgb, alpha, pose, shirt = person
    h, w = alpha.shape
    upper = pose_region_mask(pose, (w, h), "upper")
    lower = pose_region_mask(pose, (w, h), "lower")
    dress = pose_region_mask(pose, (w, h), "dress")
    torso = shirt > 0
    assert (upper[torso] > 0).mean() > 0.8  # the shirt is covered
    assert upper[int(0.17 * h), w // 2] == 0  # not the face
    legs = (alpha > 0) & (np.arange(h)[:, None] > 0.7 * h)
    assert (lower[legs] > 0).mean() > 0.5 and (upper[legs] > 0).mean() < 0.1
    assert (dress > 0).sum() > (upper > 0).sum()
    mask, rec = worn_garment_mask(rgb, alpha, "upper", pose=pose)
    assert rec["source"] == "pose-region" and not (mask[alpha == 0] > 0).any()  # inside the person only


def test_worn_mask_override_and_segmenter_win(person):
    rgb, alpha, pose, shirt = person
    override = np.full(alpha.shape, 128, np.uint8)
    override[: alpha.shape[0] // 2] = 0  # exclude the upper half
    mask, rec = worn_garment_mask(rgb, alpha, "upper", pose=pose, override=override)
    assert rec["source"] == "pose-region+override" and not mask[: alpha.shape[0] // 2].any()
    mask, rec = worn_garment_mask(rgb, alpha, "upper", pose=pose, segmenter=lambda im, gt: shirt)
    assert rec["source"] == "segmenter" and np.array_equal(mask > 0, (shirt > 0) & (alpha >= 128))
    with pytest.raises(InputError, match="person.garment.png"):
        worn_garment_mask(rgb, alpha, "upper", pose=type(pose).empty(pose.width, pose.height))


def test_fidelity_is_perfect_for_identical_pixels_and_drops_for_a_colour_shift(garment):
    rgb, mask = garment
    same = garment_fidelity(rgb, rgb, mask)
    assert same["ssim"] == pytest.approx(1.0) and same["delta_e00_mean"] == 0 and same["identical_fraction"] == 1.0
    shifted = rgb.copy()
    shifted[mask > 0] = np.clip(shifted[mask > 0].astype(int) + [40, 0, 0], 0, 255).astype(np.uint8)
    worse = garment_fidelity(rgb, shifted, mask)
    assert worse["delta_e00_mean"] > 5 and worse["ssim"] < 1.0
    assert garment_fidelity(rgb, rgb, np.zeros_like(mask))["ssim"] is None
    with pytest.raises(InputError, match="output"):
        garment_fidelity(rgb, rgb[:10], mask)


def test_warp_method_end_to_end_keeps_the_person_and_the_garment_pixels(person, garment):
    rgb, alpha, pose, shirt = person
    grgb, gmask = garment
    worn, _ = worn_garment_mask(rgb, alpha, "upper", pose=pose)
    out = TryOnPipeline()(rgb, alpha, grgb, gmask, worn_mask=worn, pose=pose, method="warp",
                          params=TryOnParams())
    assert out.final.shape == rgb.shape and out.final.dtype == np.uint8
    # outside the region: the person photo, bit for bit
    assert np.array_equal(out.final[out.region == 0], rgb[out.region == 0])
    # inside the eroded mask of the placed garment: the garment photo's pixels through the transform
    keep = out.preserve > 0
    assert keep.sum() > 500
    assert np.array_equal(out.final[keep], apply_transform(grgb, out.transform, alpha=gmask)[keep])
    # the old green shirt is gone where the garment does not cover it (inpainted)
    green = (out.final[..., 1] > 140) & (out.final[..., 0] < 60)
    assert green.sum() < 0.1 * (shirt > 0).sum()
    rec = out.record
    # (the seam band inside the garment's edges, longer with the body warp's cut-outs, lowers SSIM a little)
    assert rec["method"] == "warp" and rec["fidelity"]["ssim"] > 0.85 and rec["model_fidelity"] is None
    assert rec["fidelity"]["pixels"] == int((out.placed_alpha >= 128).sum())


def test_try_on_input_errors_name_the_key(person, garment):
    rgb, alpha, pose, shirt = person
    grgb, gmask = garment
    pipe = TryOnPipeline()
    with pytest.raises(InputError, match="person"):
        pipe(rgb.astype(np.float32), alpha, grgb, gmask, worn_mask=shirt, pose=pose)
    with pytest.raises(InputError, match="needs its model") as err:
        pipe(rgb, alpha, grgb, gmask, worn_mask=shirt, pose=pose, method="fill")
    assert err.value.key == "tryon.method"
    with pytest.raises(InputError, match="unknown try-on method"):
        pipe(rgb, alpha, grgb, gmask, worn_mask=shirt, pose=pose, method="magic")
    with pytest.raises(InputError, match="seam_inner_px"):
        TryOnParams(erode_px=1, seam_inner_px=3)
    with pytest.raises(InputError, match="garment_pixels"):
        TryOnParams(garment_pixels="hallucinated")


def test_guarantee_violation_is_refused(person, garment, monkeypatch):
    """A broken composite (simulated) never passes silently."""
    import pipelines.tryon.pipeline as tp

    rgb, alpha, pose, shirt = person
    monkeypatch.setattr(tp, "inpaint_seam", lambda comp, *a, **k: np.zeros_like(comp))
    with pytest.raises(VitrineError, match="outside its region|preserve mask"):
        TryOnPipeline()(rgb, alpha, *garment, worn_mask=shirt, pose=pose, method="warp")

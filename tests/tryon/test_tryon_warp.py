"""The classic try-on's body warp (`pipelines.tryon.bodywarp`): a thin-plate spline from garment landmarks to
the pose, arms and head in front of the garment, the back-neck label hidden, the old clothes covered; and its
record reproduces the garment as placed pixel for pixel."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipelines.tryon.bodywarp import garment_landmarks, tps_backward_map, tps_eval, tps_fit
from pipelines.tryon.pipeline import TryOnParams, TryOnPipeline
from pipelines.tryon.warp import GarmentTransform, apply_transform, body_anchors
from pipelines.tryon.worn import worn_garment_mask
from tests.helpers.tryon_warp import LABEL, SHIRT, person_with_arms, tee_with_label


@pytest.fixture(scope="module")
def scene():
    rgb, alpha, pose, shirt, forearm = person_with_arms()
    grgb, gmask, label = tee_with_label()
    worn, _ = worn_garment_mask(rgb, alpha, "upper", pose=pose)
    pipe = TryOnPipeline()
    body = pipe(rgb, alpha, grgb, gmask, worn_mask=worn, pose=pose, method="warp")
    rigid = pipe(rgb, alpha, grgb, gmask, worn_mask=worn, pose=pose, method="warp",
                 params=TryOnParams(body_warp=False))
    return {"rgb": rgb, "alpha": alpha, "pose": pose, "shirt": shirt, "forearm": forearm, "grgb": grgb,
            "gmask": gmask, "label": label, "worn": worn, "body": body, "rigid": rigid}


def _kp(pose, name):
    from pipelines.controls.pose import COCO17_NAMES

    return pose.keypoints[COCO17_NAMES.index(name)][:2].astype(np.float64)


def test_tps_interpolates_its_points_and_reproduces_an_affine_map():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 1, (12, 2))
    dst = src + rng.normal(0, 0.05, src.shape)
    coef = tps_fit(src, dst, reg=0.0)
    np.testing.assert_allclose(tps_eval(src, coef, src), dst, atol=1e-9)
    a = np.array([[1.2, 0.1], [-0.2, 0.9]])
    coef = tps_fit(src, src @ a.T + [0.3, -0.1], reg=0.0)
    pts = rng.uniform(0, 1, (50, 2))
    np.testing.assert_allclose(tps_eval(src, coef, pts), pts @ a.T + [0.3, -0.1], atol=1e-9)
    # the lattice map agrees with the spline at the lattice points and is smooth between them
    body = np.array([[10, 10], [90, 12], [50, 80], [20, 70], [80, 60]], np.float64)
    garment = body * 1.5 + [3, 4]
    mx, my = tps_backward_map(body, garment, (100, 90))
    assert mx.shape == (90, 100)
    np.testing.assert_allclose(mx[40, 48], 48 * 1.5 + 3, atol=1e-3)
    np.testing.assert_allclose(my[40, 48], 40 * 1.5 + 4, atol=1e-3)


def test_landmarks_find_the_sleeves_armpits_collar_and_trouser_legs():
    _, gmask, _ = tee_with_label()
    m = garment_landmarks(gmask, "upper")
    p = m["points"]
    tl, tr = m["torso"]
    assert set(m["limbs"]) == {"left", "right"}
    assert p["sleeve_left_centre"][0] < tl and p["sleeve_right_centre"][0] > tr  # cuffs beside the torso
    assert p["armpit_left"][1] > p["shoulder_left"][1] and p["collar"][1] < p["shoulder_left"][1]
    # the flat tee's sleeves point down and out: their cuffs are below and outside the shoulder line
    assert p["sleeve_left_centre"][1] > p["shoulder_left"][1]
    # trousers: two legs, each with its hem below the waist
    trousers = np.zeros((300, 240), np.uint8)
    cv2.fillPoly(trousers, [np.array([(70, 20), (170, 20), (175, 60), (215, 280), (150, 280), (120, 110),
                                      (90, 280), (25, 280), (65, 60)], np.int32)], 255)
    t = garment_landmarks(trousers, "lower")
    assert set(t["limbs"]) == {"left", "right"}
    assert t["points"]["leg_left_centre"][1] > 250 and t["points"]["leg_left_centre"][0] < 90
    assert t["points"]["leg_right_centre"][0] > 150


def test_the_warped_garments_shoulders_land_at_the_pose_shoulders(scene):
    t = scene["body"].transform
    assert t.warp is not None and t.warp["kind"] == "thin-plate-spline"
    cps = {c["name"]: c for c in t.warp["control_points"]}
    mx, my = tps_backward_map(np.array([c["body"] for c in cps.values()]),
                              np.array([c["garment"] for c in cps.values()]), t.canvas_size)
    ba = body_anchors(scene["pose"], "upper")
    ls, rs = _kp(scene["pose"], "left_shoulder"), _kp(scene["pose"], "right_shoulder")
    for side, body_pt in (("left", ba["left"]), ("right", ba["right"])):
        g = cps[f"shoulder_{side}"]
        assert np.allclose(g["body"], body_pt, atol=1e-3)
        x, y = (int(round(v)) for v in body_pt)
        # the canvas pixel at the body anchor samples the garment's shoulder landmark
        assert abs(mx[y, x] - g["garment"][0]) < 1.5 and abs(my[y, x] - g["garment"][1]) < 1.5
    # the body anchors are the shoulders spread about their midpoint to the body's width
    assert np.allclose((np.array(ba["left"]) + ba["right"]) / 2, (ls + rs) / 2)
    # and the garment covers both shoulder keypoints
    for p in (ls, rs):
        assert scene["body"].placed_alpha[int(p[1]), int(p[0])] == 255


def _coverage_along(alpha, a, b, fracs):
    pts = [a + (b - a) * f for f in fracs]
    return float(np.mean([alpha[int(round(p[1])), int(round(p[0]))] >= 128 for p in pts]))


def test_sleeves_follow_the_arms(scene):
    pose = scene["pose"]
    t = scene["body"].transform
    limbs = t.warp["limbs"]
    assert all(abs(limbs[s]["turn_deg"]) > 20 for s in ("left", "right"))  # the flat sleeves stick out
    cps = {c["name"]: c for c in t.warp["control_points"]}
    m = np.asarray(t.matrix)
    for sleeve, arm in (("left", "right"), ("right", "left")):  # image-left sleeve, the person's right arm
        sh, el = _kp(pose, f"{arm}_shoulder"), _kp(pose, f"{arm}_elbow")
        d = el - sh

        def off_arm(c):
            return abs(d[0] * (c[1] - sh[1]) - d[1] * (c[0] - sh[0])) / np.linalg.norm(d)

        bent = np.array(cps[f"sleeve_{sleeve}_centre"]["body"])
        rigid = m[:, :2] @ np.array(cps[f"sleeve_{sleeve}_centre"]["garment"]) + m[:, 2]
        assert off_arm(bent) < 0.25 * np.linalg.norm(d)  # the cuff lies on the arm
        assert off_arm(bent) < 0.5 * off_arm(rigid)  # where the rigid paste left it far off
    # the hanging arm's lower upper arm is inside the bent sleeve, not inside the rigid one
    sh, el = _kp(pose, "right_shoulder"), _kp(pose, "right_elbow")
    assert _coverage_along(scene["body"].placed_alpha, sh, el, [0.75, 0.8]) == 1.0
    assert _coverage_along(scene["rigid"].placed_alpha, sh, el, [0.75, 0.8]) == 0.0


def test_the_old_garment_is_covered_where_the_new_one_does_not_reach(scene):
    shirt = scene["shirt"] > 0
    green = np.all(np.abs(scene["body"].final.astype(int) - SHIRT) < 40, axis=2) & (scene["alpha"] > 0)
    assert green.sum() <= 0.01 * shirt.sum()
    assert np.all(np.abs(scene["rgb"].astype(int) - SHIRT) < 40, axis=2)[shirt].all()  # it was green before


def test_forearm_in_front_stays_the_persons_pixels(scene):
    fa = cv2.erode(scene["forearm"], np.ones((5, 5), np.uint8)) > 0
    el, wr = _kp(scene["pose"], "left_elbow"), _kp(scene["pose"], "left_wrist")
    ys, xs = np.mgrid[: fa.shape[0], : fa.shape[1]]
    along = ((xs - el[0]) * (wr - el)[0] + (ys - el[1]) * (wr - el)[1]) / float((wr - el) @ (wr - el))
    fa &= along > 0.3  # the forearm past the sleeve's reach (the bent sleeve may cover the elbow)
    assert fa.sum() > 200
    assert np.array_equal(scene["body"].final[fa], scene["rgb"][fa])
    assert (scene["body"].placed_alpha[fa] == 0).all() and (scene["body"].band[fa] == 0).all()
    # the rigid paste hid it behind the garment
    assert np.mean(np.any(scene["rigid"].final[fa] != scene["rgb"][fa], axis=1)) > 0.5
    rec = scene["body"].record["method_details"]["in_front"]
    assert rec["pixels"] > 0 and rec["garment_pixels_hidden"] > 0


def test_the_back_neck_label_is_not_pasted(scene):
    t = scene["body"].transform
    lab = apply_transform(scene["label"], t) >= 128  # where the label would land
    assert lab.sum() > 20
    assert (scene["body"].placed_alpha[lab] == 0).all()
    white = np.all(scene["body"].final >= np.array(LABEL) - 10, axis=2)
    assert white.sum() == 0
    assert np.all(scene["rigid"].final >= np.array(LABEL) - 10, axis=2).sum() > 20  # the rigid paste shows it
    rec = scene["body"].record["method_details"]["back_neck"]
    assert rec["hidden_pixels"] > 0 and rec["why"].startswith("back panel")
    # a mask with its neckline cut out shows no back panel: nothing is hidden
    from pipelines.samples import draw_tee
    from pipelines.tryon.bodywarp import back_neck_region

    _, notched = draw_tee(320)
    region, r = back_neck_region(notched, "upper", garment_landmarks(notched, "upper"))
    assert not region.any() and "notch" in r["why"]


def test_the_record_rebuilds_the_garment_as_placed_and_the_output_is_a_preview(scene):
    out = scene["body"]
    rec = json.loads(json.dumps(out.transform.to_json()))  # as stored in the manifest
    again = GarmentTransform.from_json(rec)
    placed = apply_transform(scene["grgb"], again, alpha=scene["gmask"])
    assert np.array_equal(placed, out.placed)
    keep = out.preserve > 0
    assert keep.sum() > 2000 and np.array_equal(out.final[keep], placed[keep])
    assert np.array_equal(out.final[out.region == 0], scene["rgb"][out.region == 0])
    assert out.record["quality"] == "preview" and rec["library"].startswith("cv2.remap")
    assert out.record["fidelity"]["identical_fraction"] > 0.8  # all but the 3 px edge of a small garment
    # the rigid paste is still there, recorded as before (no warp key)
    assert "warp" not in scene["rigid"].transform.to_json() and scene["rigid"].record["quality"] == "preview"
    bad = dict(rec, warp={"kind": "thin-plate-spline", "control_points": rec["warp"]["control_points"][:2]})
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="at least 3 control points"):
        GarmentTransform.from_json(bad)


def test_worn_mask_grows_over_the_persons_own_long_sleeves():
    rgb, alpha, pose, shirt, forearm = person_with_arms()
    sleeves = np.zeros_like(shirt)
    from pipelines.controls.pose import COCO17_NAMES

    p = {n: tuple(int(v) for v in pose.keypoints[COCO17_NAMES.index(n)][:2]) for n in COCO17_NAMES}
    cv2.line(sleeves, p["right_shoulder"], p["right_elbow"], 255, 18)
    cv2.line(sleeves, p["right_elbow"], p["right_wrist"], 255, 18)
    sleeves &= alpha
    long_rgb = rgb.copy()
    long_rgb[sleeves > 0] = SHIRT
    cloth = (sleeves > 0) | (shirt > 0)
    plain, _ = worn_garment_mask(rgb, alpha, "upper", pose=pose)
    mask, rec = worn_garment_mask(long_rgb, alpha, "upper", pose=pose)
    assert rec["colour_extended_pixels"] > 0
    assert (mask[cloth] > 0).mean() > 0.97  # the whole long sleeve, not just the drawn short one
    assert ((mask > 0) & ~cloth & (plain == 0)).sum() < 0.02 * cloth.sum()  # and nothing else


@pytest.mark.parametrize("garment_type", ["upper", "outerwear", "dress", "lower"])
def test_every_garment_type_and_shape_keeps_the_guarantees(garment_type):
    from pipelines.samples import draw_dress

    rgb, alpha, pose, shirt, _ = person_with_arms()
    shapes = {"rect": np.zeros((200, 160), np.uint8), "dress": draw_dress(200)[1]}
    shapes["rect"][20:180, 30:130] = 255
    trousers = np.zeros((300, 240), np.uint8)
    cv2.fillPoly(trousers, [np.array([(70, 20), (170, 20), (175, 60), (215, 280), (150, 280), (120, 110),
                                      (90, 280), (25, 280), (65, 60)], np.int32)], 255)
    shapes["trousers"] = trousers
    worn, _ = worn_garment_mask(rgb, alpha, garment_type, pose=pose)
    for name, gmask in shapes.items():
        grgb = np.dstack([gmask // 2, np.full_like(gmask, 90), 255 - gmask // 3])
        out = TryOnPipeline()(rgb, alpha, grgb, gmask, worn_mask=worn, pose=pose, method="warp",
                              garment_type=garment_type)
        keep = out.preserve > 0
        assert keep.any(), name
        placed = apply_transform(grgb, GarmentTransform.from_json(out.transform.to_json()), alpha=gmask)
        assert np.array_equal(out.final[keep], placed[keep]), name
        assert np.array_equal(out.final[out.region == 0], rgb[out.region == 0]), name
        if name == "trousers" and garment_type == "lower":
            assert set(out.transform.warp["zones"]) == {"left", "right"}

"""Quality flags catch deliberately broken outputs, and leave good ones alone (issue 12, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.quality import flags as qf
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.engines.classic import classic_engine
from pipelines.segmentation.classic import ClassicSegmenter
from pipelines.segmentation.subject import Subject
from pipelines.errors import InputError
from pipelines.imageio import save_image
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.product import load_product
from pipelines.samples import draw_tee

SMALL = RenderOptions(canvas=400, lifestyle_size=(320, 400))  # 512 px inputs are not enlarged


def _names(rec: dict) -> list[str]:
    return [f["flag"] for f in rec["flags"]]


@pytest.fixture(scope="module")
def white_tee():
    return draw_tee(512, color=(242, 240, 236))


# -- cutout sanity ---------------------------------------------------------------------------------


def test_white_tee_that_lost_its_body_is_flagged(white_tee):
    img, mask = white_tee
    body_lost = np.zeros_like(mask)
    body_lost[150:310, 180:320] = 255  # the print and a bit around it: what a failed white-on-white cutout keeps
    body_lost &= mask
    rec = qf.cutout_sanity(img, body_lost, "product")
    assert rec["reference"] == "backdrop-model"
    assert "cutout-lost-area" in _names(rec) and rec["kept"] < 0.4


def test_exact_white_tee_cutout_is_not_flagged(white_tee):
    img, mask = white_tee
    rec = qf.cutout_sanity(img, mask, "product")
    assert rec["flags"] == [] and rec["iou"] > 0.97


def test_backdrop_kept_as_product_is_flagged(drawn_products):
    img, mask = drawn_products["tee"]
    grown = cv2.dilate(mask, np.ones((61, 61), np.uint8))
    assert "cutout-extra-area" in _names(qf.cutout_sanity(img, grown, "product"))


def test_tote_handle_opening_is_not_a_hole(drawn_products):
    img, mask = drawn_products["tote"]  # the exact mask has the handle's opening as background
    assert qf.cutout_sanity(img, mask, "product")["flags"] == []


@pytest.fixture(scope="module")
def astronaut_person(astronaut_rgb):
    """The astronaut photo, the mediapipe selfie mask of it (at analysis size) and the nose keypoint."""
    from pipelines.controls.pose import get_pose_estimator

    ref = qf.person_mask(astronaut_rgb)
    pose = get_pose_estimator()(astronaut_rgb)
    assert ref is not None and pose.found
    return astronaut_rgb, ref, pose.keypoints


def test_an_undecided_person_mask_is_flagged_and_a_decided_one_is_not(astronaut_person):
    img, ref, _ = astronaut_person
    crisp = cv2.resize(ref, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    rec = qf.cutout_sanity(img, crisp, "person")
    assert "cutout-uncertain" not in _names(rec) and rec["uncertain"] == 0.0
    # A mask that is half-sure everywhere (two models disagreeing): alpha ~0.5 over a ring as wide as the body.
    undecided = cv2.GaussianBlur(crisp, (0, 0), 25)
    rec = qf.cutout_sanity(img, undecided, "person")
    assert rec["uncertain"] > qf.DEFAULT_THRESHOLDS.max_uncertain and "cutout-uncertain" in _names(rec)
    assert "cutout-uncertain" not in _names(qf.cutout_sanity(img, undecided, "product"))  # people only
    assert qf.alpha_uncertainty(np.zeros((8, 8), np.uint8)) == 0.0


@pytest.mark.parametrize(("photo", "flagged"), [("astronaut", True), ("grace_hopper", False)])
def test_the_engines_person_cutout_of_a_busy_photo_is_flagged(photo, flagged, tmp_path):
    """The demo's astronaut (a person before a cluttered backdrop): the classic cutout smears her arm and the
    helmet she holds into the background, which no second-opinion check caught; Grace Hopper's is clean."""
    from types import SimpleNamespace

    from pipelines import samples
    from pipelines.imageio import load_image
    from pipelines.product import ProductSpec

    save_image(tmp_path / f"{photo}.png", getattr(samples, photo)())
    img = load_image(tmp_path / f"{photo}.png")
    subject = classic_engine().find_subject(img, SimpleNamespace(spec=ProductSpec(), dir=tmp_path, sku=photo))
    assert subject.kind == "person"
    rec = qf.cutout_sanity(img.rgb, subject.alpha, subject.kind)
    assert ("cutout-uncertain" in _names(rec)) is flagged, rec


def test_holes_in_a_face_are_flagged(astronaut_person):
    img, ref, kp = astronaut_person
    alpha = cv2.resize(ref, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    assert qf.cutout_sanity(img, alpha, "person")["flags"] == []  # the second opinion agrees with itself
    nose = tuple(int(v) for v in kp[0, :2])
    holed = alpha.copy()
    cv2.circle(holed, nose, 18, 0, -1)  # a hole where the face is
    rec = qf.cutout_sanity(img, holed, "person")
    assert rec["reference"] == "mediapipe-selfie" and "cutout-holes" in _names(rec)


def test_an_analysts_override_mask_is_not_second_guessed(tmp_path, white_tee):
    from PIL import Image

    img, mask = white_tee
    d = _product(tmp_path / "p", "tee", img, "backgrounds: [white]\nmasks: {product: masks/product.png}\n")
    painted = np.zeros_like(mask)
    painted[150:310, 180:320] = 255  # the analyst keeps only the print, on purpose
    (d / "masks").mkdir()
    Image.fromarray(painted).save(d / "masks" / "product.png")
    assert process_sku(load_product(d), tmp_path / "c", classic_engine(), SMALL).status == "ok"
    m = read_manifest(tmp_path / "c" / "tee" / "manifest.json")
    assert m["subjects"][0]["source"].endswith("+override")
    assert m["subjects"][0]["quality"]["cutout"]["reference"] == "none"
    main = next(o for o in m["outputs"] if o["file"] == "main.png")
    assert not [f for f in main["quality"]["flags"] if f["flag"].startswith("cutout-")]


# -- halo ------------------------------------------------------------------------------------------


def _disc_output(ring_value: int | None) -> tuple[np.ndarray, np.ndarray]:
    out = np.full((600, 600, 3), 110, np.uint8)  # a mid-grey studio background
    alpha = np.zeros((600, 600), np.uint8)
    cv2.circle(alpha, (300, 300), 200, 255, -1)
    out[alpha > 0] = (40, 60, 90)  # a dark product
    if ring_value is not None:  # the old white backdrop left along the edge
        ring = (alpha > 0) & (cv2.erode(alpha, np.ones((5, 5), np.uint8)) == 0)
        out[ring] = ring_value
    return out, alpha


def test_white_halo_on_a_darker_background_is_flagged():
    out, alpha = _disc_output(250)
    rec = qf.halo_score(out, alpha)
    assert "halo" in _names(rec) and rec["bright"] > 0.5


def test_halo_counts_only_fringes_that_lean_toward_the_old_backdrop():
    out, alpha = _disc_output(250)
    assert "halo" in _names(qf.halo_score(out, alpha, backdrop_l=98.0))  # white fringe from a white backdrop
    dark_edge, alpha = _disc_output(None)
    dark_edge[:] = 255  # a light garment with a darker rolled edge, on white
    dark_edge[alpha > 0] = 200
    ring = (alpha > 0) & (cv2.erode(alpha, np.ones((5, 5), np.uint8)) == 0)
    dark_edge[ring] = 120
    assert "halo" in _names(qf.halo_score(dark_edge, alpha))  # darker than both sides...
    assert qf.halo_score(dark_edge, alpha, backdrop_l=98.0)["flags"] == []  # ...but not old-backdrop coloured


def test_clean_edge_has_no_halo():
    out, alpha = _disc_output(None)
    rec = qf.halo_score(out, alpha)
    assert rec["flags"] == [] and rec["bright"] == 0.0 and rec["dark"] == 0.0


# -- upscale ---------------------------------------------------------------------------------------


def _product(root: Path, sku: str, rgb: np.ndarray, spec: str = "backgrounds: [white, studio]\n") -> Path:
    d = root / sku
    d.mkdir(parents=True)
    save_image(d / "front.png", rgb)
    (d / "product.yaml").write_text(spec)
    return d


def test_tiny_input_is_refused_naming_the_file_and_its_size(tmp_path):
    img, _ = draw_tee(256)
    tiny = cv2.resize(img, (192, 256), interpolation=cv2.INTER_AREA)
    d = _product(tmp_path / "p", "tiny", tiny)
    r = process_sku(load_product(d), tmp_path / "c", classic_engine())
    assert r.status == "failed"
    assert str(d / "front.png") in r.error and "192x256" in r.error and "max_upscale" in r.error
    assert not (tmp_path / "c" / "tiny").exists()  # nothing half-written
    # With the limit raised it renders, and every enlarged output is flagged.
    r = process_sku(load_product(d), tmp_path / "c", classic_engine(), RenderOptions(max_upscale=20))
    assert r.status == "ok", r.error
    m = read_manifest(tmp_path / "c" / "tiny" / "manifest.json")
    placed = [o for o in m["outputs"] if "placement" in o]
    assert placed and all("upscaled" in [f["flag"] for f in o["quality"]["flags"]] for o in placed)


def test_upscale_check_thresholds():
    assert qf.upscale_check(1.9)["flags"] == []
    assert _names(qf.upscale_check(2.5)) == ["upscaled"]
    with pytest.raises(InputError, match=r"100x80 photo 5\.0x"):
        qf.refuse_upscale(5.0, 4.0, path="x.jpg", source_size=(100, 80), output="main.png", size=(500, 500))


# -- floor shadow ----------------------------------------------------------------------------------


def _torso_alpha(h: int = 512, w: int = 512, bottom: int = 505) -> np.ndarray:
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (256, 120), (45, 55), 0, 0, 360, 255, -1)  # head
    cv2.rectangle(alpha, (150, 175), (362, bottom), 255, -1)  # a torso cut at the waist
    return alpha


def _pose(ankles: bool) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[0] = (256, 110, 0.9)
    kp[5], kp[6] = (180, 190, 0.9), (330, 190, 0.9)  # shoulders
    kp[11], kp[12] = (200, 480, 0.8), (310, 480, 0.8)  # hips
    if ankles:
        kp[15], kp[16] = (210, 500, 0.9), (300, 500, 0.9)
    return kp


def test_waist_cropped_torso_does_not_stand_on_the_floor():
    torso = _torso_alpha(bottom=495)  # stops 16 px above the frame: not "touching" the bottom
    rec = qf.floor_contact(torso, "person", _pose(ankles=False))
    assert rec["stands"] is False and "ankle" in rec["reason"]
    assert qf.floor_contact(_torso_alpha(bottom=511), "product")["stands"] is False  # cut by the frame
    assert qf.floor_contact(torso, "person", _pose(ankles=True))["stands"] is True
    assert qf.floor_contact(torso, "product")["stands"] is True


def test_floor_shadow_under_a_waist_cropped_torso_is_flagged():
    from pipelines.compositing.composite import alpha_composite, fit_placement, render_layer

    torso = _torso_alpha(bottom=495)
    engine = classic_engine()
    placement = fit_placement((150, 65, 363, 496), (400, 500), fill=0.78, anchor="floor", margin_bottom=0.07)
    alpha = render_layer(torso, placement, mode="L")
    fg = np.zeros((500, 400, 3), np.uint8)
    fg[alpha > 0] = (90, 60, 40)
    floor = qf.floor_contact(torso, "person", _pose(ankles=False))
    with_shadow = alpha_composite(engine.background("studio", (400, 500), 0, alpha, contact_shadow=True), fg, alpha)
    rec = qf.shadow_check(with_shadow, alpha, floor)
    assert rec["shadow"] is True and _names(rec) == ["shadow-without-floor"]
    without = alpha_composite(engine.background("studio", (400, 500), 0, alpha, contact_shadow=False), fg, alpha)
    assert qf.shadow_check(without, alpha, floor)["flags"] == []


class _TorsoSegmenter(ClassicSegmenter):
    """A classic segmenter that finds a person cropped at the waist (no ankles) in every photo."""

    def find_subject(self, image, product):
        from pipelines.controls.pose import PoseResult

        alpha = _torso_alpha(*image.rgb.shape[:2], bottom=495)
        pose = PoseResult(width=image.rgb.shape[1], height=image.rgb.shape[0], keypoints=_pose(ankles=False))
        return Subject(kind="person", source="test-torso", alpha=alpha, bbox=(150, 65, 363, 496),
                       reason="test", pose=pose)


def test_catalog_draws_no_floor_shadow_under_a_waist_cropped_torso(tmp_path, astronaut_rgb):
    d = _product(tmp_path / "p", "torso", astronaut_rgb)
    r = process_sku(load_product(d), tmp_path / "c", classic_engine(segmenter=_TorsoSegmenter()), SMALL)
    assert r.status == "ok", r.error
    m = read_manifest(tmp_path / "c" / "torso" / "manifest.json")
    life = next(o for o in m["outputs"] if o["kind"] == "lifestyle")
    shadow = life["quality"]["checks"]["shadow"]
    assert shadow["stands"] is False and shadow["shadow"] is False
    assert "shadow-without-floor" not in [f["flag"] for f in life["quality"]["flags"]]


# -- fill ------------------------------------------------------------------------------------------


def test_fill_outside_the_allowed_range_is_flagged():
    assert qf.fill_check(0.85, (0.80, 0.90), "requested")["flags"] == []
    assert _names(qf.fill_check(0.40, (0.80, 0.90), "requested")) == ["fill-out-of-range"]
    assert _names(qf.fill_check(0.99, (0.85, 0.95), "x")) == ["fill-out-of-range"]


# -- end to end: needs-attention, verify --strict, ordering ----------------------------------------


class _BodyLostSegmenter(ClassicSegmenter):
    """A classic segmenter whose cutout keeps only the print of the tee (the white-on-white failure)."""

    def find_subject(self, image, product):
        subject = super().find_subject(image, product)
        alpha = np.zeros_like(subject.alpha)
        alpha[150:310, 180:320] = 255  # inside the tee's body
        ys, xs = np.nonzero(alpha >= 128)
        return Subject(kind="product", source="test-broken", alpha=alpha,
                       bbox=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), reason="test")


@pytest.fixture(scope="module")
def flagged_catalog(tmp_path_factory, drawn_products, white_tee):
    root = tmp_path_factory.mktemp("flags")
    products, catalog = root / "p", root / "c"
    good = _product(products, "a-good", drawn_products["tee"][0])
    bad = _product(products, "b-broken", white_tee[0])
    assert process_sku(load_product(good), catalog, classic_engine(), SMALL).status == "ok"
    r = process_sku(load_product(bad), catalog, classic_engine(segmenter=_BodyLostSegmenter()), RenderOptions(canvas=400, lifestyle_size=(320, 400),
                                                                                   max_upscale=20))
    assert r.status == "ok", r.error
    return catalog


def test_good_outputs_are_not_flagged(flagged_catalog):
    m = read_manifest(flagged_catalog / "a-good" / "manifest.json")
    assert m["quality"]["flagged_outputs"] == []
    assert all(o["review"]["status"] == "pending" for o in m["outputs"])
    assert m["review"]["status"] == "pending"


def test_broken_outputs_need_attention(flagged_catalog):
    m = read_manifest(flagged_catalog / "b-broken" / "manifest.json")
    validate_manifest(m)
    by_file = {o["file"]: o for o in m["outputs"]}
    assert set(m["quality"]["flagged_outputs"]) == {"main.png", "lifestyle-studio-s0.png"}
    main = by_file["main.png"]
    assert "cutout-lost-area" in [f["flag"] for f in main["quality"]["flags"]]
    assert main["review"]["status"] == "needs-attention" and by_file["main.jpg"]["review"]["status"] == "needs-attention"
    assert m["review"]["status"] == "needs-attention"
    assert m["subjects"][0]["quality"]["cutout_flags"] == ["cutout-lost-area"]


def test_verify_strict_fails_on_flagged_outputs_until_approved(flagged_catalog, capsys):
    from flows.cli import main
    from pipelines.catalog.review import record_decision

    assert main(["verify", str(flagged_catalog)]) == 0  # pixels preserved: plain verify still passes
    capsys.readouterr()
    assert main(["verify", "--strict", str(flagged_catalog)]) != 0
    out = capsys.readouterr().out
    assert "b-broken\tFLAGGED\tmain.png: cutout-lost-area" in out and "a-good\tFLAGGED" not in out
    # A reviewer who approves the flagged outputs accepts them; reset brings the flag back.
    for f in ("main.png", "lifestyle-studio-s0.png"):
        record_decision(flagged_catalog, "b-broken", f, "approve")
    assert main(["verify", "--strict", str(flagged_catalog)]) == 0
    d = record_decision(flagged_catalog, "b-broken", "main.png", "reset")
    assert d.status == "needs-attention"
    assert main(["verify", "--strict", str(flagged_catalog)]) != 0
    record_decision(flagged_catalog, "b-broken", "main.png", "approve")


def test_review_page_and_contact_sheet_list_flagged_first(flagged_catalog):
    from pipelines.catalog.review import attention_first, record_decision
    from pipelines.review_ui.page import load_entries, order_entries, render_page, server_links

    for f in ("main.png", "lifestyle-studio-s0.png"):  # undo any approval: flagged outputs need attention again
        record_decision(flagged_catalog, "b-broken", f, "reset")
    m_path = flagged_catalog / "b-broken" / "manifest.json"
    entries = order_entries(load_entries(flagged_catalog))
    assert [e[0] for e in entries] == ["b-broken", "a-good"]
    html = render_page(flagged_catalog, server_links(), interactive=False)
    assert html.index(">b-broken") < html.index(">a-good")
    outputs = read_manifest(m_path)["outputs"]
    ordered = attention_first(outputs, lambda o: [o])
    assert ordered[0]["review"]["status"] == "needs-attention"


def test_contact_sheet_puts_flagged_skus_first(flagged_catalog, monkeypatch):
    from pipelines.catalog import contact_sheet as cs
    seen = []
    real = cs.contact_sheet

    def spy(rows, *, row_labels=None, **kw):
        seen.extend(label.split("\n")[0] for label in row_labels if label)
        return real(rows, row_labels=row_labels, **kw)

    monkeypatch.setattr(cs, "contact_sheet", spy)
    cs.catalog_contact_sheets(flagged_catalog, ["a-good", "b-broken"], cell_size=64)
    assert seen == ["b-broken", "a-good"]


def test_flags_are_documented_in_the_manifest_schema():
    schema = json.loads((Path(qf.__file__).parents[1] / "schemas" / "manifest.schema.json").read_text())
    assert "needs-attention" in schema["$defs"]["review"]["properties"]["status"]["enum"]

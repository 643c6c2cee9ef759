import numpy as np
import pytest

from pipelines.segmentation.cutout import cutout_product, estimate_background
from pipelines.errors import InputError, NothingFoundError
from pipelines.quality.checks import iou


@pytest.mark.parametrize("name", ["tee", "tote", "dress"])
def test_cutout_recovers_drawn_product_mask(drawn_products, name):
    rgb, truth = drawn_products[name]
    cut = cutout_product(rgb)
    assert cut.mask.shape == truth.shape and cut.mask.dtype == np.uint8
    assert set(np.unique(cut.mask)) <= {0, 255}
    assert iou(cut.mask, truth) >= 0.98
    # The soft alpha agrees with the hard mask.
    assert np.array_equal(cut.alpha >= 128, cut.mask > 0)
    x0, y0, x1, y1 = cut.bbox
    ys, xs = np.nonzero(truth)
    assert abs(x0 - xs.min()) <= 3 and abs(x1 - 1 - xs.max()) <= 3
    assert abs(y0 - ys.min()) <= 3 and abs(y1 - 1 - ys.max()) <= 3


def test_cutout_keeps_the_handle_opening_as_background(drawn_products):
    rgb, truth = drawn_products["tote"]
    cut = cutout_product(rgb)
    # The opening enclosed by the handle (centre of the handle's ellipse, above the body).
    cy, cx = int(0.33 * 512), 256
    assert truth[cy, cx] == 0
    assert cut.mask[cy, cx] == 0


def test_background_estimate_on_plain_and_scene(drawn_products, astronaut_rgb):
    _, _, uniform = estimate_background(drawn_products["tee"][0])
    _, _, scene = estimate_background(astronaut_rgb)
    assert uniform > 0.95
    assert scene < 0.85


def test_cutout_of_empty_backdrop_says_nothing_found():
    flat = np.full((64, 64, 3), 240, np.uint8)
    with pytest.raises(NothingFoundError):
        cutout_product(flat)


def test_cutout_rejects_wrong_dtype():
    with pytest.raises(InputError, match="uint8"):
        cutout_product(np.zeros((8, 8, 3), np.float32))


def test_white_garment_on_white_is_still_found():
    # Low contrast: an off-white garment (Lab distance ~15) on white.
    img = np.full((256, 256, 3), 252, np.uint8)
    truth = np.zeros((256, 256), np.uint8)
    truth[60:200, 80:180] = 255
    img[truth > 0] = (236, 234, 226)
    cut = cutout_product(img)
    assert iou(cut.mask, truth) >= 0.97


def test_antialiased_edge_gets_a_soft_alpha():
    import cv2

    img = np.full((256, 256, 3), 250, np.uint8)
    cv2.circle(img, (128, 128), 70, (30, 60, 140), -1, cv2.LINE_AA)
    cut = cutout_product(img)
    soft = (cut.alpha > 0) & (cut.alpha < 255)
    assert soft.any()
    ys, xs = np.nonzero(soft)
    r = np.sqrt((xs - 128) ** 2 + (ys - 128) ** 2)
    assert np.all(np.abs(r - 70) < 3)  # only on the rim


# -- hard cases: light garments on white and light-grey backdrops (code-built, exact masks) ----------
# The pre-issue-12 cutout (pure border colour, fixed Lab tolerance >= 10) scored 0.00 / 0.00 / 0.00 / 0.12
# on these four (the garment body vanished or "nothing found"); see docs/quality.md.
from tests.helpers.cutout_cases import HARD_CASES  # noqa: E402

HARD_CASE_MIN_IOU = {
    "white-shadow-on-white": 0.95,
    "cream-knit-holes-on-white": 0.97,
    "white-on-grey-gradient": 0.97,
    "light-grey-on-grey": 0.96,
}


@pytest.mark.parametrize("name", sorted(HARD_CASES))
def test_light_garment_on_light_backdrop_comes_out_whole(name):
    rgb, truth = HARD_CASES[name]()
    cut = cutout_product(rgb)
    assert iou(cut.mask, truth) >= HARD_CASE_MIN_IOU[name]


def test_knit_holes_are_kept_as_garment():
    rgb, truth = HARD_CASES["cream-knit-holes-on-white"]()
    cut = cutout_product(rgb)
    # the centre of one open-work hole (the backdrop shows through) stays garment
    assert (rgb[150, 180].astype(int) >= 248).all() and truth[150, 180] == 255
    assert cut.mask[150, 180] == 255
    assert cut.evidence["holes_backdrop"] == 0


def test_faint_shadow_is_backdrop_not_garment():
    rgb, truth = HARD_CASES["white-shadow-on-white"]()
    cut = cutout_product(rgb)
    # the drop shadow lies below-right of the hem: up to 10 levels darker than the backdrop, smooth
    shadow = np.zeros_like(truth, bool)
    shadow[443:452, 175:355] = True  # beyond the +-2 px boundary zone of the hem (y = 440)
    assert (truth[shadow] == 0).all()
    assert (cut.mask[shadow] > 0).mean() < 0.2


def test_backdrop_model_follows_a_gradient():
    from pipelines.segmentation.cutout import _lab, fit_backdrop

    rgb, _ = HARD_CASES["white-on-grey-gradient"]()
    bd = fit_backdrop(_lab(rgb))
    model = bd.render(*rgb.shape[:2])
    lab = _lab(rgb)
    # top and bottom rows of the backdrop (left margin) are ~13 L* apart; the model tracks both to 1 L*
    for y in (5, 506):
        assert abs(float(model[y, 10, 0]) - float(lab[y, 5:15, 0].mean())) < 1.0
    assert bd.uniformity > 0.95


def test_cutout_evidence_is_json_ready():
    import json

    rgb, _ = HARD_CASES["white-shadow-on-white"]()
    ev = cutout_product(rgb).evidence
    json.dumps(ev)
    assert 0.0 <= ev["confident_fraction"] <= 1.0
    # white on white: the mask is held by its outline and texture, not by colour
    assert ev["confident_fraction"] < 0.2

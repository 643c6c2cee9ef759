import numpy as np
import pytest

from pipelines.classic.cutout import cutout_product, estimate_background
from pipelines.errors import InputError, NothingFoundError
from pipelines.quality import iou


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

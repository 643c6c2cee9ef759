"""Mask refinement: holes, specks, smoothing, feathered and matted edges, occluders."""

import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.masks import (
    RefineOptions,
    feather,
    fill_holes,
    matte,
    refine_mask,
    remove_small_components,
    smooth_mask,
    subtract,
)


def square(h=100, w=100, box=(20, 20, 80, 80)):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def test_fill_holes_fills_small_enclosed_holes_only():
    m = square()
    m[30:33, 30:33] = False  # 9 px hole
    m[50:70, 50:70] = False  # 400 px hole: a bag handle's loop
    out = fill_holes(m, max_area=50)
    assert out[31, 31] and not out[60, 60]
    assert fill_holes(m, max_area=1000)[60, 60]
    assert not fill_holes(m, 0)[31, 31]


def test_background_touching_the_border_is_never_a_hole():
    m = square(box=(0, 20, 50, 80))
    m[40:60, 0:10] = False  # a notch open to the image border
    assert not fill_holes(m, max_area=10_000)[50, 5]


def test_remove_small_components_keeps_the_largest_always():
    m = square()
    m[2:4, 2:4] = True  # 4 px speck
    out = remove_small_components(m, min_area=10)
    assert not out[2, 2] and out[50, 50]
    tiny = np.zeros((10, 10), bool)
    tiny[1, 1] = tiny[5, 5] = True
    assert remove_small_components(tiny, min_area=100).sum() == 1


def test_smoothing_removes_jaggies_but_keeps_the_outline():
    m = square()
    m[20, 40] = False  # a one-pixel bite
    m[19, 60] = True  # a one-pixel spur
    out = smooth_mask(m, 1.5)
    assert out[20, 40] and not out[19, 60]
    assert abs(int(out.sum()) - int(square().sum())) < 40


def test_feather_is_a_ramp_centred_on_the_outline():
    m = square()
    a = feather(m, 6)
    assert a.dtype == np.uint8 and a.shape == m.shape
    np.testing.assert_array_equal(a >= 128, m)
    assert a[50, 50] == 255 and a[0, 0] == 0
    row = a[50, 10:30].astype(int)
    assert (np.diff(row) >= 0).all() and 0 < a[50, 18] < 128 < a[50, 21] < 255


def test_matte_changes_only_a_band_around_the_outline():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, 50:] = 255  # the photo's edge sits at x = 50
    m = square(box=(0, 0, 53, 100))  # the mask's edge is 3 px off
    a = matte(image, m, width=6)
    assert a.dtype == np.uint8
    assert (a[:, :40] == 255).all() and (a[:, 60:] == 0).all()  # outside the band: the hard mask
    assert a[50, 51] < 255  # inside the band the alpha follows the photo, not the mask


def test_subtract_removes_occluders():
    m, hand = square(), square(box=(40, 40, 60, 60))
    out = subtract(m, hand)
    assert not out[50, 50] and out[25, 25] and out.sum() == m.sum() - 400
    with pytest.raises(InputError):
        subtract(m, hand[:50])


def test_refine_mask_fills_then_subtracts_then_cleans():
    m = square()
    m[30:32, 30:32] = False  # small hole: filled
    m[2:4, 2:4] = True  # speck: removed
    occluder = square(box=(30, 30, 40, 40))  # the hole lies under an occluder: it stays out
    a = refine_mask(m, RefineOptions(smooth_px=0), exclude=occluder)
    assert set(np.unique(a)) <= {0, 255}
    assert a[31, 31] == 0 and a[2, 2] == 0 and a[50, 50] == 255 and a[35, 35] == 0
    assert refine_mask(np.zeros((5, 5), np.uint8)).sum() == 0


def test_refine_mask_edges():
    m = square()
    assert set(np.unique(refine_mask(m))) == {0, 255}
    soft = refine_mask(m, RefineOptions(edges="feather", feather_px=4))
    assert len(np.unique(soft)) > 2
    image = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    assert refine_mask(m, RefineOptions(edges="matte"), image=image).shape == (100, 100)
    with pytest.raises(InputError, match="needs the image"):
        refine_mask(m, RefineOptions(edges="matte"))


@pytest.mark.parametrize("kwargs", [{"fill_holes": 2}, {"min_component": -0.1}, {"smooth_px": -1},
                                    {"edges": "blurry"}])
def test_refine_options_are_validated(kwargs):
    with pytest.raises(InputError):
        RefineOptions(**kwargs)

import numpy as np
import pytest
from PIL import Image

from pipelines.compositing.backgrounds import contact_shadow, make_background
from pipelines.compositing.seam import inpaint_seam
from pipelines.compositing.composite import (
    Placement,
    alpha_composite,
    check_preserved,
    fit_placement,
    preserve_mask,
    render_layer,
    seam_band,
)


def test_fit_placement_fills_85_percent_and_centres():
    p = fit_placement((100, 50, 400, 650), (2000, 2000), fill=0.85)
    assert p.resized_size[1] == 1700  # the longer side (600 px tall) fills 85%
    assert p.resized_size[0] == round(300 * 1700 / 600)
    assert p.offset == ((2000 - p.resized_size[0]) // 2, 150)
    assert Placement.from_json(p.to_json()) == p


def test_fit_placement_floor_anchor_and_bad_fill():
    p = fit_placement((0, 0, 100, 100), (1000, 1000), fill=0.5, anchor="floor", margin_bottom=0.1)
    assert p.offset[1] + p.resized_size[1] == 900
    with pytest.raises(ValueError, match="fill"):
        fit_placement((0, 0, 10, 10), (100, 100), fill=1.5)


def test_render_layer_matches_pil_crop_and_resize():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    p = Placement(canvas_size=(200, 150), crop_box=(10, 20, 70, 100), resized_size=(90, 120), offset=(55, 15))
    layer = render_layer(img, p)
    expected = np.asarray(Image.fromarray(img).crop((10, 20, 70, 100)).resize((90, 120), Image.Resampling.LANCZOS))
    assert layer.shape == (150, 200, 3)
    assert np.array_equal(layer[15:135, 55:145], expected)
    assert not layer[:15].any() and not layer[:, :55].any()


def test_alpha_composite_is_exact_at_0_and_255():
    rng = np.random.default_rng(1)
    fg = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    alpha = rng.choice(np.array([0, 255, 100], np.uint8), (32, 32))
    out = alpha_composite(bg, fg, alpha)
    assert np.array_equal(out[alpha == 255], fg[alpha == 255])
    assert np.array_equal(out[alpha == 0], bg[alpha == 0])
    mid = alpha == 100
    expect = (fg[mid].astype(int) * 100 + bg[mid].astype(int) * 155 + 127) // 255
    assert np.array_equal(out[mid], expect)


def _disc_alpha(size=200, r=60):
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.sqrt((xx - size / 2) ** 2 + (yy - size / 2) ** 2)
    return np.clip((r - d + 0.5) * 255, 0, 255).astype(np.uint8)


def test_seam_band_never_overlaps_preserved_pixels():
    alpha = _disc_alpha()
    keep = preserve_mask(alpha, 3)
    band = seam_band(alpha, 3, 4)
    assert keep.any() and band.any()
    assert not ((keep > 0) & (band > 0)).any()
    # The band covers the whole soft edge.
    soft = (alpha > 0) & (alpha < 255)
    assert np.all(band[soft] > 0)


def test_seam_inpainting_changes_only_the_band_and_removes_the_halo():
    alpha = _disc_alpha()
    fg = np.zeros((200, 200, 3), np.uint8)
    fg[:] = (200, 30, 30)  # a red product...
    halo = (alpha > 0) & (alpha < 255)
    fg[halo] = (20, 20, 20)  # ...whose cut edge still carries the photo's dark backdrop
    bg = make_background("white", (200, 200))
    comp = alpha_composite(bg, fg, alpha)
    band = seam_band(alpha, 3, 4)
    keep = preserve_mask(alpha, 3)
    out = inpaint_seam(comp, fg, alpha, bg, band)
    changed = np.any(out != comp, axis=2)
    assert changed.any()
    assert not changed[band == 0].any()
    assert check_preserved(out, fg, keep)["identical_fraction"] == 1.0
    # The dark fringe is gone: edge pixels are now between red and white, not near black.
    assert out[halo].astype(int).sum(axis=1).min() > comp[halo].astype(int).sum(axis=1).min()


def test_backgrounds_are_deterministic_and_sized():
    for kind in ("white", "studio", "texture"):
        a = make_background(kind, (160, 200), seed=3)
        b = make_background(kind, (160, 200), seed=3)
        assert a.shape == (200, 160, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)
    assert (make_background("white", (10, 10)) == 255).all()
    assert not np.array_equal(make_background("texture", (64, 64), 0), make_background("texture", (64, 64), 1))
    with pytest.raises(ValueError, match="unknown background"):
        make_background("beach", (8, 8))


def test_contact_shadow_sits_under_the_object():
    mask = np.zeros((400, 300), np.uint8)
    mask[100:300, 100:200] = 255
    sh = contact_shadow(mask, strength=0.35)
    assert sh.dtype == np.float32 and 0 <= sh.min() and sh.max() <= 0.35 + 1e-6
    assert sh[300:320, 100:200].mean() > sh[40:90, 100:200].mean() * 5


# -- the fast paths (issue 12) give exactly the figures of the plain whole-frame formulas ---------------------
def _soft_alpha(shape, seed):
    import cv2

    rng = np.random.default_rng(seed)
    a = (rng.random(shape) > 0.5).astype(np.uint8) * 255
    a = cv2.GaussianBlur(cv2.resize(a[::8, ::8], shape[::-1], interpolation=cv2.INTER_NEAREST), (0, 0), 3)
    a[a > 240] = 255
    return a


def _inpaint_reference(composite, foreground, alpha, background, band, smooth_sigma=0.6):
    """The seam inpainting as first written: everything on the band's box plus 40 px."""
    import cv2

    sel = band > 0
    ys, xs = np.nonzero(sel)
    y0, y1 = max(0, ys.min() - 40), min(band.shape[0], ys.max() + 41)
    x0, x1 = max(0, xs.min() - 40), min(band.shape[1], xs.max() + 41)
    sl = (slice(y0, y1), slice(x0, x1))
    img, k = foreground[sl], alpha[sl] == 255
    _, labels = cv2.distanceTransformWithLabels((~k).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    yk, xk = np.nonzero(k)
    lut = img[yk, xk].astype(np.float32)
    out = np.where(k[:, :, None], img.astype(np.float32), lut[np.clip(labels - 1, 0, len(lut) - 1)])
    out = np.where(k[:, :, None], out, cv2.GaussianBlur(out, (0, 0), 2.0))
    a = alpha[sl].astype(np.float32)[:, :, None] / 255.0
    fixed = cv2.GaussianBlur(out * a + background[sl].astype(np.float32) * (1.0 - a), (0, 0), smooth_sigma)
    res = composite.copy()
    region = res[sl]
    region[sel[sl]] = np.clip(np.round(fixed[sel[sl]]), 0, 255).astype(np.uint8)
    return res


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_compositing_equals_the_whole_frame_formulas(seed):
    from pipelines.compositing.backgrounds import apply_shadow, studio_sweep
    from pipelines.compositing.composite import channel_max_abs_diff, count_changed

    rng = np.random.default_rng(seed)
    h, w = 300, 420
    alpha = _soft_alpha((h, w), seed)
    fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    bg = studio_sweep((w, h), seed)
    a16 = alpha.astype(np.uint16)[:, :, None]
    ref = ((fg.astype(np.uint16) * a16 + bg.astype(np.uint16) * (255 - a16) + 127) // 255).astype(np.uint8)
    comp = alpha_composite(bg, fg, alpha)
    assert np.array_equal(comp, ref)
    band = seam_band(alpha, 3, 4)
    assert band.any()
    assert np.array_equal(inpaint_seam(comp, fg, alpha, bg, band), _inpaint_reference(comp, fg, alpha, bg, band))
    shadow = contact_shadow(alpha)
    full = np.clip(np.round(bg.astype(np.float32) * (1.0 - shadow[:, :, None])), 0, 255).astype(np.uint8)
    assert np.array_equal(apply_shadow(bg, shadow), full)
    other = comp.copy()
    other[rng.random((h, w)) > 0.97] += 1
    assert count_changed(comp, other) == int(np.any(comp != other, axis=2).sum())
    where = rng.random((h, w)) > 0.5
    assert count_changed(comp, other, where) == int(np.any(comp != other, axis=2)[where].sum())
    assert np.array_equal(channel_max_abs_diff(comp, other), np.abs(comp.astype(int) - other).max(axis=2))


def test_cached_backgrounds_are_copies():
    a = make_background("studio", (64, 80), seed=1)
    a[:] = 0  # the caller may write to its copy
    b = make_background("studio", (64, 80), seed=1)
    assert b.any() and a.flags.writeable and b.flags.writeable

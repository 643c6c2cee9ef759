"""Property-based tests (hypothesis) of the image loader and the mask operations the guarantee rests on.

The catalog's promise — product pixels copied bit for bit, generation confined to the seam band — is
only as good as `erode`/`dilate`, `preserve_mask`, `seam_band`, `alpha_composite` and `Placement`; and
every image enters through `load_image`. These tests state their invariants for arbitrary inputs.
(Lossless PNG round trips are in tests/core/test_imageio.py.)
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from pipelines.compositing.composite import (
    Placement,
    alpha_composite,
    check_preserved,
    dilate,
    erode,
    fit_placement,
    preserve_mask,
    render_layer,
    seam_band,
)
from pipelines.errors import InputError
from pipelines.imageio import load_image

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIDES = st.integers(1, 40)


@st.composite
def binary_masks(draw, max_side: int = 40):
    """0/255 uint8 masks: random blobs, so erosion and dilation have edges to work on."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    bits = draw(arrays(np.bool_, (h, w)))
    return np.where(bits, 255, 0).astype(np.uint8)


@st.composite
def soft_alphas(draw, max_side: int = 40):
    """Alpha mattes: opaque cores, soft (1..254) edges and transparent backgrounds in any arrangement."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    values = st.sampled_from([0, 0, 255, 255, 255, 1, 64, 127, 128, 200, 254])
    return draw(arrays(np.uint8, (h, w), elements=values))


def _sub(a: np.ndarray, b: np.ndarray) -> bool:
    """Mask ``a`` is a subset of mask ``b``."""
    return not np.any((a > 0) & (b == 0))


# --------------------------------------------------------------------------------------------------
# Morphology
# --------------------------------------------------------------------------------------------------


@FAST
@given(mask=binary_masks(), k=st.integers(0, 6))
def test_erode_shrinks_and_dilate_grows(mask, k):
    e, d = erode(mask, k), dilate(mask, k)
    assert e.dtype == d.dtype == np.uint8 and e.shape == d.shape == mask.shape
    assert set(np.unique(e)) <= {0, 255} and set(np.unique(d)) <= {0, 255}
    assert _sub(e, mask) and _sub(mask, d)
    if k == 0:
        assert np.array_equal(e, mask) and np.array_equal(d, mask)
        assert e is not mask and d is not mask  # copies, never the caller's array


@FAST
@given(mask=binary_masks(), k=st.integers(0, 5))
def test_erode_and_dilate_are_monotonic_in_the_radius(mask, k):
    assert _sub(erode(mask, k + 1), erode(mask, k))
    assert _sub(dilate(mask, k), dilate(mask, k + 1))


@FAST
@given(mask=binary_masks(), k=st.integers(1, 5))
def test_erosion_is_dilation_of_the_complement(mask, k):
    assert np.array_equal(erode(mask, k), 255 - dilate(255 - mask, k))


@FAST
@given(mask=binary_masks(), k=st.integers(1, 5))
def test_opening_and_closing_bracket_the_mask(mask, k):
    assert _sub(dilate(erode(mask, k), k), mask)  # opening is anti-extensive
    assert _sub(mask, erode(dilate(mask, k), k) | _border(mask, k))  # closing is extensive (off the border)


def _border(mask: np.ndarray, k: int) -> np.ndarray:
    b = np.zeros_like(mask)
    b[:k], b[-k:], b[:, :k], b[:, -k:] = 255, 255, 255, 255
    return b


# --------------------------------------------------------------------------------------------------
# Preserve mask and seam band
# --------------------------------------------------------------------------------------------------


@FAST
@given(alpha=soft_alphas(), erode_px=st.integers(0, 6))
def test_preserve_mask_lies_inside_the_fully_opaque_product(alpha, erode_px):
    keep = preserve_mask(alpha, erode_px)
    assert keep.shape == alpha.shape and set(np.unique(keep)) <= {0, 255}
    assert _sub(keep, np.where(alpha == 255, 255, 0))
    assert _sub(preserve_mask(alpha, erode_px + 1), keep)


@FAST
@given(alpha=soft_alphas(), data=st.data())
def test_seam_band_never_overlaps_the_preserved_pixels(alpha, data):
    erode_px = data.draw(st.integers(0, 6))
    inner = data.draw(st.integers(0, erode_px))
    outer = data.draw(st.integers(0, 6))
    band, keep = seam_band(alpha, inner, outer), preserve_mask(alpha, erode_px)
    assert set(np.unique(band)) <= {0, 255}
    assert not np.any((band > 0) & (keep > 0))


@FAST
@given(alpha=soft_alphas(), inner=st.integers(0, 5), outer=st.integers(0, 5))
def test_seam_band_covers_every_soft_edge_pixel_and_stays_near_the_product(alpha, inner, outer):
    band = seam_band(alpha, inner, outer)
    soft_but_kept = (alpha >= 128) & (alpha < 255)  # part of the product, not opaque: the band must cover it
    assert np.all(band[soft_but_kept] > 0)
    hard = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    assert _sub(band, dilate(hard, outer))  # never further than outer_px from the product


@FAST
@given(alpha=soft_alphas(), erode_px=st.integers(1, 5), outer=st.integers(0, 5))
def test_band_preserve_and_far_background_partition_the_canvas(alpha, erode_px, outer):
    """Every pixel is exactly one of: preserved product, seam band, or background out of the band's reach."""
    band, keep = seam_band(alpha, erode_px, outer), preserve_mask(alpha, erode_px)
    far = dilate(np.where(alpha >= 128, 255, 0).astype(np.uint8), outer) == 0
    count = (band > 0).astype(int) + (keep > 0).astype(int) + far.astype(int)
    assert np.all(count == 1)


# --------------------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------------------


@st.composite
def layers(draw):
    h, w = draw(SIDES), draw(SIDES)
    bg = draw(arrays(np.uint8, (h, w, 3)))
    fg = draw(arrays(np.uint8, (h, w, 3)))
    alpha = draw(arrays(np.uint8, (h, w)))
    return bg, fg, alpha


@FAST
@given(layers())
def test_alpha_composite_is_exact_at_0_and_255_and_rounds_correctly_between(lay):
    bg, fg, alpha = lay
    out = alpha_composite(bg, fg, alpha)
    assert out.dtype == np.uint8 and out.shape == bg.shape
    assert np.array_equal(out[alpha == 255], fg[alpha == 255])
    assert np.array_equal(out[alpha == 0], bg[alpha == 0])
    a = alpha.astype(np.float64)[:, :, None] / 255.0
    exact = fg * a + bg * (1 - a)
    assert np.all(np.abs(out - exact) <= 0.5 + 1e-9)
    assert np.all(out >= np.minimum(fg, bg)) and np.all(out <= np.maximum(fg, bg))
    assert np.array_equal(out, alpha_composite(fg, bg, 255 - alpha))  # symmetric


@FAST
@given(lay=layers(), erode_px=st.integers(0, 4))
def test_composite_keeps_every_preserved_pixel_bit_for_bit(lay, erode_px):
    bg, fg, alpha = lay
    keep = preserve_mask(alpha, erode_px)
    out = alpha_composite(bg, fg, alpha)
    result = check_preserved(out, fg, keep)
    assert result["identical_fraction"] == 1.0 and result["pixels"] == int((keep > 0).sum())


# --------------------------------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------------------------------


@st.composite
def placements(draw):
    w, h = draw(st.integers(2, 400)), draw(st.integers(2, 400))
    x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
    x1, y1 = draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))
    canvas = (draw(st.integers(8, 3000)), draw(st.integers(8, 3000)))
    fill = draw(st.floats(0.05, 1.0))
    anchor = draw(st.sampled_from(["center", "floor"]))
    resample = draw(st.sampled_from(["nearest", "bilinear", "bicubic", "lanczos"]))
    return (x0, y0, x1, y1), canvas, fill, anchor, resample


@FAST
@given(placements())
def test_placement_survives_a_json_round_trip(args):
    bbox, canvas, fill, anchor, resample = args
    p = fit_placement(bbox, canvas, fill=fill, anchor=anchor, resample=resample)
    back = Placement.from_json(json.loads(json.dumps(p.to_json())))
    assert back == p and back.scale == p.scale


@FAST
@given(placements())
def test_fit_placement_fills_the_limiting_side_and_stays_on_canvas(args):
    bbox, canvas, fill, _, resample = args
    p = fit_placement(bbox, canvas, fill=fill, anchor="center", resample=resample)
    (rw, rh), (cw, ch) = p.resized_size, canvas
    assert p.crop_box == bbox and p.canvas_size == canvas
    assert max(rw / cw, rh / ch) <= fill + 1.0 / min(cw, ch) + 1e-9
    assert rw == 1 or rh == 1 or max(rw / cw, rh / ch) >= fill - 1.0 / min(cw, ch) - 1e-9
    assert 0 <= p.offset[0] and p.offset[0] + rw <= cw and 0 <= p.offset[1] and p.offset[1] + rh <= ch
    bw, bh = bbox[2] - bbox[0], bbox[3] - bbox[1]
    assert abs(p.scale[0] - rw / bw) < 1e-12 and abs(p.scale[1] - rh / bh) < 1e-12
    s = min(fill * cw / bw, fill * ch / bh)  # one scale for both sides, each rounded: the aspect is kept
    assert (rw == max(1, round(bw * s))) and (rh == max(1, round(bh * s)))


@FAST
@given(data=st.data())
def test_render_layer_at_scale_one_copies_the_crop_exactly(data):
    h, w = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    img = data.draw(arrays(np.uint8, (h, w, 3)))
    x0, y0 = data.draw(st.integers(0, w - 1)), data.draw(st.integers(0, h - 1))
    x1, y1 = data.draw(st.integers(x0 + 1, w)), data.draw(st.integers(y0 + 1, h))
    cw, ch = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    ox, oy = data.draw(st.integers(-35, 40)), data.draw(st.integers(-35, 40))
    resample = data.draw(st.sampled_from(["nearest", "bilinear", "bicubic", "lanczos"]))
    p = Placement(canvas_size=(cw, ch), crop_box=(x0, y0, x1, y1), resized_size=(x1 - x0, y1 - y0),
                  offset=(ox, oy), resample=resample)
    layer = render_layer(img, p)
    expected = np.zeros((ch, cw, 3), np.uint8)
    crop = img[y0:y1, x0:x1]
    ys, xs = slice(max(oy, 0), min(oy + crop.shape[0], ch)), slice(max(ox, 0), min(ox + crop.shape[1], cw))
    if ys.start < ys.stop and xs.start < xs.stop:
        expected[ys, xs] = crop[ys.start - oy: ys.stop - oy, xs.start - ox: xs.stop - ox]
    assert np.array_equal(layer, expected)
    mask_layer = render_layer(np.ascontiguousarray(img[:, :, 0]), p, mode="L")
    assert np.array_equal(mask_layer, expected[:, :, 0])


# --------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------

_EXIF_STORE = {  # orientation -> how to store the upright image so that the tag turns it back
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _load_bytes(data: bytes, suffix: str, **kwargs):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x{suffix}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_image(path, **kwargs)


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@FAST
@given(data=st.data(), orientation=st.integers(1, 8))
def test_any_exif_orientation_loads_upright_and_exact(data, orientation):
    h, w = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    upright = data.draw(arrays(np.uint8, (h, w, 3)))
    stored = Image.fromarray(upright)
    if _EXIF_STORE[orientation] is not None:
        stored = stored.transpose(_EXIF_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = _load_bytes(_encode(stored, "PNG", exif=exif.tobytes()), ".png")
    assert np.array_equal(img.rgb, upright)
    assert img.source_size == (w, h) and img.exif_rotated == (orientation != 1)


@FAST
@given(data=st.data(), max_side=st.integers(1, 64), alpha=st.booleans())
def test_max_side_bounds_the_longer_side_and_keeps_the_aspect(data, max_side, alpha):
    h, w = data.draw(st.integers(1, 96)), data.draw(st.integers(1, 96))
    rgb = data.draw(arrays(np.uint8, (h, w, 3)))
    im = Image.fromarray(rgb)
    if alpha:
        im.putalpha(Image.fromarray(data.draw(arrays(np.uint8, (h, w)))))
    img = _load_bytes(_encode(im, "PNG"), ".png", max_side=max_side)
    oh, ow = img.rgb.shape[:2]
    assert img.rgb.dtype == np.uint8 and img.rgb.shape[2] == 3 and img.source_size == (w, h)
    assert max(oh, ow) == min(max_side, max(h, w))
    assert (img.alpha is not None) == alpha and (img.alpha is None or img.alpha.shape == (oh, ow))
    if max(h, w) > max_side:
        f = max_side / max(h, w)  # each side scaled by f and rounded (at least 1 px): the aspect is kept
        assert abs(ow - w * f) <= 0.5 + 1e-9 or ow == 1
        assert abs(oh - h * f) <= 0.5 + 1e-9 or oh == 1
        assert abs(img.scale - max(oh, ow) / max(h, w)) < 1e-12
    else:
        assert np.array_equal(img.rgb, rgb) and img.scale == 1.0


@FAST
@given(values=arrays(np.uint16, st.tuples(st.integers(1, 8), st.integers(1, 8))))
def test_16_bit_grey_maps_to_8_bit_with_rounding(values):
    img = _load_bytes(_encode(Image.fromarray(values), "PNG"), ".png")
    grey = img.rgb[:, :, 0].astype(np.float64)
    assert np.all(np.abs(grey - values.astype(np.float64) / 257.0) <= 0.5 + 1e-9)
    assert np.array_equal(img.rgb[:, :, 0], img.rgb[:, :, 2])


_FORMATS = {
    "png": (".png", lambda im: _encode(im, "PNG")),
    "jpeg": (".jpg", lambda im: _encode(im, "JPEG", quality=90)),
    "webp": (".webp", lambda im: _encode(im, "WEBP", lossless=True)),
    "gif-animated": (".gif", lambda im: _encode(im, "GIF", save_all=True,
                                                append_images=[im.transpose(Image.Transpose.ROTATE_180)])),
    "webp-animated": (".webp", lambda im: _encode(im, "WEBP", save_all=True, lossless=True,
                                                  append_images=[im.transpose(Image.Transpose.ROTATE_180)])),
    "tiff-multipage": (".jpg", lambda im: _encode(im, "TIFF", save_all=True,  # a TIFF named .jpg
                                                  append_images=[im.transpose(Image.Transpose.ROTATE_180)])),
    "cmyk-jpeg": (".jpg", lambda im: _encode(im.convert("CMYK"), "JPEG")),
}
_SOURCE = Image.fromarray(np.random.default_rng(7).integers(0, 256, (20, 27, 3), dtype=np.uint8))
_ENCODED = {name: (suffix, encode(_SOURCE)) for name, (suffix, encode) in _FORMATS.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_FORMATS)), data=st.data())
def test_a_corrupted_file_loads_well_formed_or_fails_with_an_input_error(fmt, data):
    """Flip bytes or cut the file anywhere: the loader returns a well-formed image or raises `InputError`
    naming the file; never another exception (which would escape as an unclear error)."""
    suffix, original = _ENCODED[fmt]
    corrupt = bytearray(original)
    for _ in range(data.draw(st.integers(0, 3))):
        corrupt[data.draw(st.integers(0, len(corrupt) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        corrupt = corrupt[: data.draw(st.integers(1, len(corrupt)))]
    assume(bytes(corrupt) != original)
    try:
        img = _load_bytes(bytes(corrupt), suffix, max_side=16)
    except InputError as e:
        assert e.path and e.path.endswith(suffix)
        return
    assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert max(img.rgb.shape[:2]) <= 16


@FAST
@given(fmt=st.sampled_from(["png", "webp"]), data=st.data())
def test_a_cut_lossless_file_never_loads_as_different_pixels(fmt, data):
    """A truncated file fails, or (only trailing chunks gone) loads with exactly the original pixels."""
    suffix, original = _ENCODED[fmt]
    cut = data.draw(st.integers(1, len(original) - 1))
    try:
        img = _load_bytes(original[:cut], suffix)
    except InputError:
        return
    assert np.array_equal(img.rgb, np.asarray(_SOURCE))


@FAST
@given(noise=st.binary(min_size=0, max_size=300), suffix=st.sampled_from([".png", ".jpg", ".webp"]))
def test_random_bytes_are_an_input_error(noise, suffix):
    try:
        _load_bytes(noise, suffix)
    except InputError:
        return
    raise AssertionError("random bytes loaded as an image")  # pragma: no cover

"""Tests for pipelines.imageio: a corpus of bad and awkward inputs built in tmp_path, and atomic writes."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from pipelines import imageio
from pipelines.errors import InputError
from pipelines.imageio import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    LoadedImage,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_image,
    save_image,
    save_mask,
    sha256_bytes,
    sha256_file,
)
from tests.helpers.images import png_chunk, png_rgb16

# --------------------------------------------------------------------------------------------------
# Helpers: tiny hand-made PNGs and ICC profiles
# --------------------------------------------------------------------------------------------------






def _patch_png_size(png: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR width/height of a PNG (and its CRC): a cheap decompression bomb header."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _icc(device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """Assemble a version 2 ICC profile from (signature, data) tags."""
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    blob = b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(blob), len(data))
        blob += data
    size = 128 + table_size + len(blob)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + device_class
        + space
        + pcs
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + blob


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0" * 3 + b"\0" * 67


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def _common_tags(name: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"desc", _desc(name)),
        (b"cprt", b"text" + b"\0" * 4 + b"public domain\0"),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
    ]


def _swapped_rgb_profile() -> bytes:
    """An RGB profile whose red primary is sRGB's green and vice versa (gamma 2.2)."""
    gamma = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(2.2 * 256))
    return _icc(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        _common_tags("Swapped primaries test profile")
        + [
            (b"rXYZ", _xyz(0.3851, 0.7169, 0.0971)),
            (b"gXYZ", _xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", gamma),
            (b"gTRC", gamma),
            (b"bTRC", gamma),
        ],
    )


def _cmyk_profile() -> bytes:
    """A CMYK profile (lut16, Lab PCS) that prints pure cyan as red: nothing like Pillow's plain formula."""

    def lab(L: float, a: float, b: float) -> bytes:
        return struct.pack(">HHH", round(L / 100 * 0xFF00), round((a + 128) * 256), round((b + 128) * 256))

    clut = b""
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    if k:
                        clut += lab(0, 0, 0)
                    elif c and not (m or y):
                        clut += lab(54, 80, 67)  # "cyan" ink that looks red
                    elif c or m or y:
                        clut += lab(50, 0, 0)
                    else:
                        clut += lab(100, 0, 0)
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    linear = struct.pack(">HH", 0, 0xFFFF)
    a2b = (
        b"mft2"
        + b"\0" * 4
        + bytes([4, 3, 2, 0])
        + identity
        + struct.pack(">HH", 2, 2)
        + linear * 4
        + clut
        + linear * 3
    )
    return _icc(b"prtr", b"CMYK", b"Lab ", _common_tags("Test CMYK profile") + [(b"A2B0", a2b)])


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


def test_constants():
    assert MAX_PIXELS == 120_000_000
    assert IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".webp")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as e:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as e:
        load_image(path)
    assert e.value.path == str(path)


def test_folder_is_not_an_image(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path / "x.png")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(InputError, match="not an image") as e:
        load_image(path)
    assert "notes.jpg" in str(e.value)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_truncated_files_raise_instead_of_loading_grey(tmp_path, fmt, suffix):
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format=fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError) as e:
        load_image(path)
    assert f"cut{suffix}" in str(e.value)


def test_truncated_jpeg_says_truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[:-200])
    with pytest.raises(InputError, match="truncated"):
        load_image(path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    path = tmp_path / "bomb.png"
    path.write_bytes(_patch_png_size(buf.getvalue(), 30_000, 30_000))
    start = time.perf_counter()
    with pytest.raises(InputError) as e:
        load_image(path)
    assert time.perf_counter() - start < 1.0
    assert "900,000,000" in str(e.value) and "bomb.png" in str(e.value)


def test_image_above_max_pixels_but_below_pillow_limit(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    path = tmp_path / "big.png"
    path.write_bytes(_patch_png_size(buf.getvalue(), 12_000, 10_001))  # 120,012,000 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(InputError, match="120,012,000"):
            load_image(path)


def test_custom_max_pixels(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(path)
    with pytest.raises(InputError, match="400"):
        load_image(path, max_pixels=399)
    assert load_image(path, max_pixels=400).rgb.shape == (20, 20, 3)


@pytest.mark.parametrize("kwargs", [{"max_pixels": 0}, {"max_side": 0}, {"max_side": 2.5}])
def test_bad_limits(tmp_path, kwargs):
    path = tmp_path / "a.png"
    Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(InputError):
        load_image(path, **kwargs)


# --------------------------------------------------------------------------------------------------
# Modes, colour, orientation
# --------------------------------------------------------------------------------------------------


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    img = load_image(path)
    assert isinstance(img, LoadedImage)
    assert img.rgb.shape == (1, 1, 3) and img.rgb.dtype == np.uint8
    assert img.rgb[0, 0].tolist() == [10, 20, 30]
    assert img.alpha is None and img.scale == 1.0 and img.source_size == (1, 1)
    assert not img.exif_rotated and not img.icc_converted and img.source_mode == "RGB"


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    img = load_image(path)
    assert img.source_mode.startswith("I")
    grey = img.rgb[0, :, 0].astype(int)
    assert grey[0] == 0 and grey[1] == 1 and grey[3] == 255
    assert abs(grey[2] - 128) <= 1
    assert (img.rgb[..., 0] == img.rgb[..., 1]).all() and (img.rgb[..., 1] == img.rgb[..., 2]).all()


def test_16bit_grey_gradient_is_monotonic(tmp_path):
    ramp = np.linspace(0, 65535, 256).astype(np.uint16)[None, :].repeat(2, axis=0)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    grey = load_image(path).rgb[0, :, 0].astype(int)
    assert grey[0] == 0 and grey[-1] == 255
    assert (np.diff(grey) >= 0).all()
    assert np.abs(grey - np.arange(256)).max() <= 1


def test_16bit_rgb_png(tmp_path):
    pixels = np.array([[[65535, 32768, 0], [0, 65535, 32768]]], dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_rgb16(pixels))
    rgb = load_image(path).rgb.astype(int)
    assert rgb[0, 0, 0] == 255 and abs(rgb[0, 0, 1] - 128) <= 1 and rgb[0, 0, 2] == 0
    assert rgb[0, 1, 1] == 255 and abs(rgb[0, 1, 2] - 128) <= 1


def test_float_tiff(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)
    grey = load_image(path).rgb[0, :, 0].tolist()
    assert grey[0] == 0 and abs(grey[1] - 128) <= 1 and grey[2] == 255


def test_palette_png_with_transparency_keeps_alpha(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putdata([0, 1, 1, 1, 1, 1, 1, 0])
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    img = load_image(path)
    assert img.source_mode == "P"
    assert img.alpha is not None and img.alpha.shape == (2, 4) and img.alpha.dtype == np.uint8
    assert img.alpha[0, 0] == 0 and img.alpha[0, 1] == 255 and img.alpha[1, 3] == 0
    assert img.rgb[0, 1].tolist() == [255, 0, 0]


def test_la_png_keeps_alpha(tmp_path):
    la = np.zeros((2, 3, 2), dtype=np.uint8)
    la[..., 0] = 200
    la[0, 0, 1] = 255
    la[1, 2, 1] = 128
    path = tmp_path / "la.png"
    Image.merge("LA", [Image.fromarray(la[..., 0]), Image.fromarray(la[..., 1])]).save(path)
    img = load_image(path)
    assert img.rgb[0, 0].tolist() == [200, 200, 200]
    assert img.alpha is not None and img.alpha.tolist() == la[..., 1].tolist()


def test_rgb_without_alpha_has_no_alpha(tmp_path):
    path = tmp_path / "rgb.jpg"
    Image.fromarray(_noise(8, 8)).save(path)
    assert load_image(path).alpha is None


def test_exif_orientation_6(tmp_path):
    # Stored 40 wide x 20 high, red block in the stored top-left corner.
    stored = np.full((20, 40, 3), 255, dtype=np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    img = load_image(path)
    assert img.exif_rotated
    assert img.rgb.shape == (40, 20, 3)  # width and height swapped
    assert img.source_size == (20, 40)
    top_right = img.rgb[1:6, -6:-1].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[1] < 60 and top_right[2] < 60
    top_left = img.rgb[1:6, 1:6].reshape(-1, 3).mean(axis=0)
    assert top_left.min() > 200  # white


def test_cmyk_jpeg_without_profile(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(path, quality=95)
    img = load_image(path)
    assert img.source_mode == "CMYK" and not img.icc_converted
    r, g, b = img.rgb[4, 4].astype(int)
    assert r < 40 and g > 215 and b > 215  # plain formula: cyan


def test_cmyk_jpeg_with_profile_is_colour_managed(tmp_path):
    path = tmp_path / "cmyk_icc.jpg"
    im = Image.new("CMYK", (16, 8), (255, 0, 0, 0))
    im.paste((0, 0, 0, 0), (8, 0, 16, 8))
    im.save(path, quality=95, icc_profile=_cmyk_profile())
    img = load_image(path)
    assert img.source_mode == "CMYK" and img.icc_converted
    r, g, b = img.rgb[4, 3].astype(int)
    assert r > 180 and g < 80 and b < 80  # the profile says this "cyan" is red
    assert img.rgb[4, 12].min() > 240  # no ink: white


def test_rgb_icc_profile_converted_to_srgb(tmp_path):
    path = tmp_path / "swapped.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(path, icc_profile=_swapped_rgb_profile())
    img = load_image(path)
    assert img.icc_converted
    r, g, b = img.rgb[0, 0].astype(int)
    assert g > 200 and r < 60 and b < 60


def test_srgb_profile_is_not_reconverted(tmp_path):
    path = tmp_path / "srgb.jpg"
    rgb = _noise(8, 8)
    save_image(path, rgb)
    with Image.open(path) as im:
        assert im.info.get("icc_profile")
    img = load_image(path)
    assert not img.icc_converted


def test_garbage_icc_profile_is_ignored(tmp_path, caplog):
    path = tmp_path / "badicc.png"
    Image.new("RGB", (2, 2), (1, 2, 3)).save(path, icc_profile=b"not a profile at all")
    img = load_image(path)
    assert img.rgb[0, 0].tolist() == [1, 2, 3] and not img.icc_converted


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = load_image(path)
    assert img.n_frames == 3
    assert img.rgb.shape == (4, 6, 3)
    assert img.rgb[2, 2].tolist() == [255, 0, 0]


def test_animated_webp_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    img = load_image(path)
    assert img.n_frames == 2
    assert img.rgb[2, 2].tolist() == [255, 0, 0]


# --------------------------------------------------------------------------------------------------
# Downscaling
# --------------------------------------------------------------------------------------------------


def test_max_side_downscales_png_with_alpha(tmp_path):
    rgba = np.zeros((1000, 2000, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 255
    rgba[:, :1000, 3] = 0
    path = tmp_path / "wide.png"
    Image.fromarray(rgba).save(path, compress_level=1)
    img = load_image(path, max_side=500)
    assert img.rgb.shape == (250, 500, 3) and img.alpha.shape == (250, 500)
    assert img.scale == pytest.approx(0.25) and img.source_size == (2000, 1000)
    assert img.alpha[:, :240].max() == 0 and img.alpha[:, 260:].min() == 255
    assert img.rgb[10, 400, 1] == 200


def test_max_side_downscales_large_jpeg(tmp_path):
    x = np.linspace(0, 255, 4000, dtype=np.float32)
    rgb = np.broadcast_to(x[None, :, None], (3000, 4000, 3)).astype(np.uint8)
    path = tmp_path / "large.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    img = load_image(path, max_side=1000)
    assert img.rgb.shape == (750, 1000, 3)
    assert img.source_size == (4000, 3000) and img.scale == pytest.approx(0.25)
    assert abs(int(img.rgb[375, 500, 0]) - 128) <= 4


def test_max_side_never_upscales(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (30, 10)).save(path)
    img = load_image(path, max_side=100)
    assert img.rgb.shape == (10, 30, 3) and img.scale == 1.0


def test_max_side_on_rotated_image(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "portrait.jpg"
    Image.new("RGB", (400, 200), (0, 0, 255)).save(path, exif=exif.tobytes())
    img = load_image(path, max_side=100)
    assert (
        img.rgb.shape == (100, 50, 3) and img.source_size == (200, 400) and img.scale == pytest.approx(0.25)
    )


# --------------------------------------------------------------------------------------------------
# Saving and atomic writes
# --------------------------------------------------------------------------------------------------


def test_save_image_formats(tmp_path):
    rgb = _noise(16, 24)
    alpha = np.full((16, 24), 255, dtype=np.uint8)
    alpha[:4] = 0
    for name in ("a.png", "b.jpg", "c.JPEG", "d.webp"):
        a = alpha if not name.lower().endswith((".jpg", ".jpeg")) else None
        digest = save_image(tmp_path / name, rgb, alpha=a)
        assert digest == sha256_file(tmp_path / name)
        img = load_image(tmp_path / name)
        assert img.rgb.shape == rgb.shape
        if a is not None:
            assert img.alpha is not None
    with Image.open(tmp_path / "b.jpg") as im:
        assert im.format == "JPEG" and im.info.get("icc_profile")
    with Image.open(tmp_path / "d.webp") as im:
        assert im.format == "WEBP"


def test_save_image_rejects_bad_input(tmp_path):
    rgb = _noise(4, 4)
    with pytest.raises(InputError, match="alpha"):
        save_image(tmp_path / "x.jpg", rgb, alpha=np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="suffix"):
        save_image(tmp_path / "x.gif", rgb)
    with pytest.raises(InputError, match="uint8"):
        save_image(tmp_path / "x.png", rgb.astype(np.float32))
    with pytest.raises(InputError, match="uint8"):
        save_image(tmp_path / "x.png", rgb[..., 0])
    with pytest.raises(InputError, match="shape"):
        save_image(tmp_path / "x.png", rgb, alpha=np.zeros((3, 4), np.uint8))
    with pytest.raises(InputError, match="quality"):
        save_image(tmp_path / "x.jpg", rgb, quality=0)
    assert list(tmp_path.iterdir()) == []


def test_save_mask_round_trip(tmp_path):
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:3, 2:5] = 255
    mask[4, 6] = 17
    digest = save_mask(tmp_path / "m.png", mask)
    assert digest == sha256_file(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), mask)
    save_mask(tmp_path / "b.png", mask > 0)
    with Image.open(tmp_path / "b.png") as im:
        assert set(np.unique(np.asarray(im)).tolist()) == {0, 255}
    with pytest.raises(InputError):
        save_mask(tmp_path / "c.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError):
        save_mask(tmp_path / "c.jpg", mask)


def test_sha256_helpers(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_bytes(b"abc") == expected == sha256_file(tmp_path / "f")
    with pytest.raises(InputError):
        sha256_file(tmp_path / "missing")


def test_atomic_write_text_and_json(tmp_path):
    atomic_write_text(tmp_path / "sub" / "t.txt", "héllo")
    assert (tmp_path / "sub" / "t.txt").read_bytes() == "héllo".encode()
    obj = {"z": 1, "a": ["é", Path("x/y")], "n": np.float32(0.5)}
    atomic_write_json(tmp_path / "m.json", obj)
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and "é" in text and text.index('"z"') < text.index('"a"')
    assert text.startswith('{\n  "z": 1')
    assert json.loads(text) == {"z": 1, "a": ["é", "x/y"], "n": 0.5}
    mode = stat.S_IMODE(os.stat(tmp_path / "m.json").st_mode)
    assert mode == 0o666 & ~imageio._current_umask()


def test_atomic_write_uses_temp_in_same_folder(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(imageio.os, "replace", spy)
    atomic_write_bytes(tmp_path / "out.bin", b"data")
    ((src, dst),) = seen
    assert src.parent == dst.parent == tmp_path
    assert src.name.startswith(".out.bin.") and src.name.endswith(".tmp")
    assert dst.read_bytes() == b"data" and not src.exists()


def test_atomic_write_failure_leaves_target_unchanged(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    target.write_text("old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"new": True})
    with pytest.raises(OSError, match="disk full"):
        save_image(tmp_path / "img.png", _noise(4, 4))
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_atomic_write_failure_during_write_removes_temp(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

_shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_png_round_trip_rgb_is_lossless(data):
    h, w = data.draw(_shapes)
    rgb = data.draw(arrays(np.uint8, (h, w, 3)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.png"
        digest = save_image(path, rgb)
        img = load_image(path)
        assert digest == sha256_file(path)
    assert img.alpha is None
    assert np.array_equal(img.rgb, rgb)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_png_round_trip_rgba_is_lossless(data):
    h, w = data.draw(_shapes)
    rgb = data.draw(arrays(np.uint8, (h, w, 3)))
    alpha = data.draw(arrays(np.uint8, (h, w)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.png"
        save_image(path, rgb, alpha=alpha)
        img = load_image(path)
    assert img.alpha is not None
    assert np.array_equal(img.alpha, alpha)
    assert np.array_equal(img.rgb, rgb)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_mask_round_trip_is_lossless(data):
    h, w = data.draw(_shapes)
    mask = data.draw(arrays(np.uint8, (h, w)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.png"
        save_mask(path, mask)
        with Image.open(path) as im:
            assert im.mode == "L"
            assert np.array_equal(np.asarray(im), mask)


def test_jpeg_bytes_are_the_same_in_every_process(tmp_path):
    """The embedded sRGB profile carries no creation time: a re-render writes the same JPEG bytes."""
    import subprocess
    import sys

    code = ("import hashlib, numpy as np; from pipelines.imageio import save_image; "
            "import sys; print(save_image(sys.argv[1], np.full((16, 24, 3), 90, np.uint8), quality=92))")
    shas = {subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{i}.jpg")], capture_output=True, text=True,
                           check=True).stdout.strip() for i in range(2)}
    assert len(shas) == 1
    from PIL import Image

    with Image.open(tmp_path / "0.jpg") as im:
        icc = im.info["icc_profile"]
    assert icc[24:36] == bytes([7, 208, 0, 1, 0, 1]) + bytes(6)  # 2000-01-01 00:00:00

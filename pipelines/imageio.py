"""Image input/output: safe loading to sRGB ``uint8`` arrays and atomic writes.

Every image that enters Vitrine goes through :func:`load_image`, which

1. refuses files whose header declares more than ``max_pixels`` pixels, *before* decoding them;
2. decodes fully, so truncated or corrupt files fail here instead of loading as grey;
3. takes the first frame of animated GIF/WebP files;
4. applies the EXIF orientation;
5. scales 16-bit and float data to 8 bits, splits any alpha channel off;
6. converts an embedded ICC profile (RGB, CMYK or grey) to sRGB;
7. optionally downscales so that the longer side is at most ``max_side``.

Every file Vitrine writes goes through a temporary file in the target's directory, ``fsync`` and
``os.replace``, so a reader never sees a half-written file, even after a crash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from pipelines.errors import InputError

logger = logging.getLogger(__name__)

MAX_PIXELS = 120_000_000
"""Default guard: images whose header declares more pixels than this are refused before decoding."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
"""File suffixes (lower case) that Vitrine treats as product images and can write."""

_EXIF_ORIENTATION_TAG = 0x0112
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ICC_SPACE_TO_MODE = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}
_CHUNK = 1 << 20
# What Pillow raises on malformed EXIF data.
_EXIF_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, SyntaxError, struct.error)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


@dataclass
class LoadedImage:
    """An image decoded by :func:`load_image`.

    Args:
        rgb (`np.ndarray`):
            ``(H, W, 3)`` ``uint8`` sRGB pixels in ``[0, 255]``, upright (EXIF orientation applied).
        alpha (`np.ndarray` or `None`):
            ``(H, W)`` ``uint8`` opacity, 255 = opaque, 0 = transparent. Present when the source has
            an alpha channel or a transparency key (RGBA, LA, palette with ``tRNS``), else `None`.
        path (`Path`): the file that was read.
        source_mode (`str`):
            Pillow's mode of the file as stored (``"RGB"``, ``"CMYK"``, ``"I;16"``, ``"P"``...).
        source_size (`tuple[int, int]`):
            ``(width, height)`` of the upright image at full resolution, before any downscale.
        exif_rotated (`bool`): whether an EXIF orientation other than "normal" was applied.
        icc_converted (`bool`): whether an embedded, non-sRGB ICC profile was converted to sRGB.
        scale (`float`): ``rgb`` size divided by ``source_size``; 1.0 unless downscaled by ``max_side``.
        n_frames (`int`, *optional*, defaults to 1):
            number of frames in the file; when more than 1 (animated GIF/WebP) only the first was read.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path
    source_mode: str
    source_size: tuple[int, int]
    exif_rotated: bool
    icc_converted: bool
    scale: float = 1.0
    n_frames: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of ``rgb``."""
        return (int(self.rgb.shape[1]), int(self.rgb.shape[0]))


# --------------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks.

    Raises:
        InputError: the file cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror or e}", path) from e
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=1)
def _srgb_icc_bytes() -> bytes:
    """The sRGB ICC profile embedded in JPEGs, the same bytes in every process: LittleCMS stamps a new
    profile with the current time (header bytes 24-35) and an MD5 profile ID over it (bytes 84-99), which
    made re-rendered JPEGs differ byte for byte. The date is fixed (2000-01-01 00:00:00) and the ID left
    zero ("not computed", allowed by ICC.1)."""
    data = bytearray(_srgb_profile().tobytes())
    if len(data) >= 128:
        data[24:36] = (2000).to_bytes(2, "big") + (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + bytes(6)
        data[84:100] = bytes(16)
    return bytes(data)


def _allow_pil_pixels(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb guard at least as permissive as ours.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and raises above twice that, at ``Image.open`` time.
    We only ever raise that global (never lower it) so that Pillow's guard fires only for images our
    own check refuses anyway; we turn Pillow's error into an :class:`InputError`.
    """
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _bomb_error(path: Path, error: Exception, max_pixels: int) -> InputError:
    numbers = re.findall(r"(\d+) pixels", str(error))
    if numbers:
        declared = int(numbers[0])
        return InputError(
            f"the image declares {declared:,} pixels, more than the limit of {max_pixels:,}; "
            "refused before decoding (possible decompression bomb). Raise max_pixels if it is genuine.",
            path,
        )
    return InputError(f"refused before decoding (possible decompression bomb): {error}", path)


def _to_uint8_gray(im: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit int / float single-channel image to an 8-bit ``L`` image.

    ``I;16*`` and ``I`` are taken as ``[0, 65535]`` (as PNG stores them) and mapped with rounding,
    so 65535 -> 255 and 32768 -> 128. ``F`` is taken as ``[0, 1]`` when its maximum is at most 1,
    else as ``[0, 255]``, or ``[0, 65535]`` when its maximum exceeds 255.
    """
    arr = np.asarray(im)
    if im.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(arr.max()) if arr.size else 0.0
        full = 1.0 if top <= 1.0 else (255.0 if top <= 255.0 else 65535.0)
        out = np.clip(np.rint(arr * (255.0 / full)), 0, 255).astype(np.uint8)
    else:
        arr = np.clip(arr.astype(np.int64), 0, 65535)
        out = ((arr * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(out)


SRGB_MATCH_TOLERANCE = 2
"""An RGB profile counts as sRGB when converting a grid of test colours through it to sRGB moves none of
them by more than this many 8-bit levels (the colours would be stored unchanged anyway)."""

# 9 x 9 x 9 = 729 test colours spanning the RGB cube (0, 32, ..., 224, 255 per channel).
_LEVELS = np.array([0, 32, 64, 96, 128, 160, 192, 224, 255], dtype=np.uint8)
_TEST_PATCH = np.stack(np.meshgrid(_LEVELS, _LEVELS, _LEVELS, indexing="ij"), axis=-1).reshape(27, 27, 3)


@lru_cache(maxsize=64)
def _icc_is_srgb(icc: bytes) -> bool:
    """True when the RGB profile ``icc`` maps colours as sRGB does, decided by its contents, not its name.

    Converts `_TEST_PATCH` through the profile to sRGB; sRGB (whatever its name or vendor) leaves every colour
    within `SRGB_MATCH_TOLERANCE`, while a linear-light profile, Display P3, Adobe RGB or ProPhoto moves many
    by far more. A profile named "sRGB ..." with other primaries or tone curves is therefore converted.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB":
            return False
        out = ImageCms.profileToProfile(Image.fromarray(_TEST_PATCH), profile, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return False
    diff = np.abs(np.asarray(out, dtype=np.int16) - _TEST_PATCH.astype(np.int16))
    return int(diff.max()) <= SRGB_MATCH_TOLERANCE


def _convert_icc(color: Image.Image, icc: bytes, path: Path) -> tuple[Image.Image, bool]:
    """Convert ``color`` (mode ``L``, ``RGB`` or ``CMYK``) from its embedded profile to sRGB ``RGB``.

    Returns the converted image and whether a conversion happened. A profile that cannot be parsed,
    or whose colour space does not match the pixel data, is ignored with a warning: the pixels are
    still usable, as every browser would show them.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        logger.warning("%s: ignoring an unreadable embedded ICC profile (%s)", path, e)
        return color, False
    if color.mode == "RGB" and _icc_is_srgb(bytes(icc)):  # by contents: the name proves nothing
        return color, False
    space = profile.profile.xcolor_space.strip()
    expected_mode = _ICC_SPACE_TO_MODE.get(space)
    if expected_mode != color.mode:
        logger.warning(
            "%s: ignoring an embedded ICC profile for colour space %r on %s pixel data",
            path,
            space,
            color.mode,
        )
        return color, False
    try:
        converted = ImageCms.profileToProfile(color, profile, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, ValueError, OSError) as e:
        logger.warning("%s: could not apply the embedded ICC profile (%s); using raw values", path, e)
        return color, False
    return converted, True


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise InputError("file not found", path) from e
    except OSError as e:
        raise InputError(f"cannot access the file: {e.strerror or e}", path) from e
    if path.is_dir():
        raise InputError("is a folder, not an image file", path)
    if st.st_size == 0:
        raise InputError("the file is empty (0 bytes)", path)


def _validate_limits(path: Path, max_pixels: int, max_side: int | None) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(f"max_pixels must be a positive integer, got {max_pixels!r}", path, "max_pixels")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1):
        raise InputError(f"max_side must be a positive integer or None, got {max_side!r}", path, "max_side")


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Step 1: open lazily (only the header is parsed)."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e, max_pixels) from e
    except UnidentifiedImageError as e:
        raise InputError("not an image file Pillow can read (unknown or unsupported format)", path) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"cannot read the image header: {e}", path) from e


def _check_declared_size(im_file: Image.Image, path: Path, max_pixels: int) -> int:
    """Step 2: refuse oversized images before decoding. Returns the number of frames."""
    stored_w, stored_h = im_file.size
    if stored_w < 1 or stored_h < 1:
        raise InputError(f"the image declares an empty size {stored_w}x{stored_h}", path)
    if stored_w * stored_h > max_pixels:
        raise InputError(
            f"the image declares {stored_w}x{stored_h} = {stored_w * stored_h:,} pixels, more than the "
            f"limit of {max_pixels:,}; refused before decoding. Raise max_pixels if it is genuine.",
            path,
        )
    try:  # counting frames parses every frame's header: a corrupt one raises anything at all
        n_frames = int(getattr(im_file, "n_frames", 1) or 1)
    except Exception as e:
        raise InputError(
            f"the image's frames cannot be read (the file is truncated or corrupt): {e!r}", path
        ) from e
    if n_frames > 1:
        logger.info("%s: animated image with %d frames; using the first frame", path, n_frames)
    return n_frames


def _decode(im_file: Image.Image, path: Path, max_pixels: int, max_side: int | None) -> None:
    """Step 3: decode fully (first frame). JPEGs can be decoded at 1/2, 1/4 or 1/8 scale when downscaling."""
    stored_w, stored_h = im_file.size
    if max_side is not None and im_file.format == "JPEG" and max(stored_w, stored_h) > max_side:
        factor = max_side / max(stored_w, stored_h)
        im_file.draft(im_file.mode, (max(1, int(stored_w * factor)), max(1, int(stored_h * factor))))
    try:
        im_file.load()
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e, max_pixels) from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, EOFError, struct.error, zlib errors...
        raise InputError(
            f"the image data cannot be decoded (the file is truncated or corrupt): {e}", path
        ) from e


def _exif_upright(im: Image.Image, path: Path) -> tuple[Image.Image, bool, int]:
    """Step 4: apply the EXIF orientation. Returns the image, whether it was rotated, and the orientation."""
    exif_rotated = False
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION_TAG, 1) or 1)
    except _EXIF_ERRORS as e:  # corrupt EXIF must not make a good photo unreadable
        logger.warning("%s: ignoring unreadable EXIF data (%s)", path, e)
        orientation = 1
    if orientation in range(2, 9):
        try:
            im = ImageOps.exif_transpose(im)
            exif_rotated = True
        except _EXIF_ERRORS as e:
            logger.warning("%s: could not apply EXIF orientation %d (%s)", path, orientation, e)
    elif orientation != 1:
        logger.warning("%s: ignoring invalid EXIF orientation %d", path, orientation)
    return im, exif_rotated, orientation


def _split_alpha(im: Image.Image, path: Path) -> tuple[Image.Image, Image.Image | None]:
    """Step 5: 8 bits per channel, and the alpha channel split off. Returns (colour, alpha or `None`)."""
    alpha_img: Image.Image | None = None
    if im.mode in _HIGH_BIT_DEPTH_MODES:
        color = _to_uint8_gray(im)
    elif im.mode in ("LA", "La"):
        la = im.convert("LA")
        color, alpha_img = la.getchannel("L"), la.getchannel("A")
    elif im.mode in _ALPHA_MODES or im.has_transparency_data:
        rgba = im.convert("RGBA")
        color, alpha_img = rgba.convert("RGB"), rgba.getchannel("A")
    elif im.mode == "1":
        color = im.convert("L")
    elif im.mode in ("L", "RGB", "CMYK"):
        color = im
    else:
        try:
            color = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise InputError(f"unsupported colour mode {im.mode!r}: {e}", path) from e
    return color, alpha_img


def _to_srgb(color: Image.Image, icc: bytes | None, path: Path) -> tuple[Image.Image, bool]:
    """Step 6: colour management to sRGB ``RGB``. Returns the image and whether an ICC profile was applied."""
    icc_converted = False
    if icc is not None:
        color, icc_converted = _convert_icc(color, icc, path)
    if color.mode != "RGB":
        color = color.convert("RGB")  # L -> grey RGB; CMYK without a profile -> Pillow's plain formula
    return color, icc_converted


def _downscale(color: Image.Image, alpha_img: Image.Image | None, max_side: int | None
               ) -> tuple[Image.Image, Image.Image | None]:
    """Step 7: Lanczos downscale so that the longer side is at most ``max_side`` (alpha premultiplied)."""
    w, h = color.size
    if max_side is None or max(w, h) <= max_side:
        return color, alpha_img
    factor = max_side / max(w, h)
    new_size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if alpha_img is None:
        return color.resize(new_size, Image.Resampling.LANCZOS), None
    rgba = color.copy()
    rgba.putalpha(alpha_img)
    rgba = rgba.resize(new_size, Image.Resampling.LANCZOS)  # premultiplied internally
    return rgba.convert("RGB"), rgba.getchannel("A")


def load_image(
    path: str | Path,
    *,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = None,
) -> LoadedImage:
    """Decode an image file to upright sRGB ``uint8`` pixels plus an optional alpha mask.

    Args:
        path (`str` or `Path`): the image file (JPEG, PNG, WebP, GIF or anything else Pillow reads).
        max_pixels (`int`, *optional*, defaults to `MAX_PIXELS` = 120,000,000):
            refuse files whose header declares more than ``width * height`` pixels, before decoding.
            Pillow's global ``Image.MAX_IMAGE_PIXELS`` is raised to this value if it is lower.
        max_side (`int`, *optional*, defaults to `None`):
            when set, downscale (Lanczos) so that the longer side is at most ``max_side`` pixels;
            never upscales. JPEGs are decoded at a reduced scale first when that is enough.

    Returns:
        `LoadedImage`: ``rgb`` ``(H, W, 3)`` ``uint8``, ``alpha`` ``(H, W)`` ``uint8`` or `None`, and
        what was done to the pixels (EXIF rotation, ICC conversion, scale, frame count).

    Raises:
        InputError: the file is missing, empty, not an image, truncated or corrupt, too large, or in a
            colour mode that cannot be converted. The message names the file and the problem.
    """
    path = Path(path)
    _validate_limits(path, max_pixels, max_side)
    _check_file(path)
    _allow_pil_pixels(max_pixels)
    # Truncated files must fail loudly instead of loading as grey: this is Pillow's default, and
    # Vitrine relies on it everywhere.
    ImageFile.LOAD_TRUNCATED_IMAGES = False

    with _open(path, max_pixels) as im_file:  # 1. the header only
        stored_w, stored_h = im_file.size
        source_mode = im_file.mode
        n_frames = _check_declared_size(im_file, path, max_pixels)  # 2. refused before decoding
        _decode(im_file, path, max_pixels, max_side)  # 3. fully decoded (a JPEG draft when downscaling)
        im: Image.Image = im_file
        icc = im.info.get("icc_profile") or None
        im, exif_rotated, orientation = _exif_upright(im, path)  # 4. EXIF orientation
        # Size at full resolution, upright (a JPEG draft may have reduced ``im.size``).
        if orientation in (5, 6, 7, 8) and exif_rotated:
            source_size = (stored_h, stored_w)
        else:
            source_size = (stored_w, stored_h)
        color, alpha_img = _split_alpha(im, path)  # 5. bit depth and alpha
        color, icc_converted = _to_srgb(color, icc, path)  # 6. colour management
        color, alpha_img = _downscale(color, alpha_img, max_side)  # 7. downscale
        rgb = np.array(color, dtype=np.uint8)
        alpha = np.array(alpha_img, dtype=np.uint8) if alpha_img is not None else None

    scale = 1.0
    if (rgb.shape[1], rgb.shape[0]) != source_size:
        scale = max(rgb.shape[0], rgb.shape[1]) / max(source_size)
    return LoadedImage(
        rgb=rgb,
        alpha=alpha,
        path=path,
        source_mode=source_mode,
        source_size=source_size,
        exif_rotated=exif_rotated,
        icc_converted=icc_converted,
        scale=scale,
        n_frames=n_frames,
    )


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never a mix.

    Writes ``.<name>.<random>.tmp`` in the same folder, flushes and fsyncs it, then ``os.replace``s it
    onto ``path``; the temporary file is removed if anything fails. Parent folders are created.
    """
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_write_bytes`).

    Formatting: ``indent=2``, keys in insertion order, non-ASCII kept as UTF-8, trailing newline.
    `Path` values are written as POSIX strings and numpy scalars/arrays as numbers/lists.
    """
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=_json_default)
    atomic_write_text(path, text + "\n")


def _check_rgb(path: Path, rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InputError(f"rgb must be an (H, W, 3) uint8 array, got {got}", path)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(f"cannot save an empty image of shape {rgb.shape}", path)


def _check_mask(path: Path, mask: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype not in (np.uint8, np.bool_):
        got = (
            f"{mask.dtype} array of shape {mask.shape}"
            if isinstance(mask, np.ndarray)
            else type(mask).__name__
        )
        raise InputError(f"{name} must be an (H, W) uint8 (or bool) array, got {got}", path)
    if shape and mask.shape != shape:
        raise InputError(f"{name} has shape {mask.shape}, the image has {shape}", path)
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8) * 255
    return mask


def save_image(
    path: str | Path,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    quality: int = 92,
    compress_level: int = 6,
) -> str:
    """Encode and atomically write an image; the format follows the suffix.

    Args:
        path (`str` or `Path`): target file; ``.png``, ``.jpg``/``.jpeg`` or ``.webp`` (any case).
        rgb (`np.ndarray`): ``(H, W, 3)`` ``uint8`` sRGB pixels.
        alpha (`np.ndarray`, *optional*, defaults to `None`):
            ``(H, W)`` ``uint8`` opacity (255 = opaque; bool is taken as 0/255). PNG and WebP only:
            JPEG has no alpha channel, so passing one with a JPEG target is an error.
        quality (`int`, *optional*, defaults to 92): JPEG/WebP quality in ``[1, 100]``; ignored for PNG.
        compress_level (`int`, *optional*, defaults to 6): PNG zlib level in ``[0, 9]`` (1 is ~5x faster
            than 6 for large images, files ~30% larger); ignored for JPEG/WebP.

    JPEGs are written with an sRGB ICC profile embedded. No EXIF is written, so the pixels are upright.

    Returns:
        `str`: hex sha256 of the bytes written.

    Raises:
        InputError: unsupported suffix, wrong array shape/dtype, alpha with JPEG, quality out of range.
    """
    path = Path(path)
    _check_rgb(path, rgb)
    if alpha is not None:
        alpha = _check_mask(path, alpha, rgb.shape[:2], "alpha")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"quality must be an integer in [1, 100], got {quality!r}", path, "quality")
    suffix = path.suffix.lower()
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if alpha is not None:
        im.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    buf = io.BytesIO()
    if suffix == ".png":
        im.save(buf, format="PNG", compress_level=int(compress_level))
    elif suffix in (".jpg", ".jpeg"):
        if alpha is not None:
            raise InputError("JPEG cannot store an alpha channel; save as .png or .webp instead", path)
        im.save(buf, format="JPEG", quality=quality, icc_profile=_srgb_icc_bytes())
    elif suffix == ".webp":
        im.save(buf, format="WEBP", quality=quality)
    else:
        raise InputError(
            f"cannot save images with suffix {path.suffix!r}; use .png, .jpg, .jpeg or .webp", path
        )
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def save_mask(path: str | Path, mask: np.ndarray, *, compress_level: int = 1) -> str:
    """Atomically write a mask as an 8-bit greyscale PNG (mode ``L``).

    Args:
        path (`str` or `Path`): target file; its suffix should be ``.png``.
        mask (`np.ndarray`): ``(H, W)`` ``uint8`` in ``[0, 255]`` (255 = foreground), or bool (-> 0/255).
        compress_level (`int`, *optional*, defaults to 1): PNG zlib level in ``[0, 9]``; masks are mostly
            flat, so level 1 is ~2x faster than 6 for files ~1.5-2x larger (still tens of kB at 2000 px).

    Returns:
        `str`: hex sha256 of the bytes written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"masks are saved as PNG; got suffix {path.suffix!r}", path)
    mask = _check_mask(path, mask, (), "mask")
    if mask.shape[0] < 1 or mask.shape[1] < 1:
        raise InputError(f"cannot save an empty mask of shape {mask.shape}", path)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask)).save(buf, format="PNG", compress_level=int(compress_level))
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)

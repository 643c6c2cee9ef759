"""Procedural backgrounds and contact shadows (classic engine, no model weights)."""

from __future__ import annotations

import functools
from typing import Literal

import cv2
import numpy as np

BackgroundKind = Literal["white", "studio", "texture"]

#: Studio palettes (top colour, floor colour), RGB. A seed picks one.
STUDIO_PALETTES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((236, 233, 228), (214, 209, 202)),  # warm grey
    ((226, 232, 238), (199, 207, 216)),  # cool grey
    ((240, 230, 220), (222, 205, 190)),  # sand
    ((214, 226, 220), (188, 204, 196)),  # sage
)
TEXTURE_TINTS: tuple[tuple[int, int, int], ...] = ((232, 226, 216), (220, 224, 228), (236, 222, 214), (226, 230, 220))


def white(size: tuple[int, int]) -> np.ndarray:
    """Pure white (#FFFFFF) canvas. `size` is (width, height); returns HxWx3 uint8."""
    w, h = size
    return np.full((h, w, 3), 255, np.uint8)


def studio_sweep(size: tuple[int, int], seed: int = 0, horizon: float = 0.72) -> np.ndarray:
    """A seamless studio sweep: a wall gradient curving into a floor, with a soft vignette.

    Args:
        size (`tuple[int, int]`): (width, height) in pixels.
        seed (`int`, *optional*, defaults to 0): picks the palette (deterministic).
        horizon (`float`, *optional*, defaults to 0.72): where the wall meets the floor, as a share of
            the height (0 = top, 1 = bottom).

    Returns:
        `np.ndarray`: HxWx3 uint8 RGB.
    """
    w, h = size
    top, floor = (np.array(c, np.float32) for c in STUDIO_PALETTES[seed % len(STUDIO_PALETTES)])
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    # Smooth S-curve around the horizon: wall above, floor below.
    t = 1.0 / (1.0 + np.exp(-(y - horizon) / 0.06))
    wall_light = 1.0 + 0.04 * (1.0 - y)  # brighter near the top light
    col = (top * (1 - t) * wall_light + floor * t)[:, None, :]  # (h, 1, 3)
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    yy = (y - 0.45) / 0.9
    vignette = 1.0 - 0.10 * np.clip(x**2 + yy**2, 0, 2) / 2.0
    img = col * vignette[:, :, None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def soft_texture(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A soft plaster/linen texture: tinted low-frequency noise with a fine grain.

    Args:
        size (`tuple[int, int]`): (width, height) in pixels.
        seed (`int`, *optional*, defaults to 0): seeds the noise and picks the tint (deterministic).

    Returns:
        `np.ndarray`: HxWx3 uint8 RGB.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    tint = np.array(TEXTURE_TINTS[seed % len(TEXTURE_TINTS)], np.float32)
    coarse = rng.standard_normal((max(2, h // 16), max(2, w // 16))).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), sigmaX=max(w, h) / 16 / 60 * 4)
    coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    coarse /= max(1e-6, float(np.abs(coarse).max()))
    grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.8)
    lum = 1.0 + 0.035 * coarse + 0.012 * grain
    img = tint[None, None, :] * lum[:, :, None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_background(kind: BackgroundKind, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Build a background of the given kind (``white``, ``studio`` or ``texture``).

    Procedural backgrounds depend only on (kind, size, seed), so the last few are cached per process
    (`_cached_background`); the caller gets its own writable copy.
    """
    if kind == "white":
        return white(size)
    if kind not in ("studio", "texture"):
        raise ValueError(f"unknown background kind {kind!r}; expected one of white, studio, texture")
    return _cached_background(kind, (int(size[0]), int(size[1])), int(seed)).copy()


@functools.lru_cache(maxsize=8)
def _cached_background(kind: str, size: tuple[int, int], seed: int) -> np.ndarray:
    img = studio_sweep(size, seed) if kind == "studio" else soft_texture(size, seed)
    img.flags.writeable = False
    return img


def contact_shadow(mask: np.ndarray, *, strength: float = 0.35, spread: float = 0.04) -> np.ndarray:
    """Shadow intensity map for an object standing on the floor of a scene.

    A flattened, blurred ellipse under the object's base plus a faint soft drop shadow of the whole
    silhouette.

    Args:
        mask (`np.ndarray`): HxW uint8 object mask in output coordinates (nonzero = object).
        strength (`float`, *optional*, defaults to 0.35): darkest darkening, in [0, 1].
        spread (`float`, *optional*, defaults to 0.04): blur radius as a share of the object's height.

    Returns:
        `np.ndarray`: HxW float32 in [0, strength]; multiply the background by ``1 - shadow``.
    """
    h, w = mask.shape
    if not mask.any():
        return np.zeros((h, w), np.float32)
    # Work at reduced resolution: the shadow is smooth, and large blurs at full size are slow.
    f = max(1, min(h, w) // 256)
    small = cv2.resize(mask, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) if f > 1 else mask
    sh_, sw_ = small.shape
    ys, xs = np.nonzero(small > 127)
    if len(xs) == 0:
        ys, xs = np.nonzero(small)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    obj_h, obj_w = y1 - y0 + 1, x1 - x0 + 1
    base = np.zeros((sh_, sw_), np.float32)
    # Width of the object's footprint: the mask's extent in its lowest 8%.
    low = small[max(y0, y1 - max(1, obj_h // 12)) : y1 + 1] > 127
    cols = np.nonzero(low.any(axis=0))[0]
    fx0, fx1 = (cols.min(), cols.max()) if len(cols) else (x0, x1)
    center = (int((fx0 + fx1) / 2), int(y1))
    axes = (max(1, int((fx1 - fx0) / 2 * 1.15)), max(1, int(obj_h * 0.035)))
    cv2.ellipse(base, center, axes, 0, 0, 360, 1.0, thickness=-1)
    sigma = max(0.5, spread * obj_h)
    base = cv2.GaussianBlur(base, (0, 0), sigma)
    drop = cv2.GaussianBlur((small > 127).astype(np.float32), (0, 0), sigma * 2.5)
    drop = np.roll(drop, (int(obj_h * 0.01), int(obj_w * 0.02)), axis=(0, 1))
    shadow = np.maximum(base / max(base.max(), 1e-6), 0.25 * drop)
    if f > 1:
        shadow = cv2.resize(shadow, (w, h), interpolation=cv2.INTER_LINEAR)
    return (strength * np.clip(shadow, 0, 1)).astype(np.float32)


def apply_shadow(background: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """Darken an HxWx3 uint8 background by an HxW float shadow map in [0, 1].

    Only the bounding box of the shadow's nonzero pixels is computed (elsewhere the factor is exactly 1 and
    the background is kept as it is): the same pixels as the whole-frame computation.
    """
    out = background.copy()
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(shadow > 0).view(np.uint8))
    if w == 0 or h == 0:
        return out
    sl = (slice(y, y + h), slice(x, x + w))
    dark = background[sl].astype(np.float32) * (1.0 - shadow[sl][:, :, None])
    out[sl] = np.clip(np.round(dark), 0, 255).astype(np.uint8)
    return out

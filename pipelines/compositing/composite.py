"""Placing a product on a canvas, alpha compositing, seam bands and the preservation check.

Every engine goes through these functions, so the guarantee is the same for all of them: inside the
*preserve mask* (the product mask eroded by a few pixels, in output coordinates) the output's pixels
are exactly the input photo's pixels after the recorded :class:`Placement` transform. Generation and
seam inpainting may only touch pixels outside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image

from pipelines.errors import InputError

#: PIL resampling filters by the names recorded in manifests.
RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Placement:
    """Where a product from an input photo lands on an output canvas.

    The transform is: crop the input (sRGB, EXIF-applied) to ``crop_box``, resize the crop to
    ``resized_size`` with PIL's ``Image.resize`` and the ``resample`` filter, paste it at ``offset``.
    A point (x, y) of the input maps to ``((x - crop_box[0]) * scale_x + offset[0],
    (y - crop_box[1]) * scale_y + offset[1])`` on the canvas.

    Attributes:
        canvas_size (`tuple[int, int]`): (width, height) of the output.
        crop_box (`tuple[int, int, int, int]`): XYXY pixels in the input (x1, y1 exclusive).
        resized_size (`tuple[int, int]`): (width, height) of the crop after resizing.
        offset (`tuple[int, int]`): top-left (x, y) of the resized crop on the canvas, integer pixels.
            May be negative or extend past the canvas; the part outside is clipped.
        resample (`str`): one of ``nearest``, ``bilinear``, ``bicubic``, ``lanczos``.
    """

    canvas_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]
    resized_size: tuple[int, int]
    offset: tuple[int, int]
    resample: str = "lanczos"

    @property
    def scale(self) -> tuple[float, float]:
        """(scale_x, scale_y): resized size over crop size."""
        cw = self.crop_box[2] - self.crop_box[0]
        ch = self.crop_box[3] - self.crop_box[1]
        return self.resized_size[0] / cw, self.resized_size[1] / ch

    def to_json(self) -> dict:
        d = asdict(self)
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        d["scale"] = list(self.scale)
        d["library"] = "PIL.Image.resize"
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Placement":
        return cls(
            canvas_size=tuple(d["canvas_size"]),
            crop_box=tuple(d["crop_box"]),
            resized_size=tuple(d["resized_size"]),
            offset=tuple(d["offset"]),
            resample=d["resample"],
        )


def fit_placement(
    bbox: tuple[int, int, int, int],
    canvas_size: tuple[int, int],
    *,
    fill: float = 0.85,
    anchor: str = "center",
    margin_bottom: float = 0.08,
    resample: str = "lanczos",
) -> Placement:
    """Compute the placement that makes a product's box fill ``fill`` of the canvas's limiting side.

    Args:
        bbox (`tuple[int, int, int, int]`): XYXY box of the product in the input photo.
        canvas_size (`tuple[int, int]`): (width, height) of the output canvas.
        fill (`float`, *optional*, defaults to 0.85): the product's longer side over the canvas's
            matching side (the usual marketplace main-image rule is ~85%), in (0, 1].
        anchor (`str`, *optional*, defaults to ``"center"``): ``center``, or ``floor`` to stand the
            product on the floor ``margin_bottom`` above the canvas's lower edge.
        margin_bottom (`float`, *optional*, defaults to 0.08): floor margin as a share of the height.
        resample (`str`, *optional*, defaults to ``"lanczos"``): PIL filter name.

    Returns:
        `Placement`.
    """
    if not 0 < fill <= 1:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"unknown resample filter {resample!r}; expected one of {sorted(RESAMPLE_FILTERS)}")
    x0, y0, x1, y1 = bbox
    bw, bh = x1 - x0, y1 - y0
    if bw <= 0 or bh <= 0:
        raise ValueError(f"empty product box {bbox}")
    cw, ch = canvas_size
    s = min(fill * cw / bw, fill * ch / bh)
    rw, rh = max(1, int(round(bw * s))), max(1, int(round(bh * s)))
    ox = (cw - rw) // 2
    oy = (ch - rh) // 2 if anchor == "center" else int(round(ch * (1 - margin_bottom))) - rh
    return Placement(canvas_size=(cw, ch), crop_box=(x0, y0, x1, y1), resized_size=(rw, rh), offset=(ox, oy),
                     resample=resample)


def render_layer(image: np.ndarray, placement: Placement, *, mode: str = "RGB") -> np.ndarray:
    """Apply a placement to an input image (or mask), returning the canvas-sized layer.

    Args:
        image (`np.ndarray`): HxWx3 uint8 RGB, or HxW uint8 (alpha or mask; use ``mode="L"``).
        placement (`Placement`): the transform.
        mode (`str`, *optional*, defaults to ``"RGB"``): ``RGB`` or ``L``.

    Returns:
        `np.ndarray`: canvas-sized HxWx3 (or HxW) uint8; zero where the product does not reach.
    """
    pil = Image.fromarray(image, mode=None)
    if pil.mode != mode:
        raise InputError(f"render_layer expected a {mode} image, got {pil.mode}")
    crop = pil.crop(placement.crop_box)
    resized = crop.resize(placement.resized_size, RESAMPLE_FILTERS[placement.resample])
    cw, ch = placement.canvas_size
    canvas = Image.new(mode, (cw, ch), 0)
    canvas.paste(resized, placement.offset)
    return np.asarray(canvas).copy()


def erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Erode a 0/255 mask by ``pixels`` (elliptical kernel); 0 pixels returns a copy."""
    if pixels <= 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.erode(mask, k)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate a 0/255 mask by ``pixels`` (elliptical kernel); 0 pixels returns a copy."""
    if pixels <= 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask, k)


def _tiny(a: np.ndarray) -> bool:
    """True for arrays OpenCV's Python bindings may take for a scalar (a side under 8 px: e.g. a 1x1 or 4x1
    mask comes back 4x1); such arrays take the NumPy path, which gives the same result."""
    return a.ndim < 2 or a.shape[0] < 8 or a.shape[1] < 8


def _equals(a: np.ndarray, value: int) -> np.ndarray:
    """HxW uint8 0/255: 255 where ``a == value`` (``cv2.compare`` with a NumPy fallback for tiny arrays)."""
    if _tiny(a):
        return np.where(a == value, 255, 0).astype(np.uint8)
    return cv2.compare(a, value, cv2.CMP_EQ)


def _at_least(a: np.ndarray, value: int) -> np.ndarray:
    """HxW uint8 0/255: 255 where ``a >= value``."""
    if _tiny(a):
        return np.where(a >= value, 255, 0).astype(np.uint8)
    return cv2.compare(a, value, cv2.CMP_GE)


def preserve_mask(alpha_layer: np.ndarray, erode_px: int) -> np.ndarray:
    """The region whose pixels must come from the input unchanged: fully opaque alpha, eroded.

    Args:
        alpha_layer (`np.ndarray`): HxW uint8 alpha in output coordinates.
        erode_px (`int`): erosion in pixels (>= 1 keeps resampling ringing at the edge out).

    Returns:
        `np.ndarray`: HxW uint8 0/255.
    """
    opaque = _equals(np.ascontiguousarray(alpha_layer), 255)  # 255 where alpha == 255, else 0
    return erode(opaque, erode_px)


def seam_band(alpha_layer: np.ndarray, inner_px: int, outer_px: int) -> np.ndarray:
    """A band straddling the product's edge: ``outer_px`` outside it to ``inner_px`` inside it.

    The band never overlaps :func:`preserve_mask` when ``inner_px`` <= the preserve erosion.

    Args:
        alpha_layer (`np.ndarray`): HxW uint8 alpha in output coordinates.
        inner_px (`int`): how far the band reaches into the product.
        outer_px (`int`): how far it reaches out into the background.

    Returns:
        `np.ndarray`: HxW uint8 0/255.
    """
    a = np.ascontiguousarray(alpha_layer)
    hard = _at_least(a, 128)  # 0/255, as np.where(alpha >= 128, 255, 0)
    opaque = _equals(a, 255)
    outer = dilate(hard, outer_px)
    inner = erode(opaque, inner_px)
    if _tiny(a):
        return (outer & ~inner).astype(np.uint8)
    return cv2.bitwise_and(outer, cv2.bitwise_not(inner))


def alpha_composite(background: np.ndarray, foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite ``foreground`` over ``background`` with an 8-bit alpha.

    Exact where alpha is 0 (background kept) or 255 (foreground kept, bit for bit).

    Args:
        background (`np.ndarray`): HxWx3 uint8.
        foreground (`np.ndarray`): HxWx3 uint8.
        alpha (`np.ndarray`): HxW uint8, 255 = foreground.

    Returns:
        `np.ndarray`: HxWx3 uint8.
    """
    if background.shape != foreground.shape or background.shape[:2] != alpha.shape:
        raise ValueError(
            f"shape mismatch: background {background.shape}, foreground {foreground.shape}, alpha {alpha.shape}"
        )
    # Only the partly transparent pixels need arithmetic (the same integer formula as over the whole
    # frame); opaque ones are copied, transparent ones kept: bit-identical to the full-frame computation.
    alpha = np.ascontiguousarray(alpha)
    out = np.ascontiguousarray(background).copy()
    if _tiny(alpha):
        out[alpha == 255] = foreground[alpha == 255]
        idx = np.flatnonzero((alpha >= 1) & (alpha <= 254))
    else:
        cv2.copyTo(np.ascontiguousarray(foreground), cv2.compare(alpha, 255, cv2.CMP_EQ), out)
        idx = np.flatnonzero(cv2.inRange(alpha, 1, 254))
    if len(idx):
        a = alpha.reshape(-1)[idx].astype(np.uint16)[:, None]
        f = foreground.reshape(-1, 3)[idx].astype(np.uint16)
        b = background.reshape(-1, 3)[idx].astype(np.uint16)
        out.reshape(-1, 3)[idx] = ((f * a + b * (255 - a) + 127) // 255).astype(np.uint8)
    return out


def check_preserved(output: np.ndarray, layer: np.ndarray, keep: np.ndarray) -> dict:
    """Compare output and placed-input pixels inside a preserve mask.

    Returns:
        `dict` with ``pixels`` (count inside the mask), ``identical`` (count equal in all channels),
        ``identical_fraction`` (in [0, 1]; 1.0 for an empty mask) and ``max_abs_diff``.
    """
    sel = keep > 0
    n = int(np.count_nonzero(sel))
    if n == 0:
        return {"pixels": 0, "identical": 0, "identical_fraction": 1.0, "max_abs_diff": 0}
    diff = channel_max_abs_diff(output, layer)
    diff[~sel] = 0
    same = n - int(np.count_nonzero(diff))
    return {"pixels": n, "identical": same, "identical_fraction": same / n, "max_abs_diff": int(diff.max())}


def channel_max_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """HxW uint8: the largest absolute difference over the channels of two HxWxC uint8 images (exact;
    element-wise maxima of the channel planes, much faster than a reduction over the last axis)."""
    if _tiny(a):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.uint8)
    else:
        diff = cv2.absdiff(np.ascontiguousarray(a), np.ascontiguousarray(b))
    if diff.ndim == 2:
        return diff
    out = diff[:, :, 0].copy()
    for c in range(1, diff.shape[2]):
        np.maximum(out, diff[:, :, c], out=out)
    return out


def count_changed(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> int:
    """How many pixels differ in any channel between two uint8 images, optionally only where ``where`` is
    true (an HxW bool mask): ``int(np.any(a != b, axis=2)[where].sum())``, computed faster."""
    changed = channel_max_abs_diff(a, b) > 0
    if where is not None:
        changed &= where
    return int(np.count_nonzero(changed))

"""Analyst mask overrides: ``masks/<stem>.<target>.png`` (or ``product.yaml`` ``masks:``) painted over a
model's mask: white (>= 224) = include, black (<= 31) = exclude, grey = the model decides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pipelines.errors import InputError

if TYPE_CHECKING:
    from pipelines.imageio import LoadedImage
    from pipelines.product import Product


def mask_override_path(product: Product, image_path: Path, target: str) -> Path | None:
    """The analyst's override mask for ``target`` on ``image_path``, if one exists.

    Looked up, in order: ``product.yaml`` ``masks: {<target>: path}``, ``masks/<image stem>.<target>.png``,
    ``masks/<target>.png``.
    """
    spec_rel = product.spec.masks.get(target)
    if spec_rel:
        return product.dir / spec_rel
    for name in (f"{image_path.stem}.{target}.png", f"{target}.png"):
        p = product.dir / "masks" / name
        if p.is_file():
            return p
    return None


def read_override_mask(override_path: Path, source_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Read an analyst's override mask, checked against the source photo's size, at ``size`` (w, h).

    Args:
        override_path (`Path`): a greyscale PNG the size of the source photo (before any downscale).
        source_size (`tuple[int, int]`): (width, height) of the source photo.
        size (`tuple[int, int]`): (width, height) to return it at (nearest-neighbour resize).

    Returns:
        `np.ndarray`: HxW uint8 (white >= 224 include, black <= 31 exclude, grey: the model decides).

    Raises:
        `InputError`: unreadable file, or a size other than the photo's (naming both sizes).
    """
    try:
        with Image.open(override_path) as im:
            im.load()
            ov = im.convert("L")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read mask override: {exc}", path=override_path) from None
    if ov.size != tuple(source_size):
        raise InputError(
            f"mask override is {ov.size[0]}x{ov.size[1]} but the photo is {source_size[0]}x{source_size[1]}",
            path=override_path,
        )
    if ov.size != tuple(size):
        ov = ov.resize(tuple(size), Image.Resampling.NEAREST)
    return np.asarray(ov).copy()


def apply_override(alpha: np.ndarray, override_path: Path, source_size: tuple[int, int]) -> np.ndarray:
    """Apply an analyst's mask: white (>= 224) = include, black (<= 31) = exclude, grey = keep the model's.

    Args:
        alpha (`np.ndarray`): HxW uint8 model alpha.
        override_path (`Path`): a greyscale PNG the size of the source photo (before any downscale).
        source_size (`tuple[int, int]`): (width, height) of the source photo.

    Returns:
        `np.ndarray`: HxW uint8 alpha.
    """
    h, w = alpha.shape
    o = read_override_mask(override_path, source_size, (w, h))
    out = alpha.copy()
    out[o >= 224] = 255
    out[o <= 31] = 0
    return out


def apply_first_override(alpha: np.ndarray, image: LoadedImage, product: Product,
                         targets: tuple[str, ...]) -> tuple[np.ndarray, str | None]:
    """Apply the first override found for ``targets`` (in order) on ``image``.

    Returns:
        `tuple`: (alpha, the override's path relative to the product folder, or `None` when none was found).
    """
    for target in targets:
        ov = mask_override_path(product, image.path, target)
        if ov is not None:
            return apply_override(alpha, ov, image.source_size), str(ov.relative_to(product.dir))
    return alpha, None

"""The working resolution of a generation: the output's aspect ratio at the model's native area, at most
`MAX_UPSCALE` times smaller than the output, both sides multiples of what the pipeline needs; and the crop
around a seam band that the seam pass runs on. Plain geometry, shared by the scene pipeline, the try-on
pipeline and the memory planner (which sizes activations by the working area)."""

from __future__ import annotations

import math

import numpy as np


def work_size(size: tuple[int, int], side: int, multiple: int) -> tuple[int, int]:
    """The working resolution for an output of ``size``: the same aspect ratio, the area of ``side``².

    Args:
        size (`tuple[int, int]`): output (width, height).
        side (`int`): side of the square of equal area (the model's native side, e.g. 1024).
        multiple (`int`): both sides are rounded to a multiple of this (>= 1).

    Returns:
        `tuple[int, int]`: (width, height), each a positive multiple of ``multiple``.
    """
    w, h = size
    aspect = w / h
    ww = math.sqrt(side * side * aspect)
    hh = ww / aspect
    return (max(multiple, int(round(ww / multiple)) * multiple), max(multiple, int(round(hh / multiple)) * multiple))


#: No generated pixel is upscaled more than this to the output size (native-resolution outputs).
MAX_UPSCALE = 1.2
#: The largest working area (2048²): beyond it (outputs over ~6 MP) the upscale exceeds `MAX_UPSCALE`,
#: and the manifest's ``upscale`` says by how much.
MAX_WORK_PIXELS = 2048 * 2048


def native_work_size(size: tuple[int, int], side: int, multiple: int, *, max_upscale: float = MAX_UPSCALE,
                     max_pixels: int = MAX_WORK_PIXELS) -> tuple[int, int]:
    """The working size for an output of ``size`` such that it is upscaled at most ``max_upscale``×.

    Outputs up to the model's native area (``side``²) are generated at the native area (and scaled
    down, which loses nothing); larger ones at ``area / max_upscale²`` (at least the native area, at most
    ``max_pixels``), aspect kept, both sides multiples of ``multiple``.

    Returns:
        `tuple[int, int]`: (width, height).
    """
    w, h = size
    area = max(side * side, min(max_pixels, w * h / (max_upscale * max_upscale)))
    ws = work_size(size, max(1, int(math.sqrt(area))), multiple)
    # rounding down to the multiple may leave the upscale just above the limit: round up instead
    if w * h > side * side and max(w / ws[0], h / ws[1]) > max_upscale and w * h / (max_upscale ** 2) <= max_pixels:
        ws = (int(math.ceil(w / max_upscale / multiple)) * multiple, int(math.ceil(h / max_upscale / multiple)) * multiple)
    return ws


def upscale_factor(size: tuple[int, int], ws: tuple[int, int]) -> float:
    """How much a ``ws`` image is enlarged to ``size`` (the larger of the two axes; < 1 = reduced)."""
    return round(max(size[0] / ws[0], size[1] / ws[1]), 4)


def seam_crop(band: np.ndarray, pad_fraction: float = 0.125, min_pad: int = 16) -> tuple[int, int, int, int]:
    """XYXY box around the seam band's pixels, padded by ``pad_fraction`` of its longer side (at least
    ``min_pad`` px) for context, clipped to the image. The seam runs on this crop at output resolution."""
    ys, xs = np.nonzero(band)
    h, w = band.shape
    if len(ys) == 0:
        return 0, 0, w, h
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    pad = max(min_pad, int(round(pad_fraction * max(x1 - x0, y1 - y0))))
    return max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)


def native_side(pipe) -> int:
    """A pipeline's native resolution: its VAE's ``sample_size`` (1024 for FLUX.1 and SDXL)."""
    s = pipe.vae.config.sample_size
    return int(s[0] if isinstance(s, (list, tuple)) else s)


def size_multiple(pipe) -> int:
    """What both sides of a generated image must be a multiple of for this pipeline."""
    vsf = int(getattr(pipe, "vae_scale_factor", 8))
    unet = getattr(pipe, "unet", None)
    if unet is not None:  # the UNet halves the latents at each level; SDXL pipelines also want multiples of 8
        return math.lcm(8, vsf * 2 ** (len(unet.config.block_out_channels) - 1))
    return vsf * 2  # FLUX packs 2x2 latent patches

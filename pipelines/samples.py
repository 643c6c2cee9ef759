"""Sample products built at run time: real photos that ship inside installed packages, and product
shots drawn by code (with their exact masks, for tests). No third-party image is stored in the repo.

- ``astronaut``: scikit-image's ``data.astronaut()`` (NASA, public domain), an on-model photo.
- ``grace-hopper``: matplotlib's ``grace_hopper.jpg`` sample (US Navy, public domain), a portrait.
- ``tee-navy``, ``tote-canvas``, ``dress-red``: garments drawn on a studio-white background.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipelines.imageio import atomic_write_text, save_image

logger = logging.getLogger(__name__)


def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo: 512x512x3 uint8 RGB."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def grace_hopper() -> np.ndarray:
    """matplotlib's grace_hopper.jpg sample: 600x512x3 uint8 RGB."""
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB")).copy()


def _studio_white(size: int, rng: np.random.Generator) -> np.ndarray:
    """A near-white seamless backdrop with a faint vertical falloff and sensor noise."""
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    base = 251.0 - 5.0 * y
    noise = rng.normal(0, 1.0, (size, size, 1)).astype(np.float32)
    return np.clip(np.broadcast_to(base, (size, size, 3)) + noise, 0, 255).astype(np.uint8)


def _shade(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], rng: np.random.Generator) -> None:
    """Paint ``color`` with soft lighting and fabric grain into ``img`` where ``mask`` is set (in place)."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.18 * ((xx / w - 0.35) ** 2 + (yy / h - 0.3) ** 2)
    weave = 1.0 + 0.04 * np.sin(xx * 0.9) * np.sin(yy * 0.9) + rng.normal(0, 0.015, (h, w)).astype(np.float32)
    fabric = np.array(color, np.float32)[None, None, :] * (light * weave)[:, :, None]
    sel = mask > 0
    img[sel] = np.clip(fabric[sel], 0, 255).astype(np.uint8)


def draw_tee(size: int = 1024, color=(28, 44, 92), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A flat-lay T-shirt with a printed logo on a studio-white backdrop.

    Returns:
        `(rgb, mask)`: ``size`` x ``size`` x 3 uint8 photo and its exact ``size`` x ``size`` uint8 0/255 mask.
    """
    rng = np.random.default_rng(seed)
    s = size / 1024
    pts = np.array([[372, 170], [450, 150], [512, 205], [574, 150], [652, 170], [850, 300], [780, 430],
                    [700, 380], [700, 860], [324, 860], [324, 380], [244, 430], [174, 300]], np.float32) * s
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    img = _studio_white(size, rng)
    _shade(img, mask, color, rng)
    # Collar rib and a printed logo: detail that must survive pixel-exact.
    cv2.ellipse(img, (int(512 * s), int(168 * s)), (int(64 * s), int(44 * s)), 0, 20, 160, (200, 200, 210),
                max(2, int(8 * s)), cv2.LINE_AA)
    cv2.putText(img, "VITRINE", (int(380 * s), int(520 * s)), cv2.FONT_HERSHEY_DUPLEX, 1.9 * s, (236, 196, 64),
                max(1, int(4 * s)), cv2.LINE_AA)
    cv2.rectangle(img, (int(420 * s), int(560 * s)), (int(604 * s), int(600 * s)), (236, 196, 64), -1)
    return img, mask


def draw_tote(size: int = 1024, color=(196, 176, 140), seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A canvas tote bag whose handle encloses a hole showing the backdrop.

    Returns:
        `(rgb, mask)` as :func:`draw_tee`; the handle's opening is background in the mask.
    """
    rng = np.random.default_rng(seed)
    s = size / 1024
    mask = np.zeros((size, size), np.uint8)
    body = np.array([[280, 430], [744, 430], [800, 880], [224, 880]], np.float32) * s
    cv2.fillPoly(mask, [body.astype(np.int32)], 255)
    cv2.ellipse(mask, (int(512 * s), int(430 * s)), (int(170 * s), int(230 * s)), 0, 180, 360, 255,
                max(4, int(34 * s)))
    img = _studio_white(size, rng)
    _shade(img, mask, color, rng)
    cv2.circle(img, (int(512 * s), int(660 * s)), int(90 * s), (120, 40, 40), -1, cv2.LINE_AA)
    mask_in = mask > 0
    img[~mask_in] = _studio_white(size, np.random.default_rng(seed + 100))[~mask_in]
    return img, mask


def draw_dress(size: int = 1024, color=(178, 32, 48), seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A sleeveless A-line dress on a light grey studio backdrop."""
    rng = np.random.default_rng(seed)
    s = size / 1024
    pts = np.array([[430, 120], [470, 120], [512, 170], [554, 120], [594, 120], [640, 330], [610, 420],
                    [800, 900], [224, 900], [414, 420], [384, 330]], np.float32) * s
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    img = np.clip(_studio_white(size, rng).astype(np.int16) - 14, 0, 255).astype(np.uint8)
    _shade(img, mask, color, rng)
    for i in range(6):  # printed polka dots
        for j in range(4):
            c = (int((420 + j * 60 + (i % 2) * 30) * s), int((470 + i * 70) * s))
            if mask[min(c[1], size - 1), min(c[0], size - 1)]:
                cv2.circle(img, c, int(9 * s), (245, 236, 220), -1, cv2.LINE_AA)
    img[mask == 0] = np.clip(_studio_white(size, np.random.default_rng(seed + 7)).astype(np.int16) - 14, 0, 255
                             ).astype(np.uint8)[mask == 0]
    return img, mask


SAMPLE_SPECS: dict[str, str] = {
    "astronaut": (
        "title: Flight suit, on-model\ncategory: outerwear\ngarment_type: outerwear\n"
        "backgrounds: [white, studio, texture]\nseeds: [0]\ncommercial: false\n"
    ),
    "grace-hopper": (
        "title: Navy service uniform, portrait\ncategory: outerwear\ngarment_type: outerwear\n"
        "backgrounds: [white, studio]\nseeds: [1]\n"
    ),
    "tee-navy": (
        "title: Organic cotton tee, navy\ncategory: tops\ngarment_type: upper\n"
        "prompts:\n  garment: navy t-shirt\n  scene: bright minimal studio\nbackgrounds: [white, studio, texture]\n"
        "marketplaces: [amazon, zalando]\nseeds: [0, 1]\ncommercial: true\n"
    ),
    "tote-canvas": (
        "title: Canvas tote bag\ncategory: bags\ngarment_type: bag\nbackgrounds: [white, texture]\nseeds: [2]\n"
    ),
    "dress-red": (
        "title: Polka-dot summer dress\ncategory: dresses\ngarment_type: dress\nbackgrounds: [white, studio]\n"
        "seeds: [3]\n"
    ),
}


def sample_images(size: int = 1024) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Every sample SKU's photo and, for the drawn ones, its exact mask (``None`` for photos)."""
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "astronaut": (astronaut(), None),
        "grace-hopper": (grace_hopper(), None),
    }
    out["tee-navy"] = draw_tee(size)
    out["tote-canvas"] = draw_tote(size)
    out["dress-red"] = draw_dress(size)
    return out


def build_sample_products(dest: str | Path, *, size: int = 1024, skus: list[str] | None = None) -> list[Path]:
    """Write the sample product folders into ``dest``; existing identical files are left as they are.

    Args:
        dest (`str | Path`): the products root to create/fill.
        size (`int`, *optional*, defaults to 1024): side of the drawn product shots, pixels.
        skus (`list[str]`, *optional*): only these samples (default: all).

    Returns:
        `list[Path]`: the SKU folders written.
    """
    dest = Path(dest)
    written = []
    for sku, (rgb, _mask) in sample_images(size).items():
        if skus is not None and sku not in skus:
            continue
        folder = dest / sku
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".jpg" if sku in ("astronaut", "grace-hopper") else ".png"
        target = folder / f"front{ext}"
        if not target.exists():
            save_image(target, rgb, quality=95)
        spec = folder / "product.yaml"
        if not spec.exists() or spec.read_text(encoding="utf-8") != SAMPLE_SPECS[sku]:
            atomic_write_text(spec, SAMPLE_SPECS[sku])
        written.append(folder)
    logger.info("wrote %d sample products to %s", len(written), dest)
    return written

"""Save a mask painted by a reviewer as the SKU's override mask in the products folder.

The override is the file the engines already read (`pipelines.segmentation.overrides.mask_override_path`): the
``product.yaml`` ``masks: {product: ...}`` path if the spec names one, else ``masks/product.png`` (or, for a
SKU with several photos, ``masks/<main photo stem>.product.png``, so the other photos keep theirs). It is
a greyscale PNG the size of the original photo: white (>= 224) always product, black (<= 31) never
product, grey the model decides. The override is part of the SKU's content hash
(`pipelines.product.product_content_hash` hashes every file of the product folder), so the next
``vitrine run`` re-renders that SKU from it.

`save_mask_override` checks the PNG (decodable, the photo's size), writes it atomically, refuses any path
that resolves outside the products root (symbolic links included), and appends a ``mask-edit`` event to
``CATALOG/_review/decisions.jsonl``. It serves ``POST /api/mask`` and can be called from a notebook.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.errors import InputError
from pipelines.imageio import atomic_write_bytes
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.product import load_product, validate_sku
from pipelines.catalog.review import DECISIONS_VERSION, SOURCES, append_event, clean_text

#: Largest mask accepted, pixels (a 100-megapixel photo).
MAX_MASK_PIXELS = 100_000_000


def main_input(manifest: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """The manifest's main image input (role ``main``, else the first image with a normalized copy).

    Raises:
        `InputError`: the manifest lists no image input with ``source_size`` and ``normalized``.
    """
    images = [i for i in manifest.get("inputs") or [] if i.get("normalized") and i.get("source_size")]
    if not images:
        raise InputError("the manifest lists no image input to paint a mask on", path=path, key="inputs")
    return next((i for i in images if i.get("role") == "main"), images[0])


def decode_mask_png(data: bytes, size: tuple[int, int], *, where: str = "mask_png") -> np.ndarray:
    """Decode a painted mask and check it is ``size`` (width, height); returns HxW uint8 (greyscale).

    Raises:
        `InputError`: not a PNG, undecodable, too large, or another size (naming both sizes).
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InputError("the mask is not a PNG file", key=where)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_MASK_PIXELS:
                raise InputError(f"the mask is {im.width}x{im.height}, over {MAX_MASK_PIXELS} pixels", key=where)
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                grey = Image.new("RGBA", rgba.size, (128, 128, 128, 255))  # transparent = keep the model's
                grey.alpha_composite(rgba)
                mask = np.asarray(grey.convert("L")).copy()
            else:
                mask = np.asarray(im.convert("L")).copy()
    except InputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"the mask PNG cannot be decoded: {exc}", key=where) from None
    h, w = mask.shape
    if (w, h) != tuple(size):
        raise InputError(f"the mask is {w}x{h} but the photo is {size[0]}x{size[1]}", key=where)
    return mask


def override_target(product_dir: Path, products_root: Path, input_file: str) -> Path:
    """Where the override for ``input_file`` goes, checked to resolve inside the products root."""
    product = load_product(product_dir, root=products_root)
    rel = product.spec.masks.get("product")
    if rel:
        target = product_dir / rel
    elif len(product.images) > 1:
        target = product_dir / "masks" / f"{Path(input_file).stem}.product.png"
    else:
        target = product_dir / "masks" / "product.png"
    root = products_root.resolve()
    parent = target.parent
    # The folder may not exist yet: check the nearest existing ancestor, then the folder once made.
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.resolve().is_relative_to(root):
        raise InputError("the mask folder resolves outside the products root", path=parent)
    if target.is_symlink() and not target.resolve().is_relative_to(root):
        raise InputError("the mask file is a link to outside the products root", path=target)
    return target


def save_mask_override(
    catalog_dir: str | Path,
    products_dir: str | Path,
    sku: str,
    mask_png: bytes,
    *,
    reviewer: str | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """Write a painted mask as ``sku``'s override in the products folder and record a ``mask-edit`` event.

    Args:
        catalog_dir (`str | Path`): the catalog root (the SKU's manifest says which photo and its size).
        products_dir (`str | Path`): the products root (``PRODUCTS_DIR`` of ``vitrine run``).
        sku (`str`): the SKU; ``PRODUCTS_DIR/<sku>`` must be its product folder.
        mask_png (`bytes`): a PNG the size of the main photo before any downscale: white include, black
            exclude, grey keep the model's (transparent pixels count as grey).
        reviewer (`str`, *optional*): recorded with the event.
        source (`str`, *optional*, defaults to ``"api"``): one of `pipelines.catalog.review.SOURCES`.

    Returns:
        `dict`: the ``mask-edit`` event as written (``mask`` is relative to the product folder).

    Raises:
        `InputError`: unknown SKU, no product folder, a path outside the products root, a bad or
            wrongly sized PNG.
    """
    validate_sku(sku)
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}", key="source")
    reviewer = clean_text(reviewer, "reviewer")
    catalog = Path(catalog_dir)
    manifest_path = catalog / sku / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"no catalog entry for SKU {sku!r}", path=manifest_path, key="sku")
    inp = main_input(read_manifest(manifest_path), manifest_path)
    root = Path(products_dir)
    if not root.is_dir():
        raise InputError("products folder not found", path=root)
    product_dir = root / sku
    if not product_dir.is_dir() or not product_dir.resolve().is_relative_to(root.resolve()):
        raise InputError(f"no product folder for SKU {sku!r} inside the products root", path=product_dir)
    size = (int(inp["source_size"][0]), int(inp["source_size"][1]))
    mask = decode_mask_png(mask_png, size)
    target = override_target(product_dir, root, inp["file"])
    buf = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(root.resolve()):  # raced into a link meanwhile
        raise InputError("the mask folder resolves outside the products root", path=target.parent)
    atomic_write_bytes(target, data)
    event = {
        "v": DECISIONS_VERSION, "event": "mask-edit", "id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "sku": sku, "input": inp["file"],
        "mask": target.relative_to(product_dir).as_posix(), "mask_sha256": hashlib.sha256(data).hexdigest(),
        "size": list(size), "include_pixels": int((mask >= 224).sum()), "exclude_pixels": int((mask <= 31).sum()),
        "reviewer": reviewer, "source": source,
    }
    append_event(catalog, event, 10.0)
    return event


def existing_override(catalog_dir: str | Path, products_dir: str | Path, sku: str) -> Path | None:
    """The override file `save_mask_override` would write for ``sku``, if it exists (inside the products root).

    The brush page starts from it, so a second edit keeps the first one's strokes.
    """
    validate_sku(sku)
    manifest_path = Path(catalog_dir) / sku / MANIFEST_NAME
    root = Path(products_dir)
    product_dir = root / sku
    if not manifest_path.is_file() or not product_dir.is_dir():
        return None
    try:
        inp = main_input(read_manifest(manifest_path), manifest_path)
        target = override_target(product_dir, root, inp["file"])
    except InputError:
        return None
    if not target.is_file() or not target.resolve().is_relative_to(root.resolve()):
        return None
    return target


def products_dir_from_report(catalog_dir: str | Path) -> Path | None:
    """The products folder of the latest batch report, if it is a local folder that exists."""
    from pipelines.catalog.index import latest_report

    _path, report = latest_report(catalog_dir)
    loc = (report or {}).get("products_dir")
    if not isinstance(loc, str) or "://" in loc:
        return None
    p = Path(loc)
    return p if p.is_dir() else None

"""Re-checking a catalog entry from its files alone (``vitrine verify``).

- `entry_file_problems`: every file the manifest lists (outputs, work files, stale edits) is there with its sha256;
- `verify_entry`: every output that keeps pixels of a photo still does (`verify_output`), dispatching on what
  the output recorded: a ``placement`` (a product output, or an edit of one: the normalised photo through
  the recorded placement) or a ``garment_transform`` (a try-on, or an edit of one: the garment photo
  through its transform); white-background outputs are checked to be pure white around the product.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.compositing.composite import Placement, check_preserved, render_layer
from pipelines.errors import VitrineError
from pipelines.imageio import sha256_file
from pipelines.quality.checks import white_background_check
from pipelines.tryon.warp import GarmentTransform, apply_transform


def entry_file_problems(sku_dir: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Every file the manifest lists (outputs, work files and the stale edits kept in ``history/``) that is
    missing or differs from its sha256.

    Returns:
        `list[str]`: one ``"<file>: missing"`` / ``"<file>: sha256 differs from the manifest"`` per bad file,
        in manifest order; ``[]`` when every listed file is there with the bytes the manifest records.
    """
    sku_dir = Path(sku_dir)
    if manifest is None:
        manifest = read_manifest(sku_dir / MANIFEST_NAME)
    problems = []
    for rec in [*manifest.get("outputs", []), *manifest.get("work", []), *manifest.get("stale_edits", [])]:
        rel = rec.get("file") if isinstance(rec, dict) else None
        if not isinstance(rel, str) or not rel:
            problems.append(f"{rec!r}: no file name")
            continue
        path = sku_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != rec.get("sha256"):
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems


def verify_entry(sku_dir: str | Path) -> list[dict[str, Any]]:
    """Independently re-check every output of a catalog entry that keeps pixels of a photo, from its files alone.

    For each such output (`verify_output`): re-apply the recorded transform to the normalised input and
    compare with the output's pixels inside its preserve mask; for white-background outputs, re-check the
    marketplace rule (background pure white) from the output and its product mask; and compare the
    output's sha256 with the manifest.

    The work files a check reads (the normalised input, the preserve and product masks) must have the
    sha256 the manifest records (``work_ok``): a repainted input cannot vouch for a repainted output.
    Files no check reads (exports such as ``main.jpg``, other work files) are hashed by
    `entry_file_problems`, which ``vitrine verify`` runs too.

    Returns:
        `list[dict]`: one record per checked output: ``file``, the `check_preserved` figures, ``sha256_ok``,
        ``work_ok`` (placed outputs) and, for white backgrounds, ``white_background_ok``; ``ok`` is the
        conjunction.
    """
    sku_dir = Path(sku_dir)
    manifest = read_manifest(sku_dir / MANIFEST_NAME)
    return [r for o in manifest["outputs"] if (r := verify_output(sku_dir, manifest, o)) is not None]


def verify_output(sku_dir: str | Path, manifest: dict[str, Any], output: dict[str, Any]) -> dict[str, Any] | None:
    """Re-check one output by what it recorded: a ``garment_transform`` (`verify_tryon_output`), a
    ``placement`` (`verify_placed_output`), or nothing to check (an export, an edit that released the
    garment): `None`."""
    if "garment_transform" in output:
        return verify_tryon_output(sku_dir, manifest, output)
    if "placement" in output:
        return verify_placed_output(sku_dir, manifest, output)
    return None


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def verify_placed_output(sku_dir: str | Path, manifest: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """Re-check a placed output (a product output, or an edit of one): the normalised photo through the recorded
    placement equals the output inside its preserve mask, the work files it reads and the output have their
    sha256, and a white background is pure white around the product."""
    sku_dir = Path(sku_dir)
    by_name = {i["file"]: i for i in manifest["inputs"]}
    work_sha = {w.get("file"): w.get("sha256") for w in manifest.get("work", []) if isinstance(w, dict)}

    def work_ok(*rels: str) -> bool:
        return all((sku_dir / r).is_file() and sha256_file(sku_dir / r) == work_sha.get(r) for r in rels)

    o = output
    normalized = by_name[o["source_input"]]["normalized"]
    layer = render_layer(_rgb(sku_dir / normalized), Placement.from_json(o["placement"]))
    out = _rgb(sku_dir / o["file"])
    rec = {"file": o["file"], **check_preserved(out, layer, _mask(sku_dir / o["preserve_mask"]))}
    rec["sha256_ok"] = sha256_file(sku_dir / o["file"]) == o["sha256"]
    rec["work_ok"] = work_ok(normalized, o["preserve_mask"], *([o["product_mask"]] if o.get("product_mask") else []))
    ok = rec["identical_fraction"] == 1.0 and rec["sha256_ok"] and rec["work_ok"]
    if o.get("background") == "white":
        rec["white_background_ok"] = white_background_check(out, _mask(sku_dir / o["product_mask"]))["ok"]
        ok = ok and rec["white_background_ok"]
    rec["ok"] = ok
    return rec


def verify_tryon_output(sku_dir: str | Path, manifest: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """Re-check a try-on (or an edit of one) from its files: the garment photo through the recorded transform
    equals the output inside its preserve mask, and the output's sha256 matches the manifest.

    Returns:
        `dict`: ``file``, ``pixels``, ``identical``, ``identical_fraction``, ``max_abs_diff``, ``sha256_ok``, ``ok``.
    """
    sku_dir = Path(sku_dir)
    by_name = {i["file"]: i for i in manifest["inputs"]}
    garment = by_name.get(output.get("garment_input", ""))
    if garment is None or "normalized" not in garment:
        raise VitrineError(f"{sku_dir / MANIFEST_NAME}: {output['file']} names no garment input")
    transform = GarmentTransform.from_json(output["garment_transform"])
    galpha = None
    if transform.warp is not None:  # the body warp layers the limbs by the garment's alpha (its work file)
        rel = next((s.get("alpha") for s in manifest.get("subjects", []) if s.get("input") == garment["file"]), None)
        if rel is None:
            raise VitrineError(f"{sku_dir / MANIFEST_NAME}: {output['file']} has a body warp but the garment "
                               f"{garment['file']} has no alpha in subjects[]")
        galpha = _mask(sku_dir / rel)
    placed = apply_transform(_rgb(sku_dir / garment["normalized"]), transform, alpha=galpha)
    img = _rgb(sku_dir / output["file"])
    rec = {"file": output["file"], **check_preserved(img, placed, _mask(sku_dir / output["preserve_mask"]))}
    rec["sha256_ok"] = sha256_file(sku_dir / output["file"]) == output["sha256"]
    rec["ok"] = rec["identical_fraction"] == 1.0 and rec["sha256_ok"]
    return rec

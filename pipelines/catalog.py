"""One SKU from a product folder to a catalog entry: ``CATALOG/<sku>/`` with images, ``work/`` and a manifest.

A catalog entry appears whole or not at all: it is built in ``CATALOG/.staging/`` and moved into place
with a rename; the manifest is written last inside it. A per-SKU file lock means two runs never write
the same SKU at once. A SKU whose inputs and parameters are unchanged (same content hash) is skipped.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from . import __version__
from .composite import (
    Placement,
    check_preserved,
    fit_placement,
    preserve_mask,
    render_layer,
    seam_band,
)
from .engine import Engine, OutputRequest, Subject, compose_output, place_output
from .errors import InputError, VitrineError
from .imageio import _fsync_dir, atomic_write_json, load_image, save_image, save_mask, sha256_file
from .manifest import MANIFEST_NAME, build_manifest, read_manifest, write_manifest
from .product import Product, product_content_hash
from .quality import white_background_check

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"
TRASH_DIR = ".trash"
LOCKS_DIR = ".locks"


@dataclass
class RenderOptions:
    """Parameters of a catalog render. Every field is recorded in the manifest and in the content hash.

    Attributes:
        canvas (`int`, defaults to 2000): side of the square main image, pixels.
        fill (`float`, defaults to 0.85): product's longer side over the canvas side (marketplace rule ~85%).
        lifestyle_size (`tuple[int, int]`, defaults to (1600, 2000)): (width, height) of lifestyle images.
        lifestyle_fill (`float`, defaults to 0.78): product fill on lifestyle images.
        preserve_erode_px (`int`, defaults to 3): the preserve mask is the opaque product eroded by this.
        seam_inner_px (`int`, defaults to 3): seam band reach into the product (<= preserve_erode_px).
        seam_outer_px (`int`, defaults to 4): seam band reach into the background.
        max_input_side (`int`, defaults to 4096): larger photos are downscaled to this longer side.
        jpeg_quality (`int`, defaults to 92): quality of the JPEG export of the main image.
        export_webp (`bool`, defaults to `False`): also write a lossy WebP of every image.
        png_compress_level (`int`, defaults to 1): zlib level of PNG outputs (1 = fast, 9 = small).
        identity (`dict`, *optional*): the batch's model identity preset (`pipelines.edit.identity`,
            ``IdentityPreset.to_json()``): its seed and prompt replace every SKU's ``seeds`` and
            ``prompts.person``, so one model identity is reused across the batch.
        commercial (`bool`, defaults to `False`): the whole batch is for commercial use: every SKU is treated
            as ``commercial: true`` (non-commercial models are refused; `pipelines.licence`).
    """

    canvas: int = 2000
    fill: float = 0.85
    lifestyle_size: tuple[int, int] = (1600, 2000)
    lifestyle_fill: float = 0.78
    preserve_erode_px: int = 3
    seam_inner_px: int = 3
    seam_outer_px: int = 4
    max_input_side: int = 4096
    jpeg_quality: int = 92
    export_webp: bool = False
    png_compress_level: int = 1
    identity: dict[str, Any] | None = None
    commercial: bool = False

    def __post_init__(self) -> None:
        if self.seam_inner_px > self.preserve_erode_px:
            raise ValueError(
                f"seam_inner_px ({self.seam_inner_px}) must not exceed preserve_erode_px ({self.preserve_erode_px}):"
                " the seam band would reach into the preserved product pixels"
            )
        if not 0 < self.fill <= 1 or not 0 < self.lifestyle_fill <= 1:
            raise ValueError("fill and lifestyle_fill must be in (0, 1]")

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class SkuResult:
    """Outcome of one SKU: ``status`` is ``ok``, ``failed`` or ``skipped``."""

    sku: str
    status: str
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    manifest: str | None = None
    reason: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "status": self.status,
            "error": self.error,
            "outputs": self.outputs,
            "manifest": self.manifest,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }


def sku_lock(catalog: Path, sku: str, timeout: float = 0) -> FileLock:
    """The file lock that guards writes to ``catalog/<sku>``."""
    locks = catalog / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{sku}.lock"), timeout=timeout)


def render_params(engine: Engine, options: RenderOptions) -> dict[str, Any]:
    """The parameters a SKU's content hash covers besides its files: engine, render options, version."""
    return {"engine": engine.describe(), "render": options.to_json(), "vitrine": __version__}


def sku_content_hash(product: Product, engine: Engine, options: RenderOptions | None = None) -> str:
    """The content hash `process_sku` records in the manifest and skips on (inputs + `render_params`)."""
    return product_content_hash(product, render_params(engine, options or RenderOptions()))


def is_up_to_date(sku_dir: Path, content_hash: str) -> bool:
    """True when ``sku_dir`` holds a complete, valid entry made from the same content hash."""
    manifest_path = sku_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = read_manifest(manifest_path)
    except (InputError, ValueError):
        return False
    if manifest.get("content_hash") != content_hash or manifest.get("status") != "ok":
        return False
    return all((sku_dir / o["file"]).is_file() for o in manifest.get("outputs", []))


def _clean_leftovers(catalog: Path, sku: str) -> None:
    """Remove staging/trash folders an interrupted run left for this SKU (call with the lock held)."""
    # Exact names only (``<sku>.<pid>.<hex8>`` staged, ``<sku>.<hex8>`` trashed): a looser ``<sku>.*`` would
    # also match SKU ``<sku>.v2``'s staging folder, which another worker may be writing under its own lock.
    patterns = {STAGING_DIR: re.compile(re.escape(sku) + r"\.\d+\.[0-9a-f]{8}"),
                TRASH_DIR: re.compile(re.escape(sku) + r"\.[0-9a-f]{8}")}
    for sub, pattern in patterns.items():
        d = catalog / sub
        if d.is_dir():
            for p in d.iterdir():
                if pattern.fullmatch(p.name):
                    shutil.rmtree(p, ignore_errors=True)


def _restore_trashed(catalog: Path, sku: str, final: Path) -> None:
    """Put back an entry that a crash left in ``.trash`` (call with the lock held).

    `_commit` replaces an entry with two renames (old entry to ``.trash``, new one into place); a run
    killed between them leaves no entry but a complete one in the trash. Restore it, so that a re-run
    finds the finished work instead of redoing it (and readers see the entry again).
    """
    trash = catalog / TRASH_DIR
    if final.exists() or final.is_symlink() or not trash.is_dir():
        return
    pattern = re.compile(re.escape(sku) + r"\.[0-9a-f]{8}")
    complete = [p for p in trash.iterdir() if pattern.fullmatch(p.name) and _is_complete(p)]
    if complete:
        newest = max(complete, key=lambda p: (p / MANIFEST_NAME).stat().st_mtime)
        os.replace(newest, final)
        logger.warning("SKU %s: restored the entry an interrupted run left in %s", sku, newest)


def _is_complete(entry: Path) -> bool:
    """True when ``entry`` has a readable manifest and every file it lists (a half-deleted trash is not)."""
    try:
        manifest = read_manifest(entry / MANIFEST_NAME)
        files = [r["file"] for r in manifest.get("outputs", []) + manifest.get("work", [])]
    except (InputError, ValueError, TypeError, KeyError):
        return False
    return manifest.get("status") == "ok" and all((entry / f).is_file() for f in files)


def _carry_reviews(staging: Path, old_dir: Path, manifest: dict[str, Any]) -> None:
    """Keep review decisions across a re-render for outputs whose bytes did not change.

    An output of the new entry with the same file name and sha256 as in the old entry is the very
    image a reviewer decided on: its ``review`` is carried over (exports follow their source). Outputs
    that changed start ``pending``. Rewrites the staging manifest only when something was carried.
    """
    old_path = old_dir / MANIFEST_NAME
    if not old_path.is_file():
        return
    try:
        old = read_manifest(old_path)
    except InputError:
        return
    old_by_file = {o.get("file"): o for o in old.get("outputs", []) if isinstance(o, dict)}
    carried = False
    for o in manifest["outputs"]:
        prev = old_by_file.get(o["file"])
        review = (prev or {}).get("review") or {}
        if prev and prev.get("sha256") == o["sha256"] and review.get("status", "pending") != "pending":
            o["review"] = dict(review)
            carried = True
    if not carried:
        return
    from .review import review_counts, sku_review_status

    manifest["review"] = {
        "status": sku_review_status(manifest["outputs"]),
        "updated_at": (old.get("review") or {}).get("updated_at"),
        "counts": review_counts(manifest["outputs"]),
        "carried_over": True,
    }
    write_manifest(staging, manifest)


def _commit(staging: Path, final: Path, catalog: Path, sku: str) -> None:
    """Move a finished staging folder into place; the old entry (if any) is replaced in one rename."""
    if final.exists():
        trash = catalog / TRASH_DIR / f"{sku}.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)
    _fsync_dir(final.parent)


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def add(self, name: str, start: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)


def process_sku(
    product: Product,
    catalog: str | Path,
    engine: Engine,
    options: RenderOptions | None = None,
    *,
    force: bool = False,
    lock_timeout: float = 0,
) -> SkuResult:
    """Render one SKU into ``catalog/<sku>/``.

    Args:
        product (`Product`): a validated product folder (see `pipelines.product.load_product`).
        catalog (`str | Path`): the catalog root.
        engine (`Engine`): the engine whose backends do the work (see `pipelines.engine.get_engine`).
        options (`RenderOptions`, *optional*): render parameters; defaults to `RenderOptions()`.
        force (`bool`, *optional*, defaults to `False`): redo the SKU even when it is up to date.
        lock_timeout (`float`, *optional*, defaults to 0): seconds to wait for another run holding this
            SKU's lock; after that the SKU is reported ``skipped`` (it is that run's to write).

    Returns:
        `SkuResult`: ``ok`` with the output files, ``skipped`` (up to date, or locked by another run),
        or ``failed`` with the error naming the file at fault. Never raises for a bad product.
    """
    t0 = time.perf_counter()
    options = options or RenderOptions()
    catalog = Path(catalog)
    catalog.mkdir(parents=True, exist_ok=True)
    sku_dir = catalog / product.sku
    params = render_params(engine, options)
    try:
        content_hash = product_content_hash(product, params)
    except (OSError, VitrineError) as exc:
        return SkuResult(product.sku, "failed", error=str(exc), seconds=time.perf_counter() - t0)

    lock = sku_lock(catalog, product.sku, lock_timeout)
    try:
        lock.acquire()
    except Timeout:
        return SkuResult(product.sku, "skipped", reason="locked by another run", seconds=time.perf_counter() - t0)
    try:
        _restore_trashed(catalog, product.sku, sku_dir)
        if not force and is_up_to_date(sku_dir, content_hash):
            manifest = read_manifest(sku_dir / MANIFEST_NAME)
            return SkuResult(
                product.sku, "skipped", reason="unchanged", outputs=[o["file"] for o in manifest["outputs"]],
                manifest=str(sku_dir / MANIFEST_NAME), seconds=time.perf_counter() - t0,
            )
        _clean_leftovers(catalog, product.sku)
        staging = catalog / STAGING_DIR / f"{product.sku}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        (staging / "work").mkdir(parents=True)
        try:
            manifest = _render(product, staging, engine, options, content_hash, params)
            _carry_reviews(staging, sku_dir, manifest)
            _commit(staging, sku_dir, catalog, product.sku)
        except Exception as exc:  # one broken SKU never stops a batch
            shutil.rmtree(staging, ignore_errors=True)
            logger.warning("SKU %s failed: %s", product.sku, exc, exc_info=not isinstance(exc, VitrineError))
            message = str(exc) if isinstance(exc, VitrineError) else f"{type(exc).__name__}: {exc}"
            return SkuResult(product.sku, "failed", error=message, seconds=time.perf_counter() - t0)
        return SkuResult(
            product.sku, "ok", outputs=[o["file"] for o in manifest["outputs"]],
            manifest=str(sku_dir / MANIFEST_NAME), seconds=time.perf_counter() - t0,
        )
    finally:
        lock.release()


def _render(
    product: Product, out: Path, engine: Engine, options: RenderOptions, content_hash: str, params: dict
) -> dict[str, Any]:
    """Do the work for one SKU into the staging folder ``out``; returns the manifest written there."""
    # Issue 5: the batch's identity preset and commercial flag, then try-on SKUs (a person photo plus
    # garment photos), which have their own pipeline (pipelines/tryon).
    from .edit.identity import apply_batch_overrides
    from .tryon.catalog import is_tryon_product, render_tryon

    product = apply_batch_overrides(product, options)
    if is_tryon_product(product):
        return render_tryon(product, out, engine, options, content_hash, params)
    timer = _Timer()
    t_total = time.perf_counter()
    spec = product.spec
    work: list[dict[str, Any]] = []

    def save_work(name: str, kind: str, array: np.ndarray, *, mask: bool = False) -> str:
        rel = f"work/{name}"
        sha = save_mask(out / rel, array) if mask else save_image(out / rel, array, compress_level=options.png_compress_level)
        work.append({"file": rel, "kind": kind, "sha256": sha})
        return rel

    # 1. Load and normalise every input (EXIF, sRGB, 8-bit); keep the normalised copy for verification.
    t = time.perf_counter()
    main_name = spec.main_image or product.images[0].name
    inputs: list[dict[str, Any]] = []
    loaded = {}
    stems = _unique_stems(product.images)
    for path in product.images:
        img = load_image(path, max_side=options.max_input_side)
        loaded[path.name] = img
        stem = stems[path.name]
        norm_rel = save_work(f"input-{stem}.png", "input-normalized", img.rgb)
        inputs.append({
            "file": path.name,
            "sha256": sha256_file(path),
            "source_size": list(img.source_size),
            "size": [int(img.rgb.shape[1]), int(img.rgb.shape[0])],
            "source_mode": img.source_mode,
            "exif_rotated": img.exif_rotated,
            "icc_converted": img.icc_converted,
            "scale": img.scale,
            "has_alpha": img.alpha is not None,
            "normalized": norm_rel,
            "role": "main" if path.name == main_name else "alternate",
        })
    if product.spec_path is not None:
        inputs.append({"file": product.spec_path.name, "sha256": sha256_file(product.spec_path), "role": "spec"})
    timer.add("load", t)

    outputs: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    quality: dict[str, Any] = {}
    for path in product.images:
        img = loaded[path.name]
        stem = stems[path.name]
        is_main = path.name == main_name

        # 2. Segment the subject (product on a plain background, or a person), honouring overrides.
        t = time.perf_counter()
        subject: Subject = engine.find_subject(img, product)
        timer.add("segment", t)
        subj_rec = {
            "input": path.name,
            "kind": subject.kind,
            "source": subject.source,
            "reason": subject.reason,
            "bbox": list(subject.bbox),
            "alpha": save_work(f"alpha-{stem}.png", "alpha", subject.alpha, mask=True),
            "mask": save_work(f"mask-{stem}.png", "mask", np.where(subject.alpha >= 128, 255, 0).astype(np.uint8), mask=True),
            "metrics": subject.metrics,
        }

        # 3. Controls: pose skeleton (for people) and the garment's edge map.
        t = time.perf_counter()
        controls = engine.controls(img, subject)
        for cname, carr in controls.images.items():
            subj_rec.setdefault("controls", {})[cname] = save_work(f"control-{cname}-{stem}.png", f"control-{cname}", carr)
        if controls.pose is not None:
            pose_rel = f"work/pose-{stem}.json"
            atomic_write_json(out / pose_rel, controls.pose)
            work.append({"file": pose_rel, "kind": "pose-keypoints", "sha256": sha256_file(out / pose_rel)})
            subj_rec.setdefault("controls", {})["pose_json"] = pose_rel
        timer.add("controls", t)
        subjects.append(subj_rec)

        # 4. Compose outputs: the main image on pure white, lifestyle scenes, alternates on white.
        touches_bottom = subject.bbox[3] >= img.rgb.shape[0] - 2
        anchor_kwargs = {"anchor": "floor", "margin_bottom": 0.0} if touches_bottom else {}
        plans: list[tuple[str, str, str, tuple[int, int], float, int]] = []
        if is_main:
            plans.append(("main", "main.png", "white", (options.canvas, options.canvas), options.fill, 0))
            for bg in spec.backgrounds:
                if bg == "white":
                    continue
                for seed in spec.seeds:
                    plans.append(("lifestyle", f"lifestyle-{bg}-s{seed}.png", bg, options.lifestyle_size,
                                  options.lifestyle_fill, seed))
        else:
            plans.append(("alternate", f"alt-{stem}.png", "white", (options.canvas, options.canvas), options.fill, 0))

        for kind, fname, bg, size, fill, seed in plans:
            t = time.perf_counter()
            anchor = anchor_kwargs if (kind != "lifestyle" or touches_bottom) else {"anchor": "floor", "margin_bottom": 0.07}
            request = OutputRequest(kind=kind, file=fname, background=bg, size=size, seed=seed,
                                    contact_shadow=(kind == "lifestyle" and not touches_bottom), image=img,
                                    subject=subject, controls=controls, product=product)
            placement = place_output(engine, request, fit_placement(subject.bbox, size, fill=fill, **anchor))
            fg = render_layer(img.rgb, placement)
            alpha = render_layer(subject.alpha, placement, mode="L")
            band = seam_band(alpha, options.seam_inner_px, options.seam_outer_px)
            keep = preserve_mask(alpha, options.preserve_erode_px)
            # The engine's background (procedural or generated), composite, seam-band inpainting.
            composed = compose_output(engine, request, placement, fg, alpha, band)
            composite, final = composed.composite, composed.final
            # The guarantee, checked before anything is written: product pixels untouched, seam-only edits.
            preserved = check_preserved(final, fg, keep)
            if preserved["identical_fraction"] != 1.0:
                raise VitrineError(f"{path}: product pixels changed in {fname} ({preserved}); refusing to write it")
            from .composite import count_changed  # (issue 12: a fast exact count, not np.any over axis 2)

            changed_outside_band = count_changed(final, composite, band == 0)
            if changed_outside_band:
                raise VitrineError(f"{path}: seam inpainting touched {changed_outside_band} pixels outside the band")
            timer.add("compose", t)

            t = time.perf_counter()
            sha = save_image(out / fname, final, compress_level=options.png_compress_level)
            ostem = Path(fname).stem
            rec: dict[str, Any] = {
                "file": fname,
                "sha256": sha,
                "kind": kind,
                "format": "png",
                "lossy": False,
                "width": size[0],
                "height": size[1],
                "background": bg,
                "seed": seed,
                "source_input": path.name,
                "placement": placement.to_json(),
                "product_mask": save_work(f"{ostem}.product-mask.png", "product-mask", alpha, mask=True),
                "preserve_mask": save_work(f"{ostem}.preserve-mask.png", "preserve-mask", keep, mask=True),
                "seam_band": save_work(f"{ostem}.seam-band.png", "seam-band", band, mask=True),
                "quality": {
                    "preserved_pixels": preserved["pixels"],
                    "preserved_identical_fraction": preserved["identical_fraction"],
                    "seam_band_pixels": int((band > 0).sum()),
                    "fill": _fill_ratio(alpha),
                },
                "review": {"status": "pending"},
            }
            if composed.record:
                rec["generation"] = dict(composed.record, work={
                    wkind: save_work(f"{ostem}.{wname}", wkind, warr, mask=wmask)
                    for wname, (wkind, warr, wmask) in composed.work.items()})
            if bg == "white":
                rec["quality"]["white_background"] = white_background_check(final, alpha)
            outputs.append(rec)
            if kind == "main":
                quality["main_white_background_ok"] = rec["quality"]["white_background"]["ok"]
                quality["main_fill"] = rec["quality"]["fill"]
                jpg_sha = save_image(out / "main.jpg", final, quality=options.jpeg_quality)
                outputs.append({
                    "file": "main.jpg", "sha256": jpg_sha, "kind": "export", "format": "jpeg", "lossy": True,
                    "width": size[0], "height": size[1], "derived_from": fname, "background": "white",
                    "review": {"status": "pending"},
                })
            if options.export_webp:
                webp = f"{ostem}.webp"
                outputs.append({
                    "file": webp, "sha256": save_image(out / webp, final, quality=options.jpeg_quality),
                    "kind": "export", "format": "webp", "lossy": True, "width": size[0], "height": size[1],
                    "derived_from": fname, "background": bg, "review": {"status": "pending"},
                })
            timer.add("write", t)

    quality["all_preserved"] = all(
        o["quality"]["preserved_identical_fraction"] == 1.0 for o in outputs if "placement" in o
    )
    timer.timings["total"] = round(time.perf_counter() - t_total, 4)
    manifest = build_manifest(
        product, content_hash,
        inputs=inputs,
        engine=engine.describe(),
        models=engine.models(),
        parameters=params,
        subjects=subjects,
        work=work,
        outputs=outputs,
        quality=quality,
        timings=timer.timings,
    )
    write_manifest(out, manifest)
    return manifest


def _unique_stems(images: list[Path]) -> dict[str, str]:
    """File name -> stem used to name its work files and outputs, unique even without case.

    The stem is the file's own (``back.jpg`` -> ``back``) unless two images share it (``front.jpg`` and
    ``front.png``), which would make them overwrite each other's files: then the suffix is kept
    (``front-jpg``, ``front-png``), and a number added if that is taken too.
    """
    counts: dict[str, int] = {}
    for p in images:
        counts[p.stem.casefold()] = counts.get(p.stem.casefold(), 0) + 1
    used: set[str] = set()
    stems: dict[str, str] = {}
    for p in images:
        stem = p.stem if counts[p.stem.casefold()] == 1 else f"{p.stem}-{p.suffix.lstrip('.').lower()}"
        base, n = stem, 2
        while stem.casefold() in used:
            stem, n = f"{base}-{n}", n + 1
        used.add(stem.casefold())
        stems[p.name] = stem
    return stems


def _fill_ratio(alpha: np.ndarray) -> float:
    ys, xs = np.nonzero(alpha >= 128)
    if len(xs) == 0:
        return 0.0
    h, w = alpha.shape
    return round(max((xs.max() - xs.min() + 1) / w, (ys.max() - ys.min() + 1) / h), 4)


def verify_entry(sku_dir: str | Path) -> list[dict[str, Any]]:
    """Independently re-check every placed output of a catalog entry, from its files alone.

    For each output with a placement: re-apply the recorded transform to the normalised input and
    compare with the output's pixels inside its preserve mask; for white-background outputs, re-check
    the marketplace rule (background pure white) from the output and its product mask; and compare the
    output's sha256 with the manifest.

    Returns:
        `list[dict]`: one record per placed output: ``file``, the `check_preserved` figures, ``sha256_ok``
        and, for white backgrounds, ``white_background_ok``; ``ok`` is the conjunction.
    """
    from PIL import Image

    from .imageio import sha256_file
    from .quality import white_background_check

    sku_dir = Path(sku_dir)
    manifest = read_manifest(sku_dir / MANIFEST_NAME)
    by_name = {i["file"]: i for i in manifest["inputs"]}
    results = []
    for o in manifest["outputs"]:
        if "garment_transform" in o:  # a try-on, or an edit of one: the garment photo's recorded transform
            from .tryon.catalog import verify_tryon_output

            results.append(verify_tryon_output(sku_dir, manifest, o))
            continue
        if "placement" not in o:
            continue
        src = np.asarray(Image.open(sku_dir / by_name[o["source_input"]]["normalized"]).convert("RGB"))
        layer = render_layer(src, Placement.from_json(o["placement"]))
        out = np.asarray(Image.open(sku_dir / o["file"]).convert("RGB"))
        keep = np.asarray(Image.open(sku_dir / o["preserve_mask"]).convert("L"))
        rec = {"file": o["file"], **check_preserved(out, layer, keep)}
        rec["sha256_ok"] = sha256_file(sku_dir / o["file"]) == o["sha256"]
        ok = rec["identical_fraction"] == 1.0 and rec["sha256_ok"]
        if o.get("background") == "white":
            alpha = np.asarray(Image.open(sku_dir / o["product_mask"]).convert("L"))
            rec["white_background_ok"] = white_background_check(out, alpha)["ok"]
            ok = ok and rec["white_background_ok"]
        rec["ok"] = ok
        results.append(rec)
    return results


ProgressCallback = Callable[[SkuResult], None]

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

from pipelines import __version__
from pipelines.compositing.composite import (
    Placement,
    check_preserved,
    fit_placement,
    preserve_mask,
    render_layer,
    seam_band,
)
from pipelines.engines.bundle import Engine, OutputRequest
from pipelines.segmentation.subject import Subject
from pipelines.errors import SKU_FAILURE_LOG, InputError, VitrineError, describe_os_error
from pipelines.imageio import _fsync_dir, atomic_write_json, load_image, save_image, save_mask, sha256_file
from pipelines.catalog.manifest import MANIFEST_NAME, build_manifest, read_manifest, write_manifest
from pipelines.product import SNAPSHOT_DIR, Product, product_content_hash, snapshot_product
from pipelines.marketplaces import get_marketplace
from pipelines.quality.checks import white_background_check
from pipelines.quality.flags import (
    DEFAULT_THRESHOLDS,
    apply_flags,
    backdrop_lightness,
    cutout_sanity,
    floor_contact,
    output_checks,
    refuse_upscale,
    upscale_factor,
)

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
            as ``commercial: true`` (non-commercial models are refused; `pipelines.models.licence`).
        max_upscale (`float`, defaults to 8.0): a SKU fails, naming the photo and its size, when an output
            would enlarge its photo more than this; above 2x the output is flagged ``upscaled``
            (`pipelines.quality.flags`).
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
    max_upscale: float = 8.0

    def __post_init__(self) -> None:
        if not self.max_upscale >= 1.0:
            raise ValueError(f"max_upscale must be at least 1.0, got {self.max_upscale}")
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


#: Seconds a render waits for a SKU whose write lock is held by a short writer (a review decision, an
#: edit's commit) before it reports the SKU ``failed`` as locked (issue 14, finding 13).
WRITE_LOCK_WAIT_S = 30.0


def render_lock(catalog: Path, sku: str, timeout: float = 0) -> FileLock:
    """The lock a render holds for its whole run, besides `sku_lock`: ``.locks/_render.<sku>.lock``.

    It tells another render (skip: that run writes the SKU) from a short writer such as a review
    decision, which takes only `sku_lock` for milliseconds (wait for it). SKU names never start with
    ``_``, so the name cannot collide with a SKU's own lock file.
    """
    locks = catalog / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"_render.{sku}.lock"), timeout=timeout)


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def check_separate_trees(products: str | Path, catalog: str | Path) -> None:
    """Refuse a products folder and a catalog that overlap (one is the other, or lies inside it).

    A catalog entry replaces ``CATALOG/<sku>`` whole; when that folder is a product folder (``vitrine run P
    --catalog P``), a SKU named like the products root, or the catalog inside the products tree, the
    originals would be moved to ``.trash`` and removed. Both paths are compared after resolving links.

    Raises:
        `InputError`: naming both resolved paths.
    """
    p, c = _resolved(products), _resolved(catalog)
    if p == c or c.is_relative_to(p) or p.is_relative_to(c):
        how = "are the same folder" if p == c else (
            "the catalog is inside the products folder" if c.is_relative_to(p) else
            "the products folder is inside the catalog")
        raise InputError(f"the products folder {p} and the catalog {c} overlap ({how}): a catalog entry replaces "
                         "CATALOG/<sku> whole and would delete original photos; use a catalog outside the "
                         "products tree", path=p, key="catalog")


def _is_vitrine_entry(entry: Path, sku: str) -> bool:
    """True when ``entry`` is a catalog entry Vitrine wrote: a folder with a readable manifest for ``sku``."""
    try:
        return entry.is_dir() and not entry.is_symlink() and read_manifest(entry / MANIFEST_NAME).get("sku") == sku
    except (InputError, ValueError, OSError):
        return False


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
    problems = entry_file_problems(sku_dir, manifest)
    if problems:
        logger.warning("%s: re-rendering: %s", sku_dir, "; ".join(problems))
    return not problems


def entry_file_problems(sku_dir: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Every file the manifest lists (outputs and work files) that is missing or differs from its sha256.

    Returns:
        `list[str]`: one ``"<file>: missing"`` / ``"<file>: sha256 differs from the manifest"`` per bad file,
        in manifest order; ``[]`` when every listed file is there with the bytes the manifest records.
    """
    sku_dir = Path(sku_dir)
    if manifest is None:
        manifest = read_manifest(sku_dir / MANIFEST_NAME)
    problems = []
    for rec in [*manifest.get("outputs", []), *manifest.get("work", [])]:
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


def _clean_leftovers(catalog: Path, sku: str) -> list[str]:
    """Remove staging/trash folders an interrupted run left for this SKU (call with the lock held)."""
    # Exact names only (``<sku>.<pid>.<hex8>`` staged, ``<sku>.<hex8>`` trashed): a looser ``<sku>.*`` would
    # also match SKU ``<sku>.v2``'s staging folder, which another worker may be writing under its own lock.
    patterns = {STAGING_DIR: re.compile(re.escape(sku) + r"\.\d+\.[0-9a-f]{8}"),
                TRASH_DIR: re.compile(re.escape(sku) + r"\.[0-9a-f]{8}")}
    removed = []
    for sub, pattern in patterns.items():
        d = catalog / sub
        if d.is_dir():
            for p in d.iterdir():
                if pattern.fullmatch(p.name):
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(str(p))
    return removed


_LEFTOVER = {STAGING_DIR: re.compile(r"(?P<sku>.+)\.\d+\.[0-9a-f]{8}"), TRASH_DIR: re.compile(r"(?P<sku>.+)\.[0-9a-f]{8}")}


def clean_stale_staging(catalog: str | Path) -> list[str]:
    """Remove what killed runs left in ``CATALOG/.staging`` and ``CATALOG/.trash`` (call at batch start).

    Only Vitrine's own folders are touched (``<sku>.<pid>.<hex8>`` staged, ``<sku>.<hex8>`` trashed), and
    only for SKUs whose render and write locks are both free (no run or edit is writing them now). A
    complete entry left in the trash with no entry in place is restored, not removed.

    Returns:
        `list[str]`: the folders removed.
    """
    catalog = Path(catalog)
    skus: set[str] = set()
    for sub, pattern in _LEFTOVER.items():
        d = catalog / sub
        if d.is_dir():
            for p in d.iterdir():
                m = pattern.fullmatch(p.name)
                if m and p.is_dir() and not p.is_symlink():
                    skus.add(m.group("sku"))
    removed: list[str] = []
    for sku in sorted(skus):
        try:
            from pipelines.product import validate_sku

            validate_sku(sku)
        except InputError:
            continue
        rlock, wlock = render_lock(catalog, sku, 0), sku_lock(catalog, sku, 0)
        try:
            rlock.acquire()
        except Timeout:
            continue
        try:
            try:
                wlock.acquire()
            except Timeout:
                continue
            try:
                _restore_trashed(catalog, sku, catalog / sku)
                removed += _clean_leftovers(catalog, sku)
            finally:
                wlock.release()
        finally:
            rlock.release()
    if removed:
        logger.warning("removed %d staging/trash folder(s) left by interrupted runs in %s", len(removed), catalog)
    return removed


def stage_entry_copy(catalog: Path, sku: str) -> Path:
    """A staging copy of the entry ``catalog/<sku>`` to build its next version in (call with `sku_lock` held).

    Files are hard links where the file system allows (every file of an entry is written by an atomic
    rename, never in place, so a link never sees a change), else copies. Commit it with `commit_entry`.
    """
    staging = catalog / STAGING_DIR / f"{sku}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    staging.parent.mkdir(parents=True, exist_ok=True)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(catalog / sku, staging, copy_function=link_or_copy, symlinks=True)
    return staging


def commit_entry(staging: Path, catalog: Path, sku: str) -> None:
    """Replace the entry ``catalog/<sku>`` by the finished ``staging`` folder (call with `sku_lock` held)."""
    _commit(staging, catalog / sku, catalog, sku)


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
    from pipelines.catalog.review import review_counts, sku_review_status

    manifest["review"] = {
        "status": sku_review_status(manifest["outputs"]),
        "updated_at": (old.get("review") or {}).get("updated_at"),
        "counts": review_counts(manifest["outputs"]),
        "carried_over": True,
    }
    write_manifest(staging, manifest)


def _commit(staging: Path, final: Path, catalog: Path, sku: str) -> None:
    """Move a finished staging folder into place; the old entry (if any) is replaced in one rename.

    Only a catalog entry Vitrine wrote (a manifest for this SKU) is ever replaced: anything else at
    ``final`` (a product folder, someone's files) is refused with `VitrineError` and left alone.
    """
    if final.exists() or final.is_symlink():
        if not _is_vitrine_entry(final, sku):
            raise VitrineError(f"{final}: exists and is not a Vitrine catalog entry (no manifest.json for SKU "
                               f"{sku!r}); refusing to replace it: move it out of the catalog")
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
    write_lock_timeout: float = WRITE_LOCK_WAIT_S,
) -> SkuResult:
    """Render one SKU into ``catalog/<sku>/``.

    Args:
        product (`Product`): a validated product folder (see `pipelines.product.load_product`).
        catalog (`str | Path`): the catalog root.
        engine (`Engine`): the engine whose backends do the work (see `pipelines.engines.registry.get_engine`).
        options (`RenderOptions`, *optional*): render parameters; defaults to `RenderOptions()`.
        force (`bool`, *optional*, defaults to `False`): redo the SKU even when it is up to date.
        lock_timeout (`float`, *optional*, defaults to 0): seconds to wait for another run rendering this
            SKU (its `render_lock`); after that the SKU is reported ``skipped`` (it is that run's to write).
        write_lock_timeout (`float`, *optional*, defaults to `WRITE_LOCK_WAIT_S`): seconds to wait for a
            short writer holding the SKU's `sku_lock` (a review decision, an edit's commit); after that the
            SKU is reported ``failed`` with an error saying it is locked (never silently ``skipped``).

    Returns:
        `SkuResult`: ``ok`` with the output files, ``skipped`` (up to date, or locked by another run),
        or ``failed`` with the error naming the file at fault. Never raises for a bad product.

    Raises:
        `InputError`: the product folder and the catalog overlap (`check_separate_trees`); nothing is touched.
    """
    t0 = time.perf_counter()
    options = options or RenderOptions()
    catalog = Path(catalog)
    check_separate_trees(product.dir, catalog)
    catalog.mkdir(parents=True, exist_ok=True)
    sku_dir = catalog / product.sku
    params = render_params(engine, options)
    try:
        content_hash = product_content_hash(product, params)
    except (OSError, VitrineError) as exc:
        return SkuResult(product.sku, "failed", error=str(exc), seconds=time.perf_counter() - t0)

    rlock = render_lock(catalog, product.sku, lock_timeout)
    try:
        rlock.acquire()
    except Timeout:
        return SkuResult(product.sku, "skipped", reason="locked by another run", seconds=time.perf_counter() - t0)
    lock = sku_lock(catalog, product.sku, write_lock_timeout)
    try:
        lock.acquire()
    except Timeout:
        rlock.release()
        return SkuResult(product.sku, "failed", seconds=time.perf_counter() - t0, error=(
            f"{catalog / LOCKS_DIR / (product.sku + '.lock')}: SKU {product.sku!r} stayed locked for "
            f"{write_lock_timeout:g} s by a review decision or an edit; not rendered, run again"))
    try:
        _restore_trashed(catalog, product.sku, sku_dir)
        _clean_leftovers(catalog, product.sku)  # a killed run's staging, even when this SKU is skipped
        if not force and is_up_to_date(sku_dir, content_hash):
            manifest = read_manifest(sku_dir / MANIFEST_NAME)
            return SkuResult(
                product.sku, "skipped", reason="unchanged", outputs=[o["file"] for o in manifest["outputs"]],
                manifest=str(sku_dir / MANIFEST_NAME), seconds=time.perf_counter() - t0,
            )
        if (sku_dir.exists() or sku_dir.is_symlink()) and not _is_vitrine_entry(sku_dir, product.sku):
            return SkuResult(product.sku, "failed", seconds=time.perf_counter() - t0, error=(
                f"{sku_dir}: exists and is not a Vitrine catalog entry (no manifest.json for SKU "
                f"{product.sku!r}); refusing to replace it: move it out of the catalog"))
        staging = catalog / STAGING_DIR / f"{product.sku}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        snapshot_root = staging / SNAPSHOT_DIR
        try:
            (staging / "work").mkdir(parents=True)
            # Render from a copy taken now, and record the copy's hash: an edit made while this SKU renders
            # is seen by the next run instead of being recorded as rendered (issue 14 finding 5).
            snap = snapshot_product(product, snapshot_root)
            content_hash = product_content_hash(snap, params)
            manifest = _render(snap, staging, engine, options, content_hash, params)
            shutil.rmtree(snapshot_root)
            _carry_reviews(staging, sku_dir, manifest)
            _commit(staging, sku_dir, catalog, product.sku)
        except Exception as exc:  # one broken SKU never stops a batch
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, VitrineError):
                message = str(exc)
            elif isinstance(exc, OSError):
                message = describe_os_error(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            # Errors name the user's files, not their copies in the staging folder.
            message = message.replace(str(snapshot_root / product.dir.name), str(product.dir))
            logger.warning("SKU %s failed: %s", product.sku, message,
                           exc_info=not isinstance(exc, (VitrineError, OSError)), extra=SKU_FAILURE_LOG)
            return SkuResult(product.sku, "failed", error=message, seconds=time.perf_counter() - t0)
        return SkuResult(
            product.sku, "ok", outputs=[o["file"] for o in manifest["outputs"]],
            manifest=str(sku_dir / MANIFEST_NAME), seconds=time.perf_counter() - t0,
        )
    finally:
        lock.release()
        rlock.release()


def _render(
    product: Product, out: Path, engine: Engine, options: RenderOptions, content_hash: str, params: dict
) -> dict[str, Any]:
    """Do the work for one SKU into the staging folder ``out``; returns the manifest written there."""
    # Issue 5: the batch's identity preset and commercial flag, then try-on SKUs (a person photo plus
    # garment photos), which have their own pipeline (pipelines/tryon).
    from pipelines.edit.identity import apply_batch_overrides
    from pipelines.catalog.tryon_render import is_tryon_product, render_tryon

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
        # Quality flags (issue 12): the cutout against a second opinion; whether the subject stands on a floor.
        t = time.perf_counter()
        if subject.source.startswith("input-alpha") or "+override" in subject.source:
            # The photo's own alpha, or an analyst's painted mask: that is the truth, not a cutout to doubt.
            cutout_check = {"reference": "none", "skipped": f"the alpha comes from {subject.source}", "flags": []}
        else:
            cutout_check = cutout_sanity(img.rgb, subject.alpha, subject.kind)
        floor = floor_contact(subject.alpha, subject.kind, getattr(subject.pose, "keypoints", None))
        backdrop_l = backdrop_lightness(img.rgb)
        subj_rec["quality"] = {"cutout": {k: v for k, v in cutout_check.items() if k != "flags"},
                               "cutout_flags": [f["flag"] for f in cutout_check["flags"]], "floor": floor,
                               "backdrop_lightness": backdrop_l}
        timer.add("flags", t)

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
        plans: list[tuple[str, str, str, tuple[int, int], float, int, str | None]] = []
        if is_main:
            plans.append(("main", "main.png", "white", (options.canvas, options.canvas), options.fill, 0, None))
            for bg in spec.backgrounds:
                if bg == "white":
                    continue
                for seed in spec.seeds:
                    plans.append(("lifestyle", f"lifestyle-{bg}-s{seed}.png", bg, options.lifestyle_size,
                                  options.lifestyle_fill, seed, None))
        else:
            plans.append(("alternate", f"alt-{stem}.png", "white", (options.canvas, options.canvas), options.fill, 0,
                          None))

        for kind, fname, bg, size, fill, seed, market in plans:  # marketplace mains are appended as needed
            t = time.perf_counter()
            anchor = anchor_kwargs if (kind != "lifestyle" or touches_bottom) else {"anchor": "floor", "margin_bottom": 0.07}
            request = OutputRequest(kind=kind, file=fname, background=bg, size=size, seed=seed,
                                    contact_shadow=(kind == "lifestyle" and not touches_bottom and floor["stands"]),
                                    image=img, subject=subject, controls=controls, product=product)
            placement = engine.place(request, fit_placement(subject.bbox, size, fill=fill, **anchor))
            refuse_upscale(upscale_factor(placement.to_json()), options.max_upscale, path=path,
                           source_size=img.source_size, output=fname, size=size, cutout=cutout_check)
            fg = render_layer(img.rgb, placement)
            alpha = render_layer(subject.alpha, placement, mode="L")
            band = seam_band(alpha, options.seam_inner_px, options.seam_outer_px)
            keep = preserve_mask(alpha, options.preserve_erode_px)
            # The engine's background (procedural or generated), composite, seam-band inpainting.
            composed = engine.compose(request, placement, fg, alpha, band)
            composite, final = composed.composite, composed.final
            # The guarantee, checked before anything is written: product pixels untouched, seam-only edits.
            preserved = check_preserved(final, fg, keep)
            if preserved["identical_fraction"] != 1.0:
                raise VitrineError(f"{path}: product pixels changed in {fname} ({preserved}); refusing to write it")
            from pipelines.compositing.composite import count_changed  # (issue 12: a fast exact count, not np.any over axis 2)

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
            # Quality flags (pipelines/quality/flags.py): a flagged output starts as needs-attention.
            tf = time.perf_counter()
            fill_range, fill_rule = _fill_allowed(kind, fill, market, options)
            rec["quality"]["checks"] = output_checks(final, alpha, placement.to_json(), cutout_check, floor,
                                                     rec["quality"]["fill"], fill_range, fill_rule,
                                                     backdrop_l=backdrop_l)
            timer.add("flags", tf)
            t += time.perf_counter() - tf  # the write timing leaves the flags out
            if market is not None:
                rec["marketplace"] = market
            outputs.append(rec)
            if kind == "main" and market is None:
                quality["main_white_background_ok"] = rec["quality"]["white_background"]["ok"]
                quality["main_fill"] = rec["quality"]["fill"]
                jpg_sha = save_image(out / "main.jpg", final, quality=options.jpeg_quality)
                outputs.append({
                    "file": "main.jpg", "sha256": jpg_sha, "kind": "export", "format": "jpeg", "lossy": True,
                    "width": size[0], "height": size[1], "derived_from": fname, "background": "white",
                    "review": {"status": "pending"},
                })
                # Marketplaces (pipelines/marketplaces.py): those whose rules the generic main meets share it;
                # the others get their own main image, planned here and rendered by this loop.
                for mp_key in spec.marketplaces:
                    verdict = _marketplace_verdict(mp_key, out, rec, outputs[-1])
                    if verdict["ok"]:
                        rec.setdefault("marketplace_rules", []).append(verdict)
                    else:
                        mp = get_marketplace(mp_key)
                        plans.append(("main", f"main-{mp_key}.png", "white", tuple(mp.render["size"]),
                                      float(mp.render["fill"]), 0, mp_key))
                        quality.setdefault("marketplace_outputs", {})[mp_key] = f"main-{mp_key}.png"
            elif market is not None:
                mp = get_marketplace(market)
                ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}[mp.render["format"]]
                export = {"file": f"{ostem}.{ext}", "kind": "export", "format": mp.render["format"],
                          "lossy": mp.render["format"] != "png", "width": size[0], "height": size[1],
                          "derived_from": fname, "background": "white", "marketplace": market,
                          "review": {"status": "pending"}}
                if ext != "png":
                    export["sha256"] = save_image(out / export["file"], final, quality=options.jpeg_quality)
                    outputs.append(export)
                verdict = _marketplace_verdict(market, out, rec, export if ext != "png" else rec)
                rec["marketplace_rules"] = [verdict]
                if not verdict["ok"]:
                    failed = [k for k, v in verdict["rules"].items() if not v["ok"]]
                    rec["quality"]["checks"]["marketplace"] = {"flags": [{
                        "flag": "marketplace-rules", "message": f"{verdict['file']} fails {mp.name}'s "
                        f"rules: {', '.join(failed)}", "value": float(len(failed)), "limit": 0.0}]}
            if options.export_webp:
                webp = f"{ostem}.webp"
                outputs.append({
                    "file": webp, "sha256": save_image(out / webp, final, quality=options.jpeg_quality),
                    "kind": "export", "format": "webp", "lossy": True, "width": size[0], "height": size[1],
                    "derived_from": fname, "background": bg, "review": {"status": "pending"},
                })
            apply_flags(rec, outputs)
            timer.add("write", t)

    quality["all_preserved"] = all(
        o["quality"]["preserved_identical_fraction"] == 1.0 for o in outputs if "placement" in o
    )
    flagged = [o["file"] for o in outputs if o.get("quality", {}).get("flags")]
    quality["flagged_outputs"] = flagged
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
    if flagged:
        from pipelines.catalog.review import review_counts, sku_review_status

        manifest["review"].update(status=sku_review_status(outputs), counts=review_counts(outputs))
    write_manifest(out, manifest)
    return manifest


def _fill_allowed(kind: str, fill: float, market: str | None, options: RenderOptions) -> tuple[tuple[float, float], str]:
    """The fill range an output must meet, and whose rule: the marketplace's, else the requested fill +- 0.05
    for white-background images (lifestyle scenes have none)."""
    from pipelines.marketplaces import rule_fill_range

    if market is not None:
        found = rule_fill_range(get_marketplace(market))
        if found is not None:
            return found, f"{market} rules"
    if kind == "lifestyle":  # a scene has no fill convention; a generative engine places the subject itself
        return (0.0, 1.0), "no fill rule for lifestyle scenes"
    tol = DEFAULT_THRESHOLDS.fill_tolerance
    return (max(0.0, fill - tol), min(1.0, fill + tol)), f"requested {kind} fill {fill:g} +- {tol:g}"


def _marketplace_verdict(key: str, out: Path, rec: dict[str, Any], deliverable: dict[str, Any]) -> dict[str, Any]:
    """Check a deliverable (``main.jpg``, ``main-zalando.jpg``) of the placed output ``rec`` against ``key``'s rules.

    The generic main is delivered as its JPEG export when the marketplace takes JPEG, else as the PNG.
    """
    from pipelines.marketplaces import check_rules

    mp = get_marketplace(key)
    allowed = mp.rules.get("formats") or ["jpeg", "png"]
    if deliverable is not rec and deliverable["format"] not in allowed and rec["format"] in allowed:
        deliverable = rec
    verdict = check_rules(mp, width=rec["width"], height=rec["height"], fmt=deliverable["format"],
                          file_bytes=(out / deliverable["file"]).stat().st_size, fill=rec["quality"]["fill"],
                          white_background=(rec["quality"].get("white_background") or {}).get("ok"))
    return {"file": deliverable["file"], **verdict}


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

    The work files a check reads (the normalised input, the preserve and product masks) must have the
    sha256 the manifest records (``work_ok``): a repainted input cannot vouch for a repainted output.
    Files no check reads (exports such as ``main.jpg``, other work files) are hashed by
    `entry_file_problems`, which ``vitrine verify`` runs too.

    Returns:
        `list[dict]`: one record per placed output: ``file``, the `check_preserved` figures, ``sha256_ok``,
        ``work_ok`` and, for white backgrounds, ``white_background_ok``; ``ok`` is the conjunction.
    """
    from PIL import Image

    from pipelines.imageio import sha256_file
    from pipelines.quality.checks import white_background_check

    sku_dir = Path(sku_dir)
    manifest = read_manifest(sku_dir / MANIFEST_NAME)
    by_name = {i["file"]: i for i in manifest["inputs"]}
    work_sha = {w.get("file"): w.get("sha256") for w in manifest.get("work", []) if isinstance(w, dict)}

    def work_ok(*rels: str) -> bool:
        return all((sku_dir / r).is_file() and sha256_file(sku_dir / r) == work_sha.get(r) for r in rels)

    results = []
    for o in manifest["outputs"]:
        if "garment_transform" in o:  # a try-on, or an edit of one: the garment photo's recorded transform
            from pipelines.catalog.tryon_render import verify_tryon_output

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
        rec["work_ok"] = work_ok(by_name[o["source_input"]]["normalized"], o["preserve_mask"],
                                 *([o["product_mask"]] if o.get("product_mask") else []))
        ok = rec["identical_fraction"] == 1.0 and rec["sha256_ok"] and rec["work_ok"]
        if o.get("background") == "white":
            alpha = np.asarray(Image.open(sku_dir / o["product_mask"]).convert("L"))
            rec["white_background_ok"] = white_background_check(out, alpha)["ok"]
            ok = ok and rec["white_background_ok"]
        rec["ok"] = ok
        results.append(rec)
    return results


ProgressCallback = Callable[[SkuResult], None]

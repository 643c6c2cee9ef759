"""One SKU from a product folder to a catalog entry: ``CATALOG/<sku>/`` with images, ``work/`` and a manifest.

`process_sku` is the render of one SKU: it takes the SKU's locks (`pipelines.catalog.store`), skips a SKU
whose inputs and parameters are unchanged (same content hash), renders a snapshot of the product folder
into a staging folder (`render_entry`), carries review decisions over to unchanged outputs
(`pipelines.catalog.review.carry_reviews`) and the old entry's edit versions into the staging folder (current
when what they were made from is unchanged, else stale history: `pipelines.catalog.edit_carry.carry_edits`),
and commits the entry with a rename. `render_entry` hands the SKU
to the first of `RENDER_STEPS` that accepts it (`pipelines.catalog.steps`: try-on SKUs, then products) and
writes the manifest from the parts it returns.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import Timeout

from pipelines import __version__
from pipelines.catalog.edit_carry import carry_edits
from pipelines.catalog.manifest import MANIFEST_NAME, build_manifest, read_manifest, write_manifest
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.product_render import ProductStep
from pipelines.catalog.review import carry_reviews, review_counts, sku_review_status
from pipelines.catalog.steps import RenderJob, RenderStep
from pipelines.catalog.store import (
    LOCKS_DIR,
    WRITE_LOCK_WAIT_S,
    check_separate_trees,
    clean_leftovers,
    commit_entry,
    is_vitrine_entry,
    render_lock,
    restore_trashed,
    sku_lock,
    staging_path,
)
from pipelines.catalog.tryon_render import TryOnStep
from pipelines.catalog.verify import entry_file_problems
from pipelines.catalog.workfiles import WORK_DIR, EntryWriter
from pipelines.edit.identity import apply_batch_overrides
from pipelines.engines.bundle import Engine
from pipelines.errors import SKU_FAILURE_LOG, InputError, VitrineError, describe_os_error
from pipelines.product import SNAPSHOT_DIR, Product, product_content_hash, snapshot_product

logger = logging.getLogger(__name__)

#: The kinds of SKU, most particular first: a SKU is rendered by the first step that accepts it.
RENDER_STEPS: tuple[RenderStep, ...] = (TryOnStep(), ProductStep())


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


ProgressCallback = Callable[[SkuResult], None]


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
        return _process_locked(product, catalog, engine, options, params, content_hash, force=force, t0=t0)
    finally:
        lock.release()
        rlock.release()


def _process_locked(product: Product, catalog: Path, engine: Engine, options: RenderOptions, params: dict[str, Any],
                    content_hash: str, *, force: bool, t0: float) -> SkuResult:
    """`process_sku` with both locks held: skip an unchanged SKU, else render, carry reviews and edits over, commit."""
    sku_dir = catalog / product.sku
    restore_trashed(catalog, product.sku, sku_dir)
    clean_leftovers(catalog, product.sku)  # a killed run's staging, even when this SKU is skipped
    if not force and is_up_to_date(sku_dir, content_hash):
        manifest = read_manifest(sku_dir / MANIFEST_NAME)
        return SkuResult(
            product.sku, "skipped", reason="unchanged", outputs=[o["file"] for o in manifest["outputs"]],
            manifest=str(sku_dir / MANIFEST_NAME), seconds=time.perf_counter() - t0,
        )
    if (sku_dir.exists() or sku_dir.is_symlink()) and not is_vitrine_entry(sku_dir, product.sku):
        return SkuResult(product.sku, "failed", seconds=time.perf_counter() - t0, error=(
            f"{sku_dir}: exists and is not a Vitrine catalog entry (no manifest.json for SKU "
            f"{product.sku!r}); refusing to replace it: move it out of the catalog"))
    staging = staging_path(catalog, product.sku)
    snapshot_root = staging / SNAPSHOT_DIR
    try:
        (staging / WORK_DIR).mkdir(parents=True)
        # Render from a copy taken now, and record the copy's hash: an edit made while this SKU renders
        # is seen by the next run instead of being recorded as rendered.
        snap = snapshot_product(product, snapshot_root)
        manifest = render_entry(snap, staging, engine, options, product_content_hash(snap, params), params)
        shutil.rmtree(snapshot_root)
        carry_reviews(staging, sku_dir, manifest)
        carry_edits(staging, sku_dir, manifest)  # edit versions: current ones carried, the others kept as history
        commit_entry(staging, catalog, product.sku)
    except Exception as exc:  # one broken SKU never stops a batch
        shutil.rmtree(staging, ignore_errors=True)
        message = _failure_message(exc).replace(str(snapshot_root / product.dir.name), str(product.dir))
        # (errors name the user's files, not their copies in the staging folder)
        logger.warning("SKU %s failed: %s", product.sku, message,
                       exc_info=not isinstance(exc, (VitrineError, OSError)), extra=SKU_FAILURE_LOG)
        return SkuResult(product.sku, "failed", error=message, seconds=time.perf_counter() - t0)
    return SkuResult(
        product.sku, "ok", outputs=[o["file"] for o in manifest["outputs"]],
        manifest=str(sku_dir / MANIFEST_NAME), seconds=time.perf_counter() - t0,
    )


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, VitrineError):
        return str(exc)
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return f"{type(exc).__name__}: {exc}"


def choose_step(product: Product) -> RenderStep:
    """The render step of ``product``: the first of `RENDER_STEPS` that accepts it."""
    return next(step for step in RENDER_STEPS if step.accepts(product))


def render_entry(product: Product, out: Path, engine: Engine, options: RenderOptions, content_hash: str,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Render one SKU into the staging folder ``out`` (with ``work/``); returns the manifest written there.

    The batch's identity preset and commercial flag are applied first (`apply_batch_overrides`); then the
    SKU's render step (`choose_step`) writes its files, and the manifest is built from the step's parts.
    """
    product = apply_batch_overrides(product, options)
    step = choose_step(product)
    t0 = time.perf_counter()
    writer = EntryWriter(out, options.png_compress_level)
    parts = step.render(RenderJob(product=product, writer=writer, engine=engine, options=options, params=params))
    parts.timings["total"] = round(time.perf_counter() - t0, 4)
    manifest = build_manifest(
        product, content_hash,
        inputs=parts.inputs,
        engine=engine.describe(),
        models=parts.models,
        parameters=parts.parameters,
        subjects=parts.subjects,
        work=writer.work,
        outputs=parts.outputs,
        quality=parts.quality,
        timings=parts.timings,
    )
    if any(o.get("quality", {}).get("flags") for o in parts.outputs):
        manifest["review"].update(status=sku_review_status(parts.outputs), counts=review_counts(parts.outputs))
    write_manifest(out, manifest)
    return manifest

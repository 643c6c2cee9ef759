"""The catalog batch without Prefect: a plain thread pool over `pipelines.catalog.render.process_sku`.

``vitrine run`` uses this when no Prefect API is configured (``PREFECT_API_URL`` unset, in the environment
and in the active Prefect profile) and ``--prefect`` is not given: a local run then starts working in well
under a second instead of paying Prefect's embedded-server start-up (~10-20 s on a small machine), and no
API server process is left behind if the run is killed.

It does what the flow `flows.catalog_batch.catalog_batch` does -- discovery, one isolated render per SKU,
the same entries, ``CATALOG/_reports/<run>.json`` report, contact sheets and return value -- minus what
only Prefect has (task runs, artifacts, the UI). This module imports nothing from Prefect.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.errors import SKU_FAILURE_LOG as SKU_FAILURE  # one failure, one terminal line (flows/cli/)
from pipelines.errors import describe_os_error
from pipelines.generation.settings import GenerationSettings
from pipelines.settings import VitrineSettings, load_settings, process_environ

logger = logging.getLogger(__name__)

_engine_lock = threading.Lock()


@lru_cache(maxsize=8)
def _engine(name: str, model_root: str | None, generation: GenerationSettings):
    from pipelines.engines.registry import get_engine

    return get_engine(name, model_root=model_root, settings=generation)


def engine_for(name: str, settings: VitrineSettings):
    """One engine per (name, model root, generation settings) per process: models load once and are reused
    by every SKU, and a long-lived process (``serve``, a worker) whose settings changed gets a new engine."""
    root = str(settings.model_root) if settings.model_root is not None else None
    with _engine_lock:
        return _engine(name, root, settings.generation)


def batch_settings(model_root: str | None = None, config: str | None = None,
                   max_upscale: float | None = None) -> VitrineSettings:
    """The settings of a batch started from parameters (a flow run, a direct call): ``model_root``,
    ``max_upscale`` and the config file as flags over the environment (`pipelines.settings.load_settings`)."""
    return load_settings({"model_root": model_root, "max_upscale": max_upscale}, config_file=config)


def render_options(identity: str | None, commercial: bool, settings: VitrineSettings | None = None):
    """The batch's `RenderOptions`: the identity preset (a YAML path), the commercial flag and the settings'
    largest upscale (`VitrineSettings.max_upscale`)."""
    from pipelines.catalog.options import RenderOptions

    limits = {"max_upscale": float(settings.max_upscale)} if settings is not None else {}
    if identity is None:
        return RenderOptions(commercial=commercial, **limits)
    from pipelines.edit.identity import read_identity

    return RenderOptions(identity=read_identity(identity).to_json(), commercial=commercial, **limits)


def failed_entry(sku: str, error: str) -> dict[str, Any]:
    """A report entry for a SKU that failed before or during its render."""
    return {"sku": sku, "status": "failed", "error": error, "outputs": [], "reason": None}


def render_one(products_dir: str, sku: str, catalog_dir: str, engine: str = "auto", model_root: str | None = None,
               force: bool = False, identity: str | None = None, commercial: bool = False,
               log: logging.Logger | logging.LoggerAdapter | None = None, engine_obj: Any = None,
               settings: VitrineSettings | None = None) -> dict[str, Any]:
    """Load and render one SKU; never raises for a bad product (the failure is the returned entry).

    Args:
        products_dir (`str`): the products root; the SKU's folder is ``products_dir/sku``.
        engine_obj (*optional*): the engine to use; default ``engine_for(engine, settings)`` wrapped by
            `flows.gpu.guard_engine`.
        settings (`VitrineSettings`, *optional*): the batch's settings; default `batch_settings(model_root)`.
        log (*optional*): where to log (the Prefect run logger inside a flow); default this module's logger.

    Returns:
        `dict`: the report entry (`pipelines.catalog.render.SkuResult.to_json`, or a ``failed`` entry).
    """
    from flows.gpu import guard_engine
    from pipelines.catalog.render import process_sku
    from pipelines.errors import VitrineError
    from pipelines.product import load_product
    from pipelines.catalog.publish import is_url, process_sku_at_url

    log = log or logger
    try:
        settings = settings or batch_settings(model_root)
        options = render_options(identity, commercial, settings)
        product = load_product(Path(products_dir) / sku, root=Path(products_dir))
        # On a GPU worker the engine's model calls hold the GPU's concurrency slot (flows/gpu.py).
        eng = engine_obj if engine_obj is not None else guard_engine(engine_for(engine, settings), settings)
        if is_url(catalog_dir):  # an object store: render to local scratch, then publish (pipelines/catalog/publish.py)
            result = process_sku_at_url(product, catalog_dir, eng, options, force=force, settings=settings)
        else:
            result = process_sku(product, catalog_dir, eng, options, force=force)
    except VitrineError as exc:
        log.warning("SKU %s failed: %s", sku, exc, extra=SKU_FAILURE)
        return failed_entry(sku, str(exc))
    except OSError as exc:  # a full disk, a vanished folder: this SKU fails with one clear line
        log.warning("SKU %s failed: %s", sku, exc, extra=SKU_FAILURE)
        return failed_entry(sku, describe_os_error(exc))
    except Exception as exc:  # an unexpected bug in one SKU still never stops the batch
        log.exception("SKU %s failed unexpectedly", sku, extra=SKU_FAILURE)
        return failed_entry(sku, f"{type(exc).__name__}: {exc}")
    if result.status == "failed":
        log.warning("SKU %s: failed %s", sku, result.error or "", extra=SKU_FAILURE)
    else:
        log.info("SKU %s: %s %s", sku, result.status, result.reason or "")
    entry = result.to_json()
    if product.warnings:  # e.g. a .heic photo that was not read: in the report, never silently dropped
        entry["warnings"] = list(product.warnings)
    return entry


def discover(products_dir: str, skus: list[str] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Folder names of the SKUs to render, and ``failed`` entries for folders that are not valid products (or
    named by a shard and gone)."""
    from pipelines.product import discover_products

    products, failures = discover_products(Path(products_dir))
    entries = [failed_entry(sku, str(err)) for sku, _path, err in failures]
    folders = {p.sku: p.dir.name for p in products}  # a SKU is its folder's name in NFC; render the folder
    names = [p.sku for p in products]
    if skus is not None:
        wanted = {unicodedata.normalize("NFC", s) for s in skus}
        names = [n for n in names if n in wanted]
        entries = [e for e in entries if unicodedata.normalize("NFC", e["sku"]) in wanted]
        entries += [failed_entry(s, f"{Path(products_dir) / s}: SKU folder not found")
                    for s in sorted(wanted - set(names) - {unicodedata.normalize("NFC", e["sku"]) for e in entries})]
    return [folders[n] for n in names], entries


def run_local_batch(
    products_dir: str,
    catalog_dir: str = "catalog",
    engine: str = "auto",
    model_root: str | None = None,
    force: bool = False,
    skus: list[str] | None = None,
    identity: str | None = None,
    commercial: bool = False,
    *,
    max_workers: int = 2,
    on_entry: Callable[[dict[str, Any]], None] | None = None,
    settings: VitrineSettings | None = None,
) -> dict[str, Any]:
    """Render every SKU of a products folder into a catalog and write a batch report, without Prefect.

    Same arguments, report and return value as `flows.catalog_batch.catalog_batch` (see there), plus:

    Args:
        max_workers (`int`, *optional*, defaults to 2): SKUs rendered at once (threads), as the flow's
            ``ThreadPoolTaskRunner(max_workers=2)``.
        on_entry (*optional*): called with each SKU's entry as it finishes (a progress bar); its errors are
            ignored.
        settings (`VitrineSettings`, *optional*): the process's settings (the CLI's); default
            `batch_settings(model_root)`. Its ``model_root`` is the one used.

    Returns:
        `dict` with ``report_path``, ``counts`` and ``failed`` (SKU names).
    """
    from flows.gpu import guard_engine, runner_info
    from pipelines.catalog.contact_sheet import attach_contact_sheets, reuse_contact_sheets
    from pipelines.catalog.report import build_report
    from pipelines.catalog.publish import is_url, write_catalog_report

    started = datetime.now(UTC)
    settings = settings or batch_settings(model_root)
    model_root = str(settings.model_root) if settings.model_root is not None else None
    if not is_url(catalog_dir):  # as the flow: overlapping trees refused, killed runs' staging cleaned
        from pipelines.catalog.store import check_separate_trees, clean_stale_staging

        check_separate_trees(products_dir, catalog_dir)
        clean_stale_staging(catalog_dir)
    eng = engine_for(engine, settings)
    if identity is not None:  # resolved once: every SKU reads the same preset file
        from pipelines.edit.identity import identity_dirs, load_identity

        search = identity_dirs(products_dir, catalog_dir, first=settings.identities_dirs)
        identity = str(load_identity(identity, search).path.resolve())
    names, entries = discover(str(products_dir), skus)

    def notify(entry: dict[str, Any]) -> None:
        if on_entry is not None:
            try:
                on_entry(entry)
            except Exception:  # a broken progress bar must not break a batch
                pass

    for e in entries:
        notify(e)
    logger.info("%d SKUs to render with engine %s (%s)", len(names), eng.name, eng.describe()["reason"])
    guarded = guard_engine(eng, settings)
    workers = max(1, min(int(max_workers), len(names) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitrine-sku") as pool:
        futures = [pool.submit(render_one, str(products_dir), name, str(catalog_dir), engine, model_root, force,
                               identity, commercial, None, guarded, settings) for name in names]
        for fut in as_completed(futures):
            entry = fut.result()  # render_one never raises for a SKU
            entries.append(entry)
            notify(entry)

    report = build_report(entries, products_dir=products_dir, catalog_dir=catalog_dir, engine=eng.describe(),
                          started_at=started, run_id=None)
    report["runner"] = runner_info(settings)
    report["runner"]["orchestrator"] = "local"  # no Prefect flow run: `vitrine run` without an API (docs/cli.md)
    result: dict[str, Any] = {}
    try:  # sheets of an unchanged catalog state are listed again, not redrawn (a fully skipped re-run)
        if not is_url(catalog_dir):
            reuse_contact_sheets(report, catalog_dir)
    except Exception as exc:  # a convenience; the JSON report is the record
        logger.warning("could not check the contact sheets: %s", exc)
    try:
        path = write_catalog_report(report, catalog_dir, settings)
    except OSError as exc:  # a full disk: the SKUs' outcomes are still known, and shown by the caller
        path = None
        result["report_error"] = describe_os_error(exc)
        logger.error("could not write the batch report: %s", result["report_error"])
    try:  # contact sheets next to the report, listed in it
        if path is not None and not is_url(catalog_dir):
            attach_contact_sheets(report, catalog_dir, path)
    except Exception as exc:  # a convenience; the JSON report is the record
        logger.warning("could not write the contact sheet: %s", exc)
    logger.info("report: %s (%s)", path, report["counts"])
    return {**result, "report_path": str(path) if path is not None else None, "counts": report["counts"],
            "failed": [e["sku"] for e in report["entries"] if e["status"] == "failed"],
            "errors": {e["sku"]: e.get("error") for e in report["entries"] if e["status"] == "failed"},
            "warnings": {e["sku"]: e["warnings"] for e in report["entries"] if e.get("warnings")}}


def prefect_api_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when a Prefect API is configured: ``PREFECT_API_URL`` in the environment or the active profile.

    Reads ``$PREFECT_PROFILES_PATH`` (default ``$PREFECT_HOME/profiles.toml``, ``~/.prefect/profiles.toml``)
    without importing Prefect (that import alone costs about a second).
    """
    env = process_environ() if environ is None else environ
    if env.get("PREFECT_API_URL", "").strip():
        return True
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        import tomllib

        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    active = env.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = (data.get("profiles") or {}).get(active) or {}
    return bool(str(profile.get("PREFECT_API_URL", "") or "").strip())

"""Prefect 3 batch flow: a products folder in, catalog entries and a batch report out.

Thin orchestration over ``pipelines``: one task run per SKU, each SKU's failure isolated and reported,
unchanged SKUs skipped by content hash. Runs on Prefect's embedded local API (no server to start) and
on a real server when ``PREFECT_API_URL`` is set. The embedded API's start-up defaults are put in the
environment by the entry point (`pipelines.settings.configure_process_env`) before Prefect is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.gpu import guard_engine, runner_info
from flows.local_batch import batch_settings
from flows.observability import current_run_id, publish_batch_artifacts
from pipelines.catalog.contact_sheet import attach_contact_sheets, reuse_contact_sheets
from pipelines.catalog.publish import is_url, write_catalog_report
from pipelines.catalog.report import build_report, report_markdown
from pipelines.catalog.store import check_separate_trees, clean_stale_staging
from pipelines.product import discover_products
from pipelines.settings import VitrineSettings

# A flow-run process whose worker dies must not die on the next log line: guard the pipes as
# soon as the flow is imported, before Prefect's engine logs anything.
from flows.prefect_local import survive_dead_pipes

survive_dead_pipes()

#: Called in the flow's process after each SKU finishes (the CLI's progress bar). Not a flow parameter:
#: callables cannot travel to a remote worker.
PROGRESS_HOOKS: list[Callable[[dict[str, Any]], None]] = []


def _logger():
    """The run logger inside a flow/task run; the module logger when called as plain Python (``.fn()``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def worker_engine(name: str, settings: VitrineSettings):
    """The process's engine for (name, settings): shared with the local path (the CLI resolves it first)."""
    from flows.local_batch import engine_for

    return engine_for(name, settings)


@task(name="render-sku", task_run_name="render-{sku}", cache_policy=NO_CACHE)
def render_sku(products_dir: str, sku: str, catalog_dir: str, engine: str = "auto",
               model_root: str | None = None, force: bool = False, identity: str | None = None,
               commercial: bool = False, settings: VitrineSettings | None = None) -> dict[str, Any]:
    """Render one SKU. Never raises for a bad product: the failure is returned as the entry.

    ``identity`` (an identity preset YAML path) and ``commercial`` are the batch's (`RenderOptions`);
    ``settings`` the flow run's (default: built from ``model_root`` and the environment).
    """
    from flows.local_batch import render_one  # the same render as a local (Prefect-free) run

    settings = settings or batch_settings(model_root)
    return render_one(products_dir, sku, catalog_dir, engine, model_root, force, identity, commercial,
                      log=_logger(), engine_obj=guard_engine(worker_engine(engine, settings), settings),
                      settings=settings)


# retries: a batch that failed part-way (a full disk, a lost API connection) is run again once; SKUs already
# finished are skipped by content hash, so a retry only redoes what is missing (docs/operations.md).
@flow(name="catalog-batch", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=False, retries=1,
      retry_delay_seconds=10)
def catalog_batch(
    products_dir: str,
    catalog_dir: str = "catalog",
    engine: str = "auto",
    model_root: str | None = None,
    force: bool = False,
    skus: list[str] | None = None,
    identity: str | None = None,
    commercial: bool = False,
    config: str | None = None,
    max_upscale: float | None = None,
) -> dict[str, Any]:
    """Render every SKU of a products folder into a catalog and write a batch report.

    Args:
        products_dir (`str`): folder with one sub-folder per SKU.
        catalog_dir (`str`, *optional*, defaults to ``"catalog"``): catalog root.
        engine (`str`, *optional*, defaults to ``"auto"``): ``auto`` or ``classic``.
        model_root (`str`, *optional*): model weights folder (``DIR/<org>/<name>/``).
        force (`bool`, *optional*, defaults to `False`): redo SKUs even when unchanged.
        skus (`list[str]`, *optional*): only these SKUs (a shard of a larger batch).
        identity (`str`, *optional*): a model identity preset, by name (``$VITRINE_IDENTITIES``,
            ``PRODUCTS/_identities/``, ``CATALOG/_identities/``) or YAML path: one seed and person prompt for
            every SKU (`pipelines.edit.identity`).
        commercial (`bool`, *optional*, defaults to `False`): the whole batch is for commercial use
            (non-commercial models are refused; `pipelines.models.licence`).
        config (`str`, *optional*): a settings TOML file (docs/configuration.md); default
            ``$VITRINE_CONFIG``. The run's settings are built once from these parameters, the worker's
            environment and that file.
        max_upscale (`float`, *optional*): a SKU fails when an output would enlarge its photo more than this
            (>= 1; default ``$VITRINE_MAX_UPSCALE``, the config file, else 8).

    Returns:
        `dict` with ``report_path``, ``counts`` and ``failed`` (SKU names).
    """
    survive_dead_pipes()  # a killed worker's broken stdout pipe must not crash this run
    logger = _logger()
    settings = batch_settings(model_root, config, max_upscale)
    model_root = str(settings.model_root) if settings.model_root is not None else None
    started = datetime.now(UTC)
    if not is_url(catalog_dir):  # overlapping products/catalog trees refused, killed runs' staging cleaned
        check_separate_trees(products_dir, catalog_dir)
        clean_stale_staging(catalog_dir)
    eng = worker_engine(engine, settings)
    if identity is not None:  # resolved once: every task reads the same preset file
        from pipelines.edit.identity import identity_dirs, load_identity

        search = identity_dirs(products_dir, catalog_dir, first=settings.identities_dirs)
        identity = str(load_identity(identity, search).path.resolve())
    products, failures = discover_products(Path(products_dir))
    entries: list[dict[str, Any]] = [
        {"sku": sku, "status": "failed", "error": str(err), "outputs": [], "reason": None}
        for sku, _path, err in failures
    ]
    names = [p.sku for p in products]
    if skus is not None:
        wanted = set(skus)
        names = [n for n in names if n in wanted]
        entries = [e for e in entries if e["sku"] in wanted]
        # A shard names SKUs that must each be accounted for: one gone since the shard was planned fails.
        entries += [{"sku": s, "status": "failed", "error": f"{Path(products_dir) / s}: SKU folder not found",
                     "outputs": [], "reason": None} for s in sorted(wanted - set(names) - {e["sku"] for e in entries})]
    for e in entries:
        _notify(e)
    logger.info("%d SKUs to render with engine %s (%s)", len(names), eng.name, eng.describe()["reason"])
    logger.info("runner: %s", runner_info(settings))
    folders = {p.sku: p.dir.name for p in products}  # a SKU is its folder's name in NFC (macOS "café")
    futures = [
        render_sku.submit(str(products_dir), folders.get(name, name), str(catalog_dir), engine, model_root, force,
                          identity, commercial, settings)
        for name in names
    ]
    for fut in as_completed(futures):
        entry = fut.result()
        entries.append(entry)
        _notify(entry)

    report = build_report(entries, products_dir=products_dir, catalog_dir=catalog_dir, engine=eng.describe(),
                          started_at=started, run_id=current_run_id())
    report["runner"] = runner_info(settings)  # which worker/GPU made this shard (scale-out accounting)
    try:  # sheets of an unchanged catalog state are listed again, not redrawn (a fully skipped re-run)
        if not is_url(catalog_dir):
            reuse_contact_sheets(report, catalog_dir)
    except Exception as exc:  # a convenience; the JSON report is the record
        logger.warning("could not check the contact sheets: %s", exc)
    path = write_catalog_report(report, catalog_dir, settings)
    try:  # contact sheets next to the report, listed in it (and so linked from the artifact below)
        if not is_url(catalog_dir):  # a catalog at a URL has no local entries to draw (pipelines/catalog/publish.py)
            attach_contact_sheets(report, catalog_dir, path)
    except Exception as exc:  # a convenience, like the artifact; the JSON report is the record
        logger.warning("could not write the contact sheet: %s", exc)
    try:
        create_markdown_artifact(markdown=report_markdown(report), key="catalog-batch-report",
                                 description=f"Catalog batch report ({path})")
    except Exception as exc:  # an artifact is a convenience; the JSON report is the record
        logger.warning("could not create the Prefect artifact: %s", exc)
    publish_batch_artifacts(report, path, str(catalog_dir))  # SKU table with links, and the report's link
    logger.info("report: %s (%s)", path, report["counts"])
    return {"report_path": str(path), "counts": report["counts"],
            "failed": [e["sku"] for e in report["entries"] if e["status"] == "failed"],
            "errors": {e["sku"]: e.get("error") for e in report["entries"] if e["status"] == "failed"},
            "warnings": {e["sku"]: e["warnings"] for e in report["entries"] if e.get("warnings")}}


def _notify(entry: dict[str, Any]) -> None:
    for hook in list(PROGRESS_HOOKS):
        try:
            hook(entry)
        except Exception:  # a broken progress bar must not break a batch
            pass

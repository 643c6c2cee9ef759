"""Prefect 3 batch flow: a products folder in, catalog entries and a batch report out.

Thin orchestration over ``pipelines``: one task run per SKU, each SKU's failure isolated and reported,
unchanged SKUs skipped by content hash. Runs on Prefect's embedded local API (no server to start) and
on a real server when ``PREFECT_API_URL`` is set.
"""

from __future__ import annotations

import os

# Defaults that make the embedded API work on a fresh 2-core machine; an explicit setting wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import logging  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.exceptions import MissingContextError  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.gpu import guard_engine, runner_info  # noqa: E402
from flows.observability import current_run_id, publish_batch_artifacts  # noqa: E402
from pipelines.catalog.options import RenderOptions  # noqa: E402
from pipelines.catalog.store import check_separate_trees, clean_stale_staging  # noqa: E402
from pipelines.catalog.contact_sheet import attach_contact_sheets  # noqa: E402
from pipelines.engines.base import get_engine  # noqa: E402
from pipelines.product import discover_products  # noqa: E402
from pipelines.catalog.report import build_report, report_markdown  # noqa: E402
from pipelines.catalog.publish import is_url, write_catalog_report  # noqa: E402

# A flow-run process whose worker dies must not die on the next log line (issue 14 #8): guard the pipes as
# soon as the flow is imported, before Prefect's engine logs anything.
from flows.prefect_local import survive_dead_pipes  # noqa: E402

survive_dead_pipes()

#: Called in the flow's process after each SKU finishes (the CLI's progress bar). Not a flow parameter:
#: callables cannot travel to a remote worker.
PROGRESS_HOOKS: list[Callable[[dict[str, Any]], None]] = []
_engine_lock = threading.Lock()


@lru_cache(maxsize=8)
def _engine(name: str, model_root: str | None):
    """One engine per (name, model root) per worker process: models load once and are reused."""
    return get_engine(name, model_root=model_root)


def _logger():
    """The run logger inside a flow/task run; the module logger when called as plain Python (``.fn()``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def worker_engine(name: str, model_root: str | None):
    """The process's engine for (name, model root): shared with the local path (the CLI resolves it first)."""
    from flows.local_batch import engine_for

    return engine_for(name, model_root)


@task(name="render-sku", task_run_name="render-{sku}", cache_policy=NO_CACHE)
def render_sku(products_dir: str, sku: str, catalog_dir: str, engine: str = "auto",
               model_root: str | None = None, force: bool = False, identity: str | None = None,
               commercial: bool = False) -> dict[str, Any]:
    """Render one SKU. Never raises for a bad product: the failure is returned as the entry.

    ``identity`` (an identity preset YAML path) and ``commercial`` are the batch's (issue 5; RenderOptions).
    """
    from flows.local_batch import render_one  # the same render as a local (Prefect-free) run

    return render_one(products_dir, sku, catalog_dir, engine, model_root, force, identity, commercial,
                      log=_logger(), engine_obj=guard_engine(worker_engine(engine, model_root)))


def _render_options(identity: str | None, commercial: bool) -> RenderOptions:
    """The batch's `RenderOptions`: the identity preset (a YAML path) and the commercial flag (issue 5)."""
    if identity is None:
        return RenderOptions(commercial=commercial)
    from pipelines.edit.identity import read_identity

    return RenderOptions(identity=read_identity(identity).to_json(), commercial=commercial)


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

    Returns:
        `dict` with ``report_path``, ``counts`` and ``failed`` (SKU names).
    """
    survive_dead_pipes()  # a killed worker's broken stdout pipe must not crash this run (issue 14 #8)
    logger = _logger()
    started = datetime.now(UTC)
    if not is_url(catalog_dir):  # issue 14: overlapping trees refused, killed runs' staging cleaned
        check_separate_trees(products_dir, catalog_dir)
        clean_stale_staging(catalog_dir)
    eng = worker_engine(engine, model_root)
    if identity is not None:  # resolved once: every task reads the same preset file
        from pipelines.edit.identity import identity_dirs, load_identity

        identity = str(load_identity(identity, identity_dirs(products_dir, catalog_dir)).path.resolve())
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
    logger.info("runner: %s", runner_info())
    folders = {p.sku: p.dir.name for p in products}  # a SKU is its folder's name in NFC (macOS "café")
    futures = [
        render_sku.submit(str(products_dir), folders.get(name, name), str(catalog_dir), engine, model_root, force,
                          identity, commercial)
        for name in names
    ]
    for fut in as_completed(futures):
        entry = fut.result()
        entries.append(entry)
        _notify(entry)

    report = build_report(entries, products_dir=products_dir, catalog_dir=catalog_dir, engine=eng.describe(),
                          started_at=started, run_id=current_run_id())
    report["runner"] = runner_info()  # which worker/GPU made this shard (scale-out accounting)
    path = write_catalog_report(report, catalog_dir)
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

"""Scale-out: split a products folder into shards that the workers of a GPU work pool pick up.

``catalog-scatter`` is a light flow (no models, no GPU) that lists the SKUs of a products folder,
splits them into shards of about ``shard_size`` SKUs, and creates one run of a ``catalog-batch``
deployment per shard (its ``skus`` parameter). Every idle worker of that deployment's work pool takes
the next shard; a machine that joins the pool starts taking shards at its next poll. The scatter run
then waits for its shard runs and writes one report for the whole folder, built from the shard
reports (``CATALOG/_reports/<time>-<shard run id>.json``) so that nothing has to travel through
Prefect's result storage.

Shards are sorted, contiguous runs of SKU names with sizes that differ by at most one: the same
folder gives the same shards, and every SKU is in exactly one shard. Every SKU is still guarded by its
lock and skipped when unchanged, so two overlapping batches never write one SKU twice at once.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.exceptions import MissingContextError

from flows.observability import SCATTER_TABLE_KEY, current_run_id, publish_batch_artifacts
from pipelines.product import discover_products
from pipelines.catalog.report import build_report, report_markdown
from pipelines.catalog.publish import find_catalog_report, write_catalog_report
from pipelines.settings import VitrineSettings, load_settings

#: Tag on every shard run (filter on it in the UI: ``tag:vitrine-shard``).
SHARD_TAG = "vitrine-shard"


def _logger():
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def plan_shards(skus: list[str], shard_size: int) -> list[list[str]]:
    """Split SKU names into sorted, contiguous shards of at most ``shard_size``, sizes within one of each other.

    Args:
        skus (`list[str]`): SKU names (duplicates are dropped).
        shard_size (`int`): the largest shard, >= 1. 10 SKUs with ``shard_size=4`` give shards of 4, 3, 3.

    Returns:
        `list[list[str]]`: the shards in order; empty for no SKUs.
    """
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ValueError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    names = sorted(set(skus))
    if not names:
        return []
    count = math.ceil(len(names) / shard_size)
    base, extra = divmod(len(names), count)
    shards, start = [], 0
    for k in range(count):
        size = base + (1 if k < extra else 0)
        shards.append(names[start:start + size])
        start += size
    return shards


def list_skus(products_dir: str | Path) -> list[str]:
    """Every SKU folder name of a products folder, valid or not (an invalid one fails in its shard's report)."""
    products, failures = discover_products(Path(products_dir))
    return sorted({p.sku for p in products} | {sku for sku, _path, _err in failures})


def find_shard_report(catalog_dir: str | Path, run_id: str,
                      settings: VitrineSettings | None = None) -> dict[str, Any] | None:
    """The report a ``catalog-batch`` run wrote (``_reports/<time>-<run id>.json``, path or URL), or `None`.

    ``settings``: the storage options and scratch folder of a catalog at a URL (default: the defaults)."""
    return find_catalog_report(catalog_dir, run_id, settings)


def wait_for_flow_runs(run_ids: list[UUID], *, poll_seconds: float, timeout_s: float,
                       on_progress=None) -> dict[UUID, Any]:
    """Poll the API until every flow run is in a final state or ``timeout_s`` passed; returns id -> FlowRun."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    latest: dict[UUID, Any] = {}
    finished = -1
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(run_ids))),
                                         limit=len(run_ids))
            latest.update({r.id: r for r in runs})
            done = sum(1 for r in latest.values() if r.state is not None and r.state.is_final())
            if done != finished and on_progress is not None:
                on_progress(done, len(run_ids), latest)
            finished = done
            if done == len(run_ids) or time.monotonic() >= deadline:
                return latest
            time.sleep(max(0.2, min(poll_seconds, deadline - time.monotonic())))


@flow(name="catalog-scatter", log_prints=False)
def catalog_scatter(
    products_dir: str,
    catalog_dir: str = "catalog",
    engine: str = "auto",
    model_root: str | None = None,
    force: bool = False,
    deployment: str = "catalog-batch/default",
    shard_size: int = 50,
    poll_seconds: float = 10.0,
    wait_timeout_s: float = 86400.0,
) -> dict[str, Any]:
    """Split a products folder into shards, run each as a ``catalog-batch`` deployment run, and report.

    Args:
        products_dir (`str`): folder with one sub-folder per SKU (the same path on every worker).
        catalog_dir (`str`, *optional*, defaults to ``"catalog"``): catalog root on shared storage.
        engine (`str`, *optional*, defaults to ``"auto"``): passed to every shard.
        model_root (`str`, *optional*): model weights folder on the workers.
        force (`bool`, *optional*, defaults to `False`): redo SKUs even when unchanged.
        deployment (`str`, *optional*): the ``catalog-batch/<name>`` deployment whose work pool runs the shards.
        shard_size (`int`, *optional*, defaults to 50): SKUs per shard at most. A shard loads the
            models once (a new process per flow run), so large shards amortise that; smaller ones
            spread a batch over more workers.
        poll_seconds (`float`, *optional*, defaults to 10): how often to check the shard runs.
        wait_timeout_s (`float`, *optional*, defaults to 86400): stop waiting after this; SKUs of
            unfinished shards are reported failed (their runs go on and write their own reports).

    Returns:
        `dict` with ``report_path``, ``counts``, ``failed`` (SKU names) and ``shards`` (one per shard run:
        ``run_id``, ``name``, ``state``, ``skus``, ``runner``).
    """
    from prefect.deployments import run_deployment

    logger = _logger()
    started = datetime.now(UTC)
    settings = load_settings()  # this process's storage settings (the shards resolve theirs on their workers)
    names = list_skus(products_dir)
    shards = plan_shards(names, shard_size)
    parent = current_run_id()
    logger.info("%d SKUs in %d shards of <= %d for %s", len(names), len(shards), shard_size, deployment)

    # 1. One deployment run per shard; the idempotency key makes a retried scatter run reuse them.
    submitted: list[tuple[list[str], Any]] = []
    for i, shard in enumerate(shards, 1):
        run = run_deployment(
            deployment,
            parameters={"products_dir": products_dir, "catalog_dir": catalog_dir, "engine": engine,
                        "model_root": model_root, "force": force, "skus": shard},
            timeout=0,
            flow_run_name=f"shard-{i:03d}-of-{len(shards):03d}",
            tags=[SHARD_TAG],
            idempotency_key=f"{parent}:shard-{i}" if parent else None,
        )
        logger.info("shard %d/%d (%d SKUs, %s .. %s): flow run %s", i, len(shards), len(shard), shard[0], shard[-1],
                    run.id)
        submitted.append((shard, run))

    # 2. Wait for them, logging progress as shards finish.
    def progress(done: int, total: int, runs: dict) -> None:
        states = sorted({r.state.name for r in runs.values() if r.state is not None})
        logger.info("shards finished: %d/%d (states: %s)", done, total, ", ".join(states))

    final = wait_for_flow_runs([r.id for _, r in submitted], poll_seconds=poll_seconds, timeout_s=wait_timeout_s,
                               on_progress=progress) if submitted else {}

    # 3. One report for the folder, from the shard reports; a SKU no shard reported fails with the reason.
    entries: list[dict[str, Any]] = []
    shard_rows: list[dict[str, Any]] = []
    engine_info: dict[str, Any] | None = None
    for shard, run in submitted:
        fr = final.get(run.id, run)
        state = fr.state.name if fr.state is not None else "unknown"
        rep = find_shard_report(catalog_dir, str(run.id), settings) if fr.state is not None and fr.state.is_final() else None
        runner = (rep or {}).get("runner") or {}
        if rep is not None:
            engine_info = engine_info or rep.get("engine")
            entries += [dict(e, shard_run=str(run.id), worker=runner.get("worker")) for e in rep["entries"]]
        reported = {e["sku"] for e in (rep or {}).get("entries", [])}
        why = (f"shard run {run.name} ({run.id}) ended {state} without a report" if fr.state is not None
               and fr.state.is_final() else f"shard run {run.name} ({run.id}) still {state} after {wait_timeout_s:g} s")
        entries += [{"sku": s, "status": "failed", "error": why, "outputs": [], "reason": None,
                     "shard_run": str(run.id)} for s in shard if s not in reported]
        shard_rows.append({"run_id": str(run.id), "name": run.name, "state": state, "skus": len(shard),
                           "runner": runner})
    report = build_report(entries, products_dir=products_dir, catalog_dir=catalog_dir,
                          engine=engine_info or {"name": engine, "reason": "no shard reported"},
                          started_at=started, run_id=parent)
    report["shards"] = shard_rows
    path = write_catalog_report(report, catalog_dir, settings)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=report_markdown(report), key="catalog-scatter-report",
                                 description=f"Catalog batch over {len(shards)} shards ({path})")
    except Exception as exc:  # the JSON report is the record
        logger.warning("could not create the Prefect artifact: %s", exc)
    publish_batch_artifacts(report, path, str(catalog_dir), key=SCATTER_TABLE_KEY)
    logger.info("report: %s (%s)", path, report["counts"])
    return {"report_path": str(path), "counts": report["counts"],
            "failed": [e["sku"] for e in report["entries"] if e["status"] == "failed"], "shards": shard_rows}

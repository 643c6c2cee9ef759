"""What a batch leaves in Prefect besides its logs: a table artifact of SKUs and a link to its report.

The batch report (``CATALOG/_reports/<time>-<run id>.json``) stays the record; artifacts are the view
in the Prefect UI (Artifacts tab of the flow run, and under their key across runs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Artifact keys (Prefect keys: lower-case letters, digits and dashes).
SKU_TABLE_KEY = "catalog-batch-skus"
SCATTER_TABLE_KEY = "catalog-scatter-skus"


def current_run_id() -> str | None:
    """The id of the flow run this code runs in, or `None` outside a flow run."""
    try:
        from prefect.runtime import flow_run

        rid = flow_run.get_id()
    except Exception:  # no Prefect context: plain Python, a .fn() call
        return None
    return str(rid) if rid else None


def entry_link(catalog_dir: str, sku: str) -> str:
    """A link to a catalog entry's manifest: a ``file://`` URI for a path, ``URL/<sku>/manifest.json`` for a URL."""
    if "://" in catalog_dir:
        return f"{catalog_dir.rstrip('/')}/{sku}/manifest.json"
    return (Path(catalog_dir).resolve() / sku / "manifest.json").as_uri()


def report_link(report_path: str | Path) -> str:
    text = str(report_path)
    return text if "://" in text else Path(text).resolve().as_uri()


def sku_rows(report: dict[str, Any], catalog_dir: str) -> list[dict[str, Any]]:
    """One table row per SKU: status, outputs, the entry's link (when it has one), error or reason, seconds."""
    rows = []
    for e in report["entries"]:
        has_entry = e["status"] in ("ok", "skipped") and bool(e.get("outputs"))
        rows.append({
            "sku": e["sku"],
            "status": e["status"],
            "outputs": len(e.get("outputs") or []),
            "entry": entry_link(catalog_dir, e["sku"]) if has_entry else "",
            "error_or_reason": e.get("error") or e.get("reason") or "",
            "seconds": e.get("seconds", ""),
            "worker": e.get("worker") or (report.get("runner") or {}).get("worker") or "",
        })
    return rows


def publish_batch_artifacts(report: dict[str, Any], report_path: str | Path, catalog_dir: str,
                            key: str = SKU_TABLE_KEY) -> None:
    """Create the SKU table artifact and a link artifact to the report JSON. Never raises."""
    try:
        from prefect.artifacts import create_link_artifact, create_table_artifact

        c = report["counts"]
        create_table_artifact(
            table=sku_rows(report, catalog_dir), key=key,
            description=f"{c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped; report {report_path}",
        )
        create_link_artifact(link=report_link(report_path), link_text=Path(str(report_path)).name,
                             key=f"{key}-report", description="the batch report (JSON)")
    except Exception as exc:  # an artifact is a convenience; the JSON report is the record
        logger.warning("could not create the Prefect artifacts: %s", exc)

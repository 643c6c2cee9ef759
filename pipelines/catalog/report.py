"""Batch reports: ``CATALOG/_reports/<run>.json`` and the Markdown shown as a Prefect artifact."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines import __version__
from pipelines.imageio import atomic_write_json

REPORTS_DIR = "_reports"
REPORT_SCHEMA_VERSION = 1


def build_report(
    entries: list[dict[str, Any]],
    *,
    products_dir: str | Path,
    catalog_dir: str | Path,
    engine: dict[str, Any] | None,
    started_at: datetime,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Assemble a batch report.

    Args:
        entries (`list[dict]`): one per SKU with at least ``sku``, ``status`` (ok|failed|skipped),
            ``error`` (str or None) and ``outputs`` (list of file names relative to ``CATALOG/<sku>/``).

    Returns:
        `dict`: the report (see docs/catalog-format.md, "Batch reports").
    """
    counts = {s: sum(1 for e in entries if e["status"] == s) for s in ("ok", "failed", "skipped")}
    finished = datetime.now(UTC)
    return {
        "report_version": REPORT_SCHEMA_VERSION,
        "run_id": run_id or uuid.uuid4().hex[:12],
        "vitrine_version": __version__,
        "products_dir": _location(products_dir),
        "catalog_dir": _location(catalog_dir),
        "engine": engine,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started_at).total_seconds(), 3),
        "counts": counts,
        "entries": sorted(entries, key=lambda e: e["sku"]),
        # PNG contact sheets of the batch, relative to the catalog root (pipelines.catalog.contact_sheet).
        "contact_sheets": [],
    }


def _location(path: str | Path) -> str:
    """An absolute path, or a URL (``s3://bucket/catalog``) as given."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


def write_report(report: dict[str, Any], catalog_dir: str | Path) -> Path:
    """Write a report atomically to ``CATALOG/_reports/<UTC time>-<run id>.json``; returns its path."""
    stamp = report["finished_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = Path(catalog_dir) / REPORTS_DIR / f"{stamp}-{report['run_id']}.json"
    atomic_write_json(path, report)
    return path


def report_markdown(report: dict[str, Any]) -> str:
    """A Markdown summary of a report: counts, then a table of SKUs with status and reason.

    All user-provided text (SKU names, error messages) is HTML-escaped and has its pipes escaped.
    """

    def cell(text: Any) -> str:
        return html.escape(str(text if text is not None else "")).replace("|", "\\|").replace("\n", " ")

    c = report["counts"]
    lines = [
        f"# Catalog batch {cell(report['run_id'])}",
        "",
        f"**{c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped** in {report['seconds']:.1f} s "
        f"(engine: {cell((report.get('engine') or {}).get('name', '?'))})",
        "",
    ]
    for i, rel in enumerate(report.get("contact_sheets") or [], start=1):
        uri = (Path(report["catalog_dir"]) / rel).as_uri()  # percent-encoded: safe inside a link
        lines += [f"Contact sheet{f' {i}' if i > 1 else ''}: [{cell(Path(rel).name)}]({uri})", ""]
    lines += [
        "| SKU | status | outputs | error / reason |",
        "|---|---|---|---|",
    ]
    for e in report["entries"]:
        lines.append(
            f"| {cell(e['sku'])} | {cell(e['status'])} | {len(e.get('outputs') or [])} | "
            f"{cell(e.get('error') or e.get('reason') or '')} |"
        )
    return "\n".join(lines) + "\n"

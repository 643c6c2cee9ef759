"""Catalogs at fsspec URLs (``s3://bucket/catalog``, ``gs://...``, ``file:///mnt/...``).

Object stores have neither atomic folder renames nor file locks, so a SKU is rendered by the usual
`process_sku` into a local *scratch* catalog (`VitrineSettings.scratch_root`: ``$VITRINE_SCRATCH``, default
``<tmp>/vitrine-scratch``)
and then *published*: every file of the entry is uploaded, the ``manifest.json`` last. The manifest is
the commit marker: a reader (and the skip check) trusts an entry only through its manifest, whose
``outputs`` carry the sha256 of every file. Files a previous render left that the new manifest does not
list are deleted after the manifest is in place. A SKU whose remote manifest has the current content
hash and status ``ok`` (and whose outputs are all listed remotely) is skipped without downloading
anything.

Limits (docs/operations.md, "Storage"): there is no cross-machine lock on an object store; one writer
per SKU comes from sharding (every SKU is in exactly one shard of a batch). Two overlapping batches of
the same folder can both publish one SKU; each publishes a complete entry, and for a deterministic
engine the files are identical, but with a non-deterministic one a reader between the two uploads can
see images of one run under the manifest of the other (``vitrine verify`` flags it: sha256 mismatch).
Credentials and endpoints come from the fsspec backend's usual settings (for S3: ``s3fs`` with
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for an S3-compatible store) or
`VitrineSettings.storage_options` (``VITRINE_STORAGE_OPTIONS``, JSON passed to ``fsspec.url_to_fs``).
Each function takes the process's ``settings`` (`pipelines.settings.VitrineSettings`; default: the defaults).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from pipelines.catalog.manifest import MANIFEST_NAME
from pipelines.settings import VitrineSettings

logger = logging.getLogger(__name__)

def is_url(location: str | Path) -> bool:
    """True for ``scheme://...`` locations (handled by fsspec), False for local paths."""
    return "://" in str(location)


def scratch_catalog(url: str, settings: VitrineSettings | None = None) -> Path:
    """The local scratch catalog of a catalog URL (one per URL, under ``settings.scratch_root``)."""
    base = (settings or VitrineSettings()).scratch_root
    return base / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


class RemoteCatalog:
    """A catalog root at an fsspec URL.

    Args:
        url (`str`): e.g. ``s3://bucket/catalog`` (needs ``s3fs``), ``file:///mnt/catalog``.
        options (`dict`, *optional*): fsspec storage options (`VitrineSettings.storage_options`); default none.
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None):
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, root = fsspec.url_to_fs(self.url, **(options or {}))
        except (ImportError, ValueError) as exc:
            raise InputError(f"cannot open catalog {url}: {exc} (install the fsspec backend, e.g. s3fs)",
                             key="catalog_dir") from None
        self.root = root.rstrip("/")

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def entry_url(self, sku: str, name: str = MANIFEST_NAME) -> str:
        return f"{self.url}/{sku}/{name}"

    def read_manifest(self, sku: str) -> dict[str, Any] | None:
        path = self._path(sku, MANIFEST_NAME)
        try:
            with self.fs.open(path, "rb") as f:
                return json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            logger.warning("unreadable manifest %s: treated as missing", path)
            return None

    def remote_files(self, sku: str) -> set[str]:
        """Paths (relative to the entry) of every file under ``<sku>/``."""
        prefix = self._path(sku) + "/"
        try:
            found = self.fs.find(self._path(sku))
        except FileNotFoundError:
            return set()
        return {f[len(prefix):] for f in found if f.startswith(prefix)}

    def is_up_to_date(self, sku: str, content_hash: str) -> dict[str, Any] | None:
        """The remote manifest when it is complete and made from ``content_hash``, else `None`."""
        manifest = self.read_manifest(sku)
        if not manifest or manifest.get("content_hash") != content_hash or manifest.get("status") != "ok":
            return None
        present = self.remote_files(sku)
        if any(o["file"] not in present for o in manifest.get("outputs", [])):
            return None
        return manifest

    def publish(self, local_entry: Path, sku: str) -> list[str]:
        """Upload a finished local entry to ``<url>/<sku>/``: files first, manifest last, then drop stale files.

        Returns:
            `list[str]`: the uploaded paths, relative to the entry.
        """
        local_entry = Path(local_entry)
        manifest = local_entry / MANIFEST_NAME
        if not manifest.is_file():
            raise InputError("not a finished catalog entry (no manifest.json)", local_entry)
        files = sorted(p.relative_to(local_entry).as_posix() for p in local_entry.rglob("*")
                       if p.is_file() and p != manifest)
        before = self.remote_files(sku)
        for rel in files:
            self.fs.makedirs(self._path(sku, *rel.split("/")[:-1]), exist_ok=True)
            self.fs.put_file(str(local_entry / rel), self._path(sku, rel))
        self.fs.put_file(str(manifest), self._path(sku, MANIFEST_NAME))  # the commit
        stale = sorted(before - set(files) - {MANIFEST_NAME})
        for rel in stale:
            try:
                self.fs.rm_file(self._path(sku, rel))
            except FileNotFoundError:
                pass
        return [*files, MANIFEST_NAME]

    def put_report(self, local_report: Path, reports_dir: str) -> str:
        """Upload a batch report to ``<url>/<reports_dir>/<name>``; returns its URL."""
        self.fs.makedirs(self._path(reports_dir), exist_ok=True)
        self.fs.put_file(str(local_report), self._path(reports_dir, local_report.name))
        return f"{self.url}/{reports_dir}/{local_report.name}"

    def find_report(self, reports_dir: str, run_id: str) -> dict[str, Any] | None:
        matches = sorted(self.fs.glob(self._path(reports_dir, f"*-{run_id}.json")))
        if not matches:
            return None
        with self.fs.open(matches[-1], "rb") as f:
            return json.loads(f.read().decode("utf-8"))


def process_sku_at_url(product, url: str, engine, options=None, *, force: bool = False,
                       settings: VitrineSettings | None = None):
    """`pipelines.catalog.render.process_sku` for a catalog at a URL: skip, or render to scratch and publish.

    Returns:
        `SkuResult` with ``manifest`` set to the entry's URL. ``skipped`` (reason ``unchanged``) when the
        remote entry is complete and current; ``ok`` once published; ``failed`` with the error otherwise.
    """
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku, sku_content_hash, SkuResult
    from pipelines.catalog.store import sku_lock
    from pipelines.errors import VitrineError

    t0 = time.perf_counter()
    options = options or RenderOptions()
    try:
        remote = RemoteCatalog(url, dict((settings or VitrineSettings()).storage_options))
        content_hash = sku_content_hash(product, engine, options)
        current = None if force else remote.is_up_to_date(product.sku, content_hash)
    except (OSError, VitrineError) as exc:
        return SkuResult(product.sku, "failed", error=f"{url}: {exc}", seconds=time.perf_counter() - t0)
    if current is not None:
        return SkuResult(product.sku, "skipped", reason="unchanged", outputs=[o["file"] for o in current["outputs"]],
                         manifest=remote.entry_url(product.sku), seconds=time.perf_counter() - t0)
    scratch = scratch_catalog(url, settings)
    # A current scratch copy (an earlier render whose upload failed) is published without re-rendering.
    result = process_sku(product, scratch, engine, options, force=force)
    if result.status == "failed" or result.reason == "locked by another run":
        return result
    lock = sku_lock(scratch, product.sku, timeout=600)
    try:
        with lock:  # no local re-render swaps the folder while it uploads
            remote.publish(scratch / product.sku, product.sku)
            shutil.rmtree(scratch / product.sku, ignore_errors=True)
    except (OSError, VitrineError) as exc:
        return SkuResult(product.sku, "failed", error=f"publishing to {url}: {exc}", seconds=time.perf_counter() - t0)
    result.status, result.reason = "ok", None
    result.manifest = remote.entry_url(product.sku)
    result.seconds = time.perf_counter() - t0
    return result


def write_catalog_report(report: dict[str, Any], catalog_dir: str | Path,
                         settings: VitrineSettings | None = None) -> str:
    """`pipelines.catalog.report.write_report` for a path or a URL; returns the report's path or URL."""
    from pipelines.catalog.report import REPORTS_DIR, write_report

    if not is_url(catalog_dir):
        return str(write_report(report, catalog_dir))
    url = str(catalog_dir)
    settings = settings or VitrineSettings()
    local = write_report(report, scratch_catalog(url, settings))
    try:
        return RemoteCatalog(url, dict(settings.storage_options)).put_report(local, REPORTS_DIR)
    finally:
        local.unlink(missing_ok=True)


def find_catalog_report(catalog_dir: str | Path, run_id: str,
                        settings: VitrineSettings | None = None) -> dict[str, Any] | None:
    """The batch report a flow run wrote (``_reports/<time>-<run id>.json``) at a path or URL, or `None`."""
    from pipelines.catalog.report import REPORTS_DIR

    if is_url(catalog_dir):
        options = dict((settings or VitrineSettings()).storage_options)
        return RemoteCatalog(str(catalog_dir), options).find_report(REPORTS_DIR, run_id)
    matches = sorted((Path(catalog_dir) / REPORTS_DIR).glob(f"*-{run_id}.json"))
    return json.loads(matches[-1].read_text(encoding="utf-8")) if matches else None

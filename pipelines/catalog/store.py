"""The catalog's storage mechanics: per-SKU locks, staging folders, the trash, and the commit by rename.

A catalog entry appears whole or not at all: it is built in ``CATALOG/.staging/`` (`staging_path`, or
`stage_entry_copy` for the next version of an entry) and moved into place with a rename (`commit_entry`);
the manifest is written last inside it. A per-SKU file lock (`sku_lock`) means two writers never write the
same SKU at once; a render also holds `render_lock` for its whole run. What an interrupted run leaves
(staging folders, an entry caught in the trash between the two renames of a commit) is cleaned up or
restored (`clean_leftovers`, `restore_trashed`, `clean_stale_staging`). Rendering lives in
`pipelines.catalog.render`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.errors import InputError, VitrineError
from pipelines.imageio import fsync_dir
from pipelines.product import validate_sku

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"
TRASH_DIR = ".trash"
LOCKS_DIR = ".locks"


def sku_lock(catalog: Path, sku: str, timeout: float = 0) -> FileLock:
    """The file lock that guards writes to ``catalog/<sku>``."""
    locks = catalog / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{sku}.lock"), timeout=timeout)


#: Seconds a render waits for a SKU whose write lock is held by a short writer (a review decision, an
#: edit's commit) before it reports the SKU ``failed`` as locked (never silently ``skipped``).
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


def is_vitrine_entry(entry: Path, sku: str) -> bool:
    """True when ``entry`` is a catalog entry Vitrine wrote: a folder with a readable manifest for ``sku``."""
    try:
        return entry.is_dir() and not entry.is_symlink() and read_manifest(entry / MANIFEST_NAME).get("sku") == sku
    except (InputError, ValueError, OSError):
        return False


def clean_leftovers(catalog: Path, sku: str) -> list[str]:
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
                restore_trashed(catalog, sku, catalog / sku)
                removed += clean_leftovers(catalog, sku)
            finally:
                wlock.release()
        finally:
            rlock.release()
    if removed:
        logger.warning("removed %d staging/trash folder(s) left by interrupted runs in %s", len(removed), catalog)
    return removed


def staging_path(catalog: Path, sku: str) -> Path:
    """A fresh staging folder name for ``sku``: ``CATALOG/.staging/<sku>.<pid>.<hex8>`` (not created)."""
    return catalog / STAGING_DIR / f"{sku}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def stage_entry_copy(catalog: Path, sku: str) -> Path:
    """A staging copy of the entry ``catalog/<sku>`` to build its next version in (call with `sku_lock` held).

    Files are hard links where the file system allows (every file of an entry is written by an atomic
    rename, never in place, so a link never sees a change), else copies. Commit it with `commit_entry`.
    """
    staging = staging_path(catalog, sku)
    staging.parent.mkdir(parents=True, exist_ok=True)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(catalog / sku, staging, copy_function=link_or_copy, symlinks=True)
    return staging


def restore_trashed(catalog: Path, sku: str, final: Path) -> None:
    """Put back an entry that a crash left in ``.trash`` (call with the lock held).

    `commit_entry` replaces an entry with two renames (old entry to ``.trash``, new one into place); a run
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
        files = [r["file"] for r in manifest.get("outputs", []) + manifest.get("work", [])
                 + manifest.get("stale_edits", [])]
    except (InputError, ValueError, TypeError, KeyError):
        return False
    return manifest.get("status") == "ok" and all((entry / f).is_file() for f in files)


def commit_entry(staging: Path, catalog: Path, sku: str) -> None:
    """Move a finished staging folder into place as ``catalog/<sku>`` (call with `sku_lock` held); the old entry
    (if any) is replaced in one rename.

    Only a catalog entry Vitrine wrote (a manifest for this SKU) is ever replaced: anything else at
    ``final`` (a product folder, someone's files) is refused with `VitrineError` and left alone.
    """
    final = catalog / sku
    if final.exists() or final.is_symlink():
        if not is_vitrine_entry(final, sku):
            raise VitrineError(f"{final}: exists and is not a Vitrine catalog entry (no manifest.json for SKU "
                               f"{sku!r}); refusing to replace it: move it out of the catalog")
        trash = catalog / TRASH_DIR / f"{sku}.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)
    fsync_dir(final.parent)



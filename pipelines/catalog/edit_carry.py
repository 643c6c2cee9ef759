"""Edit versions across a re-render of their SKU: carried over, or kept as stale history; never dropped.

A re-render builds a fresh entry in a staging folder; the Kontext edit versions of the old entry
(`pipelines.catalog.edits`: ``<stem>.edit-<N>.png``, their exports and their own work files) are not part of
it. `carry_edits` brings them into the staging folder before the commit (`pipelines.catalog.store.commit_entry`),
so the commit's rename swaps in an entry that already holds them, and a crash before it leaves the old entry:

- an edit is **current** when its parent is current (the rendered output it was made from has the same file
  name and sha256 in the new render, or the parent is itself a current edit) and every work file its
  pixel check reads (its masks, the normalised photo, a garment's alpha) has the same sha256 in the new
  render, or is the edit's own file: its files are linked into the staging folder under the same names and
  its records (``review`` included) appended to ``outputs[]`` / ``work[]``, exactly as they were;
- every other edit is **stale**: its image and exports are linked to
  ``history/<UTC time>-<hex8>/<file>`` and described in the manifest's ``stale_edits[]`` (docs/catalog-format.md),
  with the sha256 of the output it was made from, and left out of ``outputs[]`` (not shown, not edited, not
  verified as current). The stale records of earlier re-renders are carried forward the same way.

Files are hard links where the file system allows, else copies (every file of an entry is written by an
atomic rename, never in place).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest, write_manifest
from pipelines.catalog.review import review_counts, sku_review_status
from pipelines.catalog.workfiles import WORK_DIR
from pipelines.errors import InputError
from pipelines.models.licence import merge_model_records

logger = logging.getLogger(__name__)

HISTORY_DIR = "history"
STALE_KEY = "stale_edits"
#: Keys of an output record that name work files its pixel check reads.
MASK_KEYS = ("product_mask", "preserve_mask", "seam_band")


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (parents created), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _old_manifest(old_dir: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(old_dir / MANIFEST_NAME) if (old_dir / MANIFEST_NAME).is_file() else None
    except InputError:
        return None


def _dependencies(manifest: dict[str, Any], rec: dict[str, Any]) -> dict[str, str | None]:
    """The work files an output's pixel check reads (`pipelines.catalog.verify`), with their sha256 in ``manifest``
    (`None` when ``manifest`` does not list the file)."""
    work = {w.get("file"): w.get("sha256") for w in manifest.get("work", []) if isinstance(w, dict)}
    inputs = {i.get("file"): i for i in manifest.get("inputs", []) if isinstance(i, dict)}
    rels = [rec[k] for k in MASK_KEYS if isinstance(rec.get(k), str)]
    for key in ("source_input", "garment_input"):
        normalized = (inputs.get(rec.get(key)) or {}).get("normalized")
        if normalized:
            rels.append(normalized)
    if rec.get("garment_input"):
        rels += [s["alpha"] for s in manifest.get("subjects", []) if s.get("input") == rec["garment_input"]
                 and isinstance(s.get("alpha"), str)]
    return {r: work.get(r) for r in rels}


class _Plan:
    """What happens to each old edit: current (carried) or stale (why), decided parents first."""

    def __init__(self, old: dict[str, Any], new: dict[str, Any]):
        self.old, self.new = old, new
        self.old_out = {o["file"]: o for o in old.get("outputs", [])}
        self.new_out = {o["file"]: o for o in new.get("outputs", [])}
        edits = [o for o in old.get("outputs", []) if o.get("kind") == "edit"]
        edit_files = {e["file"] for e in edits}
        self.exports = {e["file"]: [o for o in old.get("outputs", []) if o.get("kind") == "export"
                                    and o.get("derived_from") == e["file"]] for e in edits}
        # An edit's own work files (`EntryWriter.guarantee_masks`): ``work/<edit stem>.*``, which no render writes.
        self.own = {e["file"]: {w["file"]: w for w in old.get("work", [])
                                if w.get("file", "").startswith(f"{WORK_DIR}/{Path(e['file']).stem}.")}
                    for e in edits}
        self.current: list[dict[str, Any]] = []
        self.stale: list[tuple[dict[str, Any], str]] = []
        done: set[str] = set()
        for e in edits:  # outputs[] lists a version after its parent
            why = self._why_stale(e, edit_files, done)
            if why is None:
                self.current.append(e)
                done.add(e["file"])
            else:
                self.stale.append((e, why))

    def _why_stale(self, e: dict[str, Any], edit_files: set[str], done: set[str]) -> str | None:
        parent = e.get("derived_from", "")
        if parent in edit_files:
            if parent not in done:
                return f"the version it was made from ({parent}) is stale"
        elif parent not in self.new_out:
            return f"{parent} is no longer rendered"
        elif self.new_out[parent]["sha256"] != (e.get("edit") or {}).get("parent_sha256"):
            return f"{parent} changed in the re-render"
        new_deps = _dependencies(self.new, e)
        for rel, sha in _dependencies(self.old, e).items():
            if rel in self.own[e["file"]]:
                continue
            if new_deps.get(rel) is None or new_deps[rel] != sha:
                return f"the work file {rel} it was checked against changed in the re-render"
        return None

    def root_of(self, e: dict[str, Any]) -> str:
        return (e.get("edit") or {}).get("root") or e.get("derived_from", "")


def _stale_record(rec: dict[str, Any], file: str, stale: dict[str, Any]) -> dict[str, Any]:
    """One ``stale_edits[]`` item: the kept file, what it was, and why it is no longer current."""
    return {"file": file, "sha256": rec["sha256"], "kind": rec["kind"], "format": rec.get("format", "png"),
            "review": dict(rec.get("review") or {"status": "pending"}), "stale": stale, "record": rec}


def _carry_current(plan: _Plan, staging: Path, old_dir: Path, manifest: dict[str, Any]) -> list[str]:
    carried: list[str] = []
    work_files = {w["file"] for w in manifest.get("work", [])}
    for e in plan.current:
        for rec in (e, *plan.exports[e["file"]]):
            link_or_copy(old_dir / rec["file"], staging / rec["file"])
            manifest["outputs"].append(rec)
            carried.append(rec["file"])
        for rel, rec in plan.own[e["file"]].items():
            if rel not in work_files:
                link_or_copy(old_dir / rel, staging / rel)
                manifest.setdefault("work", []).append(rec)
                work_files.add(rel)
    if plan.current:
        manifest["models"] = merge_model_records(manifest.get("models", []),
                                                 [e["edit"]["model"] for e in plan.current if e.get("edit")])
    return carried


def _keep_stale(plan: _Plan, staging: Path, old_dir: Path) -> list[dict[str, Any]]:
    """Link the old history and the newly stale edits into the staging folder; their ``stale_edits[]`` items."""
    kept: list[dict[str, Any]] = []
    for item in plan.old.get(STALE_KEY) or []:  # earlier re-renders' history, as it was
        if (old_dir / item["file"]).is_file():
            link_or_copy(old_dir / item["file"], staging / item["file"])
            kept.append(item)
        else:
            logger.warning("%s: the stale edit %s is missing; its record is dropped", old_dir, item["file"])
    if not plan.stale:
        return kept
    now = datetime.now(UTC)
    folder = f"{HISTORY_DIR}/{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    for e, why in plan.stale:
        root = plan.root_of(e)
        stale = {"since": now.isoformat(timespec="seconds"), "reason": why, "original_file": e["file"],
                 "source": root, "source_sha256": (plan.old_out.get(root) or {}).get("sha256"),
                 "current_sha256": (plan.new_out.get(root) or {}).get("sha256"),
                 "content_hash": plan.old.get("content_hash")}
        for rec in (e, *plan.exports[e["file"]]):
            link_or_copy(old_dir / rec["file"], staging / folder / rec["file"])
            kept.append(_stale_record(rec, f"{folder}/{rec['file']}", dict(stale, original_file=rec["file"])))
    return kept


def carry_edits(staging: Path, old_dir: Path, manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Bring the old entry's edit versions into a re-rendered entry's staging folder (before its commit).

    Args:
        staging (`Path`): the staging folder of the new entry, its manifest written.
        old_dir (`Path`): the entry being replaced (``CATALOG/<sku>``); nothing happens without a readable
            manifest there.
        manifest (`dict`): the new entry's manifest; updated in place (``outputs[]``, ``work[]``, ``models[]``,
            ``review``, ``stale_edits[]``) and rewritten in ``staging`` when anything was carried.

    Returns:
        `dict`: ``carried`` (files now current, exports included) and ``stale`` (``stale_edits[]`` files added
        by this re-render).
    """
    old = _old_manifest(old_dir)
    if old is None or not (any(o.get("kind") == "edit" for o in old.get("outputs", [])) or old.get(STALE_KEY)):
        return {"carried": [], "stale": []}
    plan = _Plan(old, manifest)
    carried = _carry_current(plan, staging, old_dir, manifest)
    history = _keep_stale(plan, staging, old_dir)
    before = {i["file"] for i in old.get(STALE_KEY) or []}
    if history:
        manifest[STALE_KEY] = history
    if carried:
        manifest["review"] = {**(manifest.get("review") or {}), "status": sku_review_status(manifest["outputs"]),
                              "counts": review_counts(manifest["outputs"])}
    write_manifest(staging, manifest)
    stale = [i["file"] for i in history if i["file"] not in before]
    if stale:
        logger.warning("SKU %s: %d edit version(s) of outputs that changed kept as stale history (%s): %s",
                       manifest.get("sku"), len(stale), STALE_KEY, ", ".join(stale))
    return {"carried": carried, "stale": stale}

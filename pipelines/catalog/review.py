"""Review decisions: approve, reject (with a note) or request an edit (with an instruction), per output.

A decision is written to two places, both atomically and under the SKU's lock (`pipelines.catalog.store.sku_lock`):

1. ``CATALOG/_review/decisions.jsonl``: the decisions file, an append-only journal with one JSON object
   per line. It is the record the Kontext edit flow reads (`pending_edit_requests`) and the audit trail.
   It lives outside the SKU folders, so it survives a re-render of a SKU (which replaces its folder).
2. ``CATALOG/<sku>/manifest.json``: the output's ``review`` object (and the outputs derived from it, such
   as ``main.jpg`` from ``main.png``), and the SKU's ``review`` summary. This is what pages and reports show.

The journal is written first: after a crash between the two writes the decision is in the journal (and so
reaches the edit flow) but not yet in the manifest. The format is documented in docs/review.md; in short:

- a ``decision`` event: ``{"v": 1, "event": "decision", "id", "created_at", "sku", "output",
  "output_sha256", "derived", "action", "status", "note", "instruction", "reviewer", "source"}``;
- an ``edit-result`` event, appended by the edit flow (`record_edit_result`): ``{"v": 1,
  "event": "edit-result", "id", "created_at", "decision_id", "sku", "output", "result", "new_output",
  "error"}`` with ``result`` ``applied`` or ``failed``;
- a ``mask-edit`` event, appended when a reviewer saves a painted mask (`pipelines.catalog.mask_edit`): ``{"v": 1,
  "event": "mask-edit", "id", "created_at", "sku", "input", "mask", "mask_sha256", "size", "reviewer",
  "source"}`` (``mask``: the override file written, relative to the product folder).

An edit request is pending while it is the latest decision for its output, no ``applied`` result names
it, and the output's file still has the sha256 it had when the reviewer asked (a re-render that changed
the pixels makes the request stale: the reviewer saw other pixels).

A re-render keeps the decisions on outputs whose bytes did not change (`carry_reviews`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pipelines.catalog.store import LOCKS_DIR, sku_lock
from pipelines.errors import InputError, VitrineError
from pipelines.imageio import atomic_write_bytes, atomic_write_json
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest, validate_manifest, write_manifest
from pipelines.product import validate_sku
from pipelines.quality.flags import output_flags

logger = logging.getLogger(__name__)

REVIEW_DIR = "_review"
DECISIONS_NAME = "decisions.jsonl"
DECISIONS_VERSION = 1

#: Review actions and the status each one sets.
ACTIONS: dict[str, str] = {
    "approve": "approved",
    "reject": "rejected",
    "request-edit": "edit-requested",
    "reset": "pending",
}
STATUSES = ("pending", "approved", "rejected", "edit-requested", "needs-attention")
#: The status an output starts with when a quality flag fired (`pipelines.quality.flags`); a reviewer's
#: decision replaces it, and ``reset`` returns a flagged output to it.
NEEDS_ATTENTION = "needs-attention"
EVENTS = ("decision", "edit-result", "mask-edit")
EDIT_RESULTS = ("applied", "failed")
#: Longest note or instruction accepted, in characters.
MAX_TEXT_LENGTH = 2000
#: Decision sources: who wrote the decision.
SOURCES = ("api", "review-server", "cli", "notebook")


class ReviewConflictError(VitrineError):
    """The decision cannot be recorded now: the SKU is locked by a run, or its output changed meanwhile."""


@dataclass(frozen=True)
class Decision:
    """One recorded review decision (a ``decision`` line of the decisions file).

    Attributes:
        id (`str`): 32 hex characters, unique.
        created_at (`str`): ISO 8601 UTC time, seconds.
        sku (`str`): the SKU.
        output (`str`): the output's file, relative to ``CATALOG/<sku>/`` (e.g. ``main.png``).
        output_sha256 (`str`): sha256 of that file when the decision was made.
        derived (`tuple[str, ...]`): outputs derived from it (exports) that took the same review.
        action (`str`): ``approve``, ``reject``, ``request-edit`` or ``reset``.
        status (`str`): the review status it set: ``approved``, ``rejected``, ``edit-requested``, ``pending``.
        note (`str | None`): the reviewer's note (required to reject).
        instruction (`str | None`): the edit instruction (required to request an edit; else `None`).
        reviewer (`str | None`): who decided.
        source (`str`): what wrote it: ``api``, ``review-server``, ``cli`` or ``notebook``.
    """

    id: str
    created_at: str
    sku: str
    output: str
    output_sha256: str
    derived: tuple[str, ...]
    action: str
    status: str
    note: str | None
    instruction: str | None
    reviewer: str | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"v": DECISIONS_VERSION, "event": "decision", **asdict(self), "derived": list(self.derived)}


@dataclass(frozen=True)
class EditRequest:
    """An edit request waiting for the edit flow (see `pending_edit_requests`).

    Attributes:
        decision_id (`str`): the ``id`` of the ``decision`` event; pass it to `record_edit_result`.
        sku (`str`): the SKU.
        output (`str`): the output to edit, relative to ``CATALOG/<sku>/``.
        output_sha256 (`str`): its sha256, equal to the file's current one.
        instruction (`str`): the free-text edit instruction (a Kontext prompt).
        note (`str | None`): the reviewer's note, if any.
        reviewer (`str | None`): who asked.
        requested_at (`str`): ISO 8601 UTC time of the request.
        derived (`tuple[str, ...]`): exports derived from the output (to re-export after the edit).
        failed_attempts (`int`): ``failed`` edit results recorded for this request so far.
    """

    decision_id: str
    sku: str
    output: str
    output_sha256: str
    instruction: str
    note: str | None
    reviewer: str | None
    requested_at: str
    derived: tuple[str, ...] = field(default_factory=tuple)
    failed_attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "derived": list(self.derived)}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def decisions_path(catalog_dir: str | Path) -> Path:
    """``CATALOG/_review/decisions.jsonl``."""
    return Path(catalog_dir) / REVIEW_DIR / DECISIONS_NAME


def _decisions_lock(catalog: Path, timeout: float) -> FileLock:
    """The lock that serialises writers of the decisions file (always taken after a SKU lock)."""
    locks = catalog / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / "_review-decisions.lock"), timeout=timeout)


def clean_text(value: Any, name: str) -> str | None:
    """Strip a note/instruction; `None` for empty. Refuses non-text, NUL and over-long text."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}", key=name)
    value = value.replace("\r\n", "\n").strip()
    if "\x00" in value:
        raise InputError(f"{name} must not contain NUL characters", key=name)
    if len(value) > MAX_TEXT_LENGTH:
        raise InputError(f"{name} is {len(value)} characters long; the limit is {MAX_TEXT_LENGTH}", key=name)
    return value or None


def is_reviewable(output: dict[str, Any]) -> bool:
    """True for outputs a reviewer decides on; exports derived from another output follow their source."""
    return not (output.get("kind") == "export" and output.get("derived_from"))


def sku_review_status(outputs: Iterable[dict[str, Any]]) -> str:
    """The SKU's review status from its outputs' (reviewable outputs only).

    ``edit-requested`` if any output awaits an edit; else ``rejected`` if any was rejected; else
    ``needs-attention`` if a flagged output awaits review; else ``approved`` if every output was approved;
    else ``pending``.
    """
    statuses = [(o.get("review") or {}).get("status", "pending") for o in outputs if is_reviewable(o)]
    if "edit-requested" in statuses:
        return "edit-requested"
    if "rejected" in statuses:
        return "rejected"
    if NEEDS_ATTENTION in statuses:
        return NEEDS_ATTENTION
    if statuses and all(s == "approved" for s in statuses):
        return "approved"
    return "pending"


def needs_attention(outputs: Iterable[dict[str, Any]]) -> bool:
    """True when a reviewable output still has the ``needs-attention`` status (a quality flag, undecided)."""
    return any((o.get("review") or {}).get("status") == NEEDS_ATTENTION for o in outputs if is_reviewable(o))


def attention_first(items: list, outputs_of) -> list:
    """``items`` reordered so that those whose outputs need attention come first (stable otherwise).

    Args:
        items (`list`): SKUs, entries, outputs... anything.
        outputs_of (`Callable`): item -> its list of manifest outputs (``[]`` when unreadable).
    """
    return sorted(items, key=lambda item: not needs_attention(outputs_of(item) or []))


def review_counts(outputs: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many reviewable outputs have each status."""
    counts = dict.fromkeys(STATUSES, 0)
    for o in outputs:
        if is_reviewable(o):
            status = (o.get("review") or {}).get("status", "pending")
            counts[status] = counts.get(status, 0) + 1
    return counts


def carry_reviews(staging: Path, old_dir: Path, manifest: dict[str, Any]) -> None:
    """Keep review decisions across a re-render for outputs whose bytes did not change.

    An output of the new entry with the same file name and sha256 as in the old entry is the very
    image a reviewer decided on: its ``review`` is carried over (exports follow their source). Outputs
    that changed start ``pending``. Rewrites the staging manifest only when something was carried.
    """
    old_path = old_dir / MANIFEST_NAME
    if not old_path.is_file():
        return
    try:
        old = read_manifest(old_path)
    except InputError:
        return
    old_by_file = {o.get("file"): o for o in old.get("outputs", []) if isinstance(o, dict)}
    carried = False
    for o in manifest["outputs"]:
        prev = old_by_file.get(o["file"])
        review = (prev or {}).get("review") or {}
        if prev and prev.get("sha256") == o["sha256"] and review.get("status", "pending") != "pending":
            o["review"] = dict(review)
            carried = True
    if not carried:
        return
    manifest["review"] = {
        "status": sku_review_status(manifest["outputs"]),
        "updated_at": (old.get("review") or {}).get("updated_at"),
        "counts": review_counts(manifest["outputs"]),
        "carried_over": True,
    }
    write_manifest(staging, manifest)


def _sku_dir(catalog: Path, sku: str) -> Path:
    validate_sku(sku)
    sku_dir = catalog / sku
    if not (sku_dir / MANIFEST_NAME).is_file():
        raise InputError(f"no catalog entry for SKU {sku!r}", path=sku_dir, key="sku")
    return sku_dir


# --------------------------------------------------------------------------------------------------
# The decisions file
# --------------------------------------------------------------------------------------------------


def _check_event(event: Any, path: Path, line: int) -> dict[str, Any]:
    where = f"line {line}"
    if not isinstance(event, dict):
        raise InputError("a decisions line must be a JSON object", path=path, key=where)
    if event.get("v") != DECISIONS_VERSION:
        raise InputError(f"unsupported decisions version {event.get('v')!r} (expected {DECISIONS_VERSION})",
                         path=path, key=where)
    kind = event.get("event")
    if kind not in EVENTS:
        raise InputError(f"unknown event {kind!r}; expected one of {', '.join(EVENTS)}", path=path, key=where)
    required = (
        ("id", "created_at", "sku", "output", "output_sha256", "action", "status")
        if kind == "decision" else ("id", "created_at", "decision_id", "sku", "output", "result")
        if kind == "edit-result" else ("id", "created_at", "sku", "input", "mask", "mask_sha256")
    )
    for key in required:
        if not isinstance(event.get(key), str) or not event[key]:
            raise InputError(f"{key!r} must be a non-empty string", path=path, key=f"{where}.{key}")
    if kind == "decision" and ACTIONS.get(event["action"]) != event["status"] and not (
            event["action"] == "reset" and event["status"] == NEEDS_ATTENTION):
        raise InputError(f"action {event['action']!r} does not set status {event['status']!r}",
                         path=path, key=f"{where}.status")
    if kind == "edit-result" and event["result"] not in EDIT_RESULTS:
        raise InputError(f"result must be one of {', '.join(EDIT_RESULTS)}", path=path, key=f"{where}.result")
    return event


#: Characters that some readers take for a line break besides "\n" (`str.splitlines`, editors, JavaScript):
#: `json.dumps(ensure_ascii=False)` leaves them raw inside strings; `_journal_line` escapes them.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _journal_line(event: dict[str, Any]) -> str:
    """One event as one journal line: JSON with every Unicode line terminator escaped, then ``"\n"``.

    JSON already escapes control characters (``\r``, ``\x0b``, ``\x1c``...); U+0085, U+2028 and U+2029 are
    escaped here, so a note pasted from a word processor can never split a line for any reader.
    """
    text = json.dumps(event, ensure_ascii=False, sort_keys=False)
    for raw, escaped in _LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text + "\n"


def read_decisions(catalog_dir: str | Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """Every event of the decisions file, in the order written ([] when there is none yet).

    Lines are split on ``"\n"`` only (a raw U+2028 that an older version wrote inside a note is part of
    its line). A line that is not valid JSON or not a valid event (a torn write, a hand edit) is skipped
    with a warning naming the file and the line number, so one bad line never blocks the review page,
    ``--list-edits`` or the edit flow.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        strict (`bool`, *optional*, defaults to `False`): raise on the first bad line instead.

    Raises:
        `InputError`: with ``strict``, a bad line; the message names the file and the line.
    """
    path = decisions_path(catalog_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    events = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON: {exc}", path=path, key=f"line {n}") from None
            events.append(_check_event(event, path, n))
        except UnicodeDecodeError as exc:
            if strict:
                raise InputError(f"not valid UTF-8: {exc}", path=path, key=f"line {n}") from None
            logger.warning("%s [line %d]: not valid UTF-8; line skipped", path, n)
        except InputError as exc:
            if strict:
                raise
            logger.warning("%s; line skipped", exc)
    return events


def append_event(catalog: Path, event: dict[str, Any], lock_timeout: float) -> None:
    """Append one event to the decisions file by rewriting it atomically (readers never see half a line)."""
    path = decisions_path(catalog)
    line = _journal_line(event)
    lock = _decisions_lock(catalog, lock_timeout)
    try:
        lock.acquire()
    except Timeout:
        raise ReviewConflictError(f"{path}: another writer holds the decisions file; try again") from None
    try:
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        atomic_write_bytes(path, old + line.encode("utf-8"))
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------------
# Recording decisions
# --------------------------------------------------------------------------------------------------


def record_decision(
    catalog_dir: str | Path,
    sku: str,
    output: str,
    action: str,
    *,
    note: str | None = None,
    instruction: str | None = None,
    reviewer: str | None = None,
    expected_sha256: str | None = None,
    source: str = "api",
    lock_timeout: float = 10.0,
) -> Decision:
    """Record a review decision on one output, in the decisions file and in the SKU's manifest.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        sku (`str`): the SKU (a folder of the catalog with a manifest).
        output (`str`): the output's ``file`` as listed in the manifest (e.g. ``lifestyle-studio-s0.png``).
            Exports derived from another output (``main.jpg``) are not decided on: they take their source's
            review.
        action (`str`): ``approve``, ``reject`` (needs ``note``), ``request-edit`` (needs ``instruction``)
            or ``reset`` (back to ``pending``).
        note (`str`, *optional*): why; required to reject. At most `MAX_TEXT_LENGTH` characters.
        instruction (`str`, *optional*): the edit instruction; required for, and only allowed with,
            ``request-edit``. At most `MAX_TEXT_LENGTH` characters.
        reviewer (`str`, *optional*): who decided.
        expected_sha256 (`str`, *optional*): the sha256 of the output the reviewer saw; when given and the
            manifest now lists another one (the SKU was re-rendered), nothing is written.
        source (`str`, *optional*, defaults to ``"api"``): one of `SOURCES`.
        lock_timeout (`float`, *optional*, defaults to 10): seconds to wait for the SKU's lock.

    Returns:
        `Decision`: the decision as written.

    Raises:
        `InputError`: unknown SKU, output or action; a missing note/instruction; over-long text.
        `ReviewConflictError`: the SKU stayed locked (a run is rendering it), or its output changed.
    """
    # 1. Check inputs.
    catalog = Path(catalog_dir)
    if action not in ACTIONS:
        raise InputError(f"unknown review action {action!r}; expected one of {', '.join(ACTIONS)}", key="action")
    if source not in SOURCES:
        raise InputError(f"unknown decision source {source!r}; expected one of {', '.join(SOURCES)}", key="source")
    note = clean_text(note, "note")
    instruction = clean_text(instruction, "instruction")
    reviewer = clean_text(reviewer, "reviewer")
    if action == "reject" and note is None:
        raise InputError("a rejection needs a note saying why", key="note")
    if action == "request-edit" and instruction is None:
        raise InputError("an edit request needs an instruction (what to change)", key="instruction")
    if action != "request-edit" and instruction is not None:
        raise InputError(f"an instruction only goes with request-edit, not {action!r}", key="instruction")
    sku_dir = _sku_dir(catalog, sku)

    # 2. Under the SKU's lock: re-read the manifest, so a concurrent render or decision is never lost.
    lock = sku_lock(catalog, sku, lock_timeout)
    try:
        lock.acquire()
    except Timeout:
        raise ReviewConflictError(f"SKU {sku!r} is locked (a run is writing it); try again shortly") from None
    try:
        manifest_path = sku_dir / MANIFEST_NAME
        manifest = read_manifest(manifest_path)
        by_file = {o["file"]: o for o in manifest.get("outputs", [])}
        target = by_file.get(output)
        if target is None:
            raise InputError(f"SKU {sku!r} has no output {output!r}; it has {', '.join(sorted(by_file))}",
                             path=manifest_path, key="output")
        if not is_reviewable(target):
            raise InputError(f"{output!r} is an export of {target['derived_from']!r}; decide on that output",
                             path=manifest_path, key="output")
        if expected_sha256 is not None and expected_sha256 != target["sha256"]:
            raise ReviewConflictError(
                f"{sku}/{output} changed since it was shown (sha256 {target['sha256'][:12]}..., shown "
                f"{str(expected_sha256)[:12]}...); reload the page"
            )
        derived = tuple(o["file"] for o in manifest["outputs"] if o.get("derived_from") == output
                        and not is_reviewable(o))

        # 3. The updated manifest, checked before anything is written.
        status = ACTIONS[action]
        if action == "reset" and output_flags(target):  # a flagged output goes back to needing attention
            status = NEEDS_ATTENTION
        decision = Decision(
            id=uuid.uuid4().hex, created_at=_now(), sku=sku, output=output, output_sha256=target["sha256"],
            derived=derived, action=action, status=status, note=note, instruction=instruction,
            reviewer=reviewer, source=source,
        )
        review = {
            "status": decision.status, "note": note, "instruction": instruction, "updated_at": decision.created_at,
            "reviewer": reviewer, "decision_id": decision.id,
        }
        for name in (output, *derived):
            by_file[name]["review"] = dict(review)
        manifest["review"] = {
            "status": sku_review_status(manifest["outputs"]),
            "updated_at": decision.created_at,
            "counts": review_counts(manifest["outputs"]),
        }
        validate_manifest(manifest, path=manifest_path)

        # 4. The journal first (it is what the edit flow reads), then the manifest.
        append_event(catalog, decision.to_json(), lock_timeout)
        atomic_write_json(manifest_path, manifest)
    finally:
        lock.release()
    logger.info("review: %s %s/%s (%s)", decision.status, sku, output, decision.id)
    return decision


def record_edit_result(
    catalog_dir: str | Path,
    decision_id: str,
    *,
    applied: bool,
    new_output: str | None = None,
    error: str | None = None,
    lock_timeout: float = 10.0,
) -> dict[str, Any]:
    """Record that the edit flow applied (or failed to apply) an edit request.

    The edit flow calls this after it wrote the edited output (with the SKU lock held or not: this
    function takes only the decisions file's lock). An ``applied`` result removes the request from
    `pending_edit_requests`; a ``failed`` one leaves it pending and counts the attempt.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        decision_id (`str`): `EditRequest.decision_id`.
        applied (`bool`): whether the edit was applied.
        new_output (`str`, *optional*): the edited output's file, relative to ``CATALOG/<sku>/``.
        error (`str`, *optional*): why it failed.

    Returns:
        `dict`: the ``edit-result`` event as written.

    Raises:
        `InputError`: ``decision_id`` names no edit request in the decisions file.
    """
    catalog = Path(catalog_dir)
    requests = {e["id"]: e for e in read_decisions(catalog) if e["event"] == "decision"}
    request = requests.get(decision_id)
    if request is None or request["action"] != "request-edit":
        raise InputError(f"no edit request with id {decision_id!r}", path=decisions_path(catalog), key="decision_id")
    if error is not None:
        error = str(error)[:MAX_TEXT_LENGTH]
    event = {
        "v": DECISIONS_VERSION, "event": "edit-result", "id": uuid.uuid4().hex, "created_at": _now(),
        "decision_id": decision_id, "sku": request["sku"], "output": request["output"],
        "result": "applied" if applied else "failed", "new_output": new_output, "error": error,
    }
    append_event(catalog, event, lock_timeout)
    return event


# --------------------------------------------------------------------------------------------------
# Reading decisions back
# --------------------------------------------------------------------------------------------------


def latest_decisions(catalog_dir: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest ``decision`` event per ``(sku, output)``."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for e in read_decisions(catalog_dir):
        if e["event"] == "decision":
            latest[(e["sku"], e["output"])] = e
    return latest


def pending_edit_requests(catalog_dir: str | Path) -> list[EditRequest]:
    """The edit requests that the edit flow (``vitrine edit CATALOG_DIR``) should apply, oldest first.

    A request is pending when (1) it is the latest decision on its output, (2) no ``applied``
    ``edit-result`` names it, and (3) the SKU's manifest still lists the output with the sha256 the
    reviewer saw. Requests failing (3) are stale (the SKU was re-rendered) and are logged, not returned.

    Args:
        catalog_dir (`str | Path`): the catalog root.

    Returns:
        `list[EditRequest]`: in the order they were requested.

    Raises:
        `InputError`: the decisions file has an invalid line.
    """
    catalog = Path(catalog_dir)
    events = read_decisions(catalog)
    applied, failed = set(), {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if e["event"] == "decision":
            latest[(e["sku"], e["output"])] = e
        elif e["event"] != "edit-result":
            continue
        elif e["result"] == "applied":
            applied.add(e["decision_id"])
        else:
            failed[e["decision_id"]] = failed.get(e["decision_id"], 0) + 1

    manifests: dict[str, dict[str, str] | None] = {}
    out = []
    for (sku, output), d in latest.items():
        if d["action"] != "request-edit" or d["id"] in applied:
            continue
        if sku not in manifests:
            try:
                m = read_manifest(_sku_dir(catalog, sku) / MANIFEST_NAME)
                manifests[sku] = {o["file"]: o["sha256"] for o in m.get("outputs", [])}
            except InputError:
                manifests[sku] = None
        current = (manifests[sku] or {}).get(output)
        if current != d["output_sha256"]:
            logger.info("edit request %s on %s/%s is stale (the output changed or is gone)", d["id"], sku, output)
            continue
        out.append(EditRequest(
            decision_id=d["id"], sku=sku, output=output, output_sha256=d["output_sha256"],
            instruction=d["instruction"], note=d.get("note"), reviewer=d.get("reviewer"),
            requested_at=d["created_at"], derived=tuple(d.get("derived") or ()),
            failed_attempts=failed.get(d["id"], 0),
        ))
    order = {e["id"]: i for i, e in enumerate(events)}
    return sorted(out, key=lambda r: order[r.decision_id])


def catalog_entries(catalog_dir: str | Path) -> list[tuple[str, Path]]:
    """``(sku, sku_dir)`` for every catalog folder with a manifest, sorted by SKU.

    Folders whose names are not valid SKUs (``_reports``, ``_review``, ``.staging``, ...) are skipped.
    """
    catalog = Path(catalog_dir)
    if not catalog.is_dir():
        raise InputError("catalog folder not found", path=catalog)
    out = []
    for d in sorted(catalog.iterdir()):
        if not d.is_dir() or not (d / MANIFEST_NAME).is_file():
            continue
        try:
            validate_sku(d.name)
        except InputError:
            continue
        out.append((d.name, d))
    return out


def review_summary(catalog_dir: str | Path) -> dict[str, Any]:
    """Review figures of a catalog: SKUs and outputs per status, and pending edit requests.

    Returns:
        `dict` with ``skus`` (status -> count), ``outputs`` (status -> count), ``per_sku`` (SKU ->
        ``{"status", "counts"}``) and ``pending_edits`` (count).
    """
    skus = dict.fromkeys(STATUSES, 0)
    outputs = dict.fromkeys(STATUSES, 0)
    per_sku = {}
    for sku, d in catalog_entries(catalog_dir):
        m = read_manifest(d / MANIFEST_NAME)
        status = sku_review_status(m.get("outputs", []))
        counts = review_counts(m.get("outputs", []))
        skus[status] += 1
        for k, v in counts.items():
            outputs[k] = outputs.get(k, 0) + v
        per_sku[sku] = {"status": status, "counts": counts}
    return {"skus": skus, "outputs": outputs, "per_sku": per_sku,
            "pending_edits": len(pending_edit_requests(catalog_dir))}

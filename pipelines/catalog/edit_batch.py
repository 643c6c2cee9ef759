"""Edit batches: which outputs an edit run touches, applying one job, and the run's report.

The logic of ``vitrine edit`` and of the Prefect edit flow (`flows.edit_flow`, which only wraps these
functions in a flow and tasks):

- `plan_edits`: with an instruction, one job per chosen output (by default the newest version of every
  lifestyle, try-on and edited output of the chosen SKUs; marketplace white-background images only when
  named with ``outputs``); without one, one job per pending review request
  (`pipelines.catalog.review.pending_edit_requests`);
- `apply_edit_job`: one edit through `pipelines.catalog.edits.edit_output`; for a review request the
  result (applied, with the new output, or failed, with the error) is reported back with
  `pipelines.catalog.review.record_edit_result`;
- `write_edit_report`: ``CATALOG/_reports/edit-<UTC time>.json``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.catalog.edits import default_edit_params, edit_output, editable_outputs, load_kontext_editor
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.catalog.review import catalog_entries, pending_edit_requests, record_edit_result
from pipelines.errors import InputError, VitrineError
from pipelines.imageio import atomic_write_json

logger = logging.getLogger(__name__)

REPORTS_DIR = "_reports"
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class EditJob:
    """One output to edit.

    Attributes:
        sku (`str`), output (`str`): the output ``CATALOG/<sku>/<output>``.
        instruction (`str`): the Kontext instruction.
        expected_sha256 (`str`, *optional*): the output's sha256 the job was planned for.
        decision_id (`str`, *optional*): the review request it answers (`None` for ``--instruction``).
    """

    sku: str
    output: str
    instruction: str
    expected_sha256: str | None = None
    decision_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_edits(catalog_dir: str | Path, *, instruction: str | None = None, skus: list[str] | None = None,
               outputs: list[str] | None = None) -> list[EditJob]:
    """The jobs of an edit run.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        instruction (`str`, *optional*): apply this to the chosen outputs; `None`: the pending review requests.
        skus (`list[str]`, *optional*): only these SKUs (default: every SKU with an entry).
        outputs (`list[str]`, *optional*): only these outputs (file names, e.g. ``main.png``); with an
            instruction they may name any non-export output, white-background images included.

    Raises:
        `InputError`: no catalog; a named SKU without an entry; with an instruction, a named output that no
            chosen SKU has.
    """
    catalog = Path(catalog_dir)
    entries = dict(catalog_entries(catalog))
    if skus:
        missing = [s for s in skus if s not in entries]
        if missing:
            raise InputError(f"no catalog entry for SKU(s) {', '.join(missing)}", path=catalog, key="sku")
    chosen = list(dict.fromkeys(skus)) if skus else sorted(entries)
    wanted = set(outputs or [])
    if instruction is None:
        jobs = [EditJob(r.sku, r.output, r.instruction, r.output_sha256, r.decision_id)
                for r in pending_edit_requests(catalog) if r.sku in chosen and (not wanted or r.output in wanted)]
        return jobs
    if not instruction.strip():
        raise InputError("the edit instruction is empty", key="instruction")
    jobs, seen = [], set()
    for sku in chosen:
        manifest = read_manifest(entries[sku] / MANIFEST_NAME)
        by_file = {o["file"]: o for o in manifest.get("outputs", [])}
        if wanted:
            names = [n for n in by_file if n in wanted and by_file[n].get("kind") != "export"]
        else:
            names = editable_outputs(manifest)
        seen.update(names)
        jobs += [EditJob(sku, n, instruction.strip(), by_file[n]["sha256"]) for n in names]
    unknown = sorted(wanted - seen)
    if unknown:
        raise InputError(f"no chosen SKU has output(s) {', '.join(unknown)} (exports cannot be edited)",
                         path=catalog, key="output")
    return jobs


@lru_cache(maxsize=4)
def _cached_editor(model_root: str | None, settings_json: str):
    from pipelines.generation.settings import GenerationSettings

    settings = GenerationSettings(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in json.loads(settings_json).items()})
    return load_kontext_editor(model_root, settings)


def kontext_editor(model_root: str | None, settings=None):
    """The Kontext editor of this process for ``model_root`` (loaded once; `load_kontext_editor`)."""
    from pipelines.generation.settings import GenerationSettings

    settings = settings or GenerationSettings()
    with _LOAD_LOCK:
        return _cached_editor(str(model_root) if model_root is not None else None,
                              json.dumps(settings.to_json(), sort_keys=True))


def apply_edit_job(
    catalog_dir: str | Path,
    job: EditJob,
    *,
    model_root: str | Path | None = None,
    identity: str | Path | None = None,
    commercial: bool = False,
    garment: str = "auto",
    seed: int | None = None,
    settings=None,
    editor=None,
) -> dict[str, Any]:
    """Apply one job; never raises for a failed edit (the entry says why). A review request's outcome is
    recorded in the decisions file (`record_edit_result`).

    Args:
        catalog_dir (`str | Path`): the catalog root.
        job (`EditJob`): what to edit.
        model_root (`str | Path`, *optional*): where FLUX.1-Kontext-dev is.
        identity (`str | Path`, *optional*): an identity preset YAML file (resolved by the caller).
        commercial (`bool`, *optional*, defaults to `False`): the batch is commercial.
        garment (`str`, *optional*, defaults to ``"auto"``): ``auto``, ``keep`` or ``release``.
        seed (`int`, *optional*): the seed (the identity's wins).
        settings (`GenerationSettings`, *optional*): defaults to `GenerationSettings()` (the flows pass
            `VitrineSettings.generation`).
        editor (*optional*): ``(KontextEditor, model record)`` to use instead of loading one.

    Returns:
        `dict`: ``sku``, ``output``, ``instruction``, ``decision_id``, ``status`` (``applied``/``failed``),
        ``new_output``, ``exports``, ``error``.
    """
    from pipelines.edit.identity import read_identity
    from pipelines.generation.settings import GenerationSettings

    entry: dict[str, Any] = {**job.to_json(), "status": "failed", "new_output": None, "exports": [], "error": None}
    try:
        settings = settings or GenerationSettings()
        preset = read_identity(identity) if identity is not None else None
        ed, model = editor if editor is not None else kontext_editor(
            str(model_root) if model_root is not None else None, settings)
        result = edit_output(catalog_dir, job.sku, job.output, job.instruction, ed, model=model,
                             params=default_edit_params(settings), seed=seed, identity=preset, garment=garment,
                             commercial=commercial, expected_sha256=job.expected_sha256,
                             decision_id=job.decision_id)
        entry.update(status="applied", new_output=result.new_output, exports=result.exports)
    except VitrineError as exc:
        entry["error"] = str(exc)
    except Exception as exc:  # one broken edit never stops the batch
        logger.exception("edit of %s/%s failed unexpectedly", job.sku, job.output)
        entry["error"] = f"{type(exc).__name__}: {exc}"
    if job.decision_id is not None:
        try:
            record_edit_result(catalog_dir, job.decision_id, applied=entry["status"] == "applied",
                               new_output=entry["new_output"], error=entry["error"])
        except VitrineError as exc:
            logger.warning("could not record the result of edit request %s: %s", job.decision_id, exc)
            entry["record_error"] = str(exc)
    return entry


def write_edit_report(catalog_dir: str | Path, entries: list[dict[str, Any]], *, instruction: str | None,
                      started_at: datetime, run_id: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``CATALOG/_reports/edit-<UTC time>[-<run id>].json`` atomically; returns its path.

    The report: ``kind`` (``edit``), ``instruction`` (`None`: review requests), ``started_at``,
    ``finished_at``, ``counts`` (``applied``, ``failed``), ``entries`` (one per job, see `apply_edit_job`)
    and the ``extra`` keys (model root, identity, garment policy...).
    """
    finished = datetime.now(UTC)
    counts = {"applied": sum(e["status"] == "applied" for e in entries),
              "failed": sum(e["status"] == "failed" for e in entries)}
    report = {"kind": "edit", "instruction": instruction, "started_at": started_at.isoformat(timespec="seconds"),
              "finished_at": finished.isoformat(timespec="seconds"), "run_id": run_id, "counts": counts,
              "entries": entries, **(extra or {})}
    stamp = started_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = Path(catalog_dir) / REPORTS_DIR / (f"edit-{stamp}" + (f"-{run_id}" if run_id else "") + ".json")
    atomic_write_json(path, report)
    return path


def report_markdown(report_path: Path, entries: list[dict[str, Any]]) -> str:
    """A Markdown table of an edit run (the Prefect artifact)."""
    import html

    def cell(text: Any) -> str:
        return html.escape(str(text if text is not None else "")).replace("|", "\\|").replace("\n", " ")

    lines = [f"# Catalog edits ({cell(report_path.name)})", "", "| SKU | output | instruction | result |",
             "|---|---|---|---|"]
    for e in entries:
        result = e["new_output"] if e["status"] == "applied" else f"failed: {e['error']}"
        lines.append(f"| {cell(e['sku'])} | {cell(e['output'])} | {cell(e['instruction'])} | {cell(result)} |")
    return "\n".join(lines) + "\n"

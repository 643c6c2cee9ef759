"""Prefect 3 edit flow: Kontext instruction edits of catalog outputs, as new versions.

Thin orchestration over `pipelines.catalog.edit_batch`: the flow plans the jobs (an ``instruction`` for chosen
SKUs, or the pending review requests when there is none), runs one task per output (one at a time: they
share one Kontext model on one GPU), reports each review request's outcome back to the decisions file,
and writes ``CATALOG/_reports/edit-<time>-<run id>.json`` with a Markdown artifact. The run's settings
(`pipelines.settings.VitrineSettings`: model root, ``VITRINE_GEN_*``, identity folders) are built once at its
start from its parameters, the environment and the config file.
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

from flows.observability import current_run_id
from pipelines.catalog.edit_batch import EditJob, apply_edit_job, plan_edits, report_markdown, write_edit_report
from pipelines.edit.identity import identity_dirs, load_identity
from pipelines.settings import VitrineSettings, load_settings

#: Called in the flow's process after each edit (the CLI's progress lines). Not a flow parameter.
PROGRESS_HOOKS: list[Callable[[dict[str, Any]], None]] = []


def _logger():
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(name="edit-output", task_run_name="edit-{sku}", cache_policy=NO_CACHE)
def edit_output_task(catalog_dir: str, sku: str, output: str, instruction: str, expected_sha256: str | None = None,
                     decision_id: str | None = None, model_root: str | None = None, identity: str | None = None,
                     commercial: bool = False, garment: str = "auto", seed: int | None = None,
                     settings: VitrineSettings | None = None) -> dict[str, Any]:
    """Edit one output (``CATALOG/<sku>/<output>``). Never raises for a failed edit: the entry says why."""
    settings = settings or load_settings({"model_root": model_root})
    root = str(settings.model_root) if settings.model_root is not None else None
    entry = apply_edit_job(catalog_dir, EditJob(sku, output, instruction, expected_sha256, decision_id),
                           model_root=root, identity=identity, commercial=commercial, garment=garment,
                           seed=seed, settings=settings.generation)
    level = _logger().info if entry["status"] == "applied" else _logger().warning
    level("%s/%s: %s %s", sku, output, entry["status"], entry["new_output"] or entry["error"])
    return entry


@flow(name="catalog-edit", log_prints=False)
def catalog_edit(
    catalog_dir: str,
    instruction: str | None = None,
    skus: list[str] | None = None,
    outputs: list[str] | None = None,
    model_root: str | None = None,
    identity: str | None = None,
    commercial: bool = False,
    garment: str = "auto",
    seed: int | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Apply Kontext edits to catalog outputs as new versions.

    Args:
        catalog_dir (`str`): the catalog root.
        instruction (`str`, *optional*): the edit for every chosen output; `None` applies the pending review
            requests (``vitrine review``) and reports each outcome back to ``_review/decisions.jsonl``.
        skus (`list[str]`, *optional*): only these SKUs.
        outputs (`list[str]`, *optional*): only these outputs (file names); by default the newest version of
            every lifestyle, try-on and edited output.
        model_root (`str`, *optional*): where ``black-forest-labs/FLUX.1-Kontext-dev`` is (``DIR/<org>/<name>/``).
        identity (`str`, *optional*): an identity preset (name or YAML path): its seed, prompt and reference
            face for every edit of the run.
        commercial (`bool`, *optional*, defaults to `False`): the batch is for commercial use (Kontext-dev is
            then refused, naming the alternatives).
        garment (`str`, *optional*, defaults to ``"auto"``): ``auto``, ``keep`` or ``release`` (garment pixels
            re-composited unless the instruction targets the garment / always / never).
        seed (`int`, *optional*): the seed (default: the identity's, else each output's own).
        config (`str`, *optional*): a settings TOML file (docs/configuration.md); default ``$VITRINE_CONFIG``.

    Returns:
        `dict` with ``report_path``, ``counts`` (``applied``, ``failed``) and ``entries``.

    Raises:
        `InputError`: no catalog, an unknown SKU/output, an identity preset not found.
        `ModelNotFoundError`: FLUX.1-Kontext-dev is not found (the message says how to fetch it).
    """
    logger = _logger()
    started = datetime.now(UTC)
    settings = load_settings({"model_root": model_root}, config_file=config)
    root = str(settings.model_root) if settings.model_root is not None else None
    identity_path = None
    if identity is not None:
        identity_path = str(load_identity(identity, identity_dirs(catalog_dir, first=settings.identities_dirs)).path)
    jobs = plan_edits(catalog_dir, instruction=instruction, skus=skus, outputs=outputs)
    if jobs and not commercial:  # fail fast, once, when Kontext is not there (a commercial run is refused per job)
        from pipelines.catalog.edits import FLUX_KONTEXT
        from pipelines.models.profiles import get_profile
        from pipelines.models.location import locate

        profile = get_profile(FLUX_KONTEXT)
        locate(profile.id, root, required_files=profile.required_files, revision=profile.revision)
    logger.info("%d output(s) to edit (%s)", len(jobs), "instruction" if instruction else "review requests")
    entries = []
    for job in jobs:
        entry = edit_output_task(str(catalog_dir), job.sku, job.output, job.instruction, job.expected_sha256,
                                 job.decision_id, root, identity_path, commercial, garment, seed, settings)
        entries.append(entry)
        for hook in list(PROGRESS_HOOKS):
            try:
                hook(entry)
            except Exception:  # a broken progress display must not break a batch
                pass
    path = write_edit_report(catalog_dir, entries, instruction=instruction, started_at=started,
                             run_id=current_run_id(), extra={"model_root": model_root, "identity": identity_path,
                                                             "commercial": commercial, "garment": garment})
    try:
        create_markdown_artifact(markdown=report_markdown(Path(path), entries), key="catalog-edit-report",
                                 description=f"Catalog edit report ({path})")
    except Exception as exc:  # an artifact is a convenience; the JSON report is the record
        logger.warning("could not create the Prefect artifact: %s", exc)
    counts = {"applied": sum(e["status"] == "applied" for e in entries),
              "failed": sum(e["status"] == "failed" for e in entries)}
    logger.info("edit report: %s (%s)", path, counts)
    return {"report_path": str(path), "counts": counts, "entries": entries}

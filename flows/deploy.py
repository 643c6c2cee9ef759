"""Deployments of the batch flow: one per products folder, each with its cron schedule.

Two ways to run them (docs/operations.md):

- **serve** (one machine): `serve_folders` serves a ``catalog-batch/<name>`` deployment per folder in
  this process (``vitrine serve``). Each flow run is a new child process; no work pool, no worker.
- **work pool** (one or many GPU machines): `deploy_folders` registers the deployments with the
  Prefect server (``vitrine deploy``); ``vitrine worker`` processes, one per GPU, run them. A folder
  with ``shard_size`` gets a scheduled ``catalog-scatter/<name>`` deployment (a light flow for the
  dispatch pool) that splits the folder into shards, each a run of the unscheduled
  ``catalog-batch/<name>`` deployment in the GPU pool; without it the batch deployment itself is
  scheduled and one worker renders the whole folder.

A schedules file lists the folders (unknown keys are errors)::

    defaults:                       # optional: applied to every folder
      catalog_dir: /mnt/vitrine/catalog
      engine: auto
      model_root: /mnt/vitrine/models
      timezone: Europe/Berlin
    folders:
      - name: shop-a                # deployment name: letters, digits, '-', '_'
        products_dir: /mnt/vitrine/products/shop-a
        cron: "0 2 * * *"           # optional: no cron = run on demand only
        shard_size: 50              # optional: scale out over the pool's workers
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.errors import InputError

logger = logging.getLogger(__name__)

#: Default work pools: GPU workers run shards/batches; the dispatch pool runs the light scatter flows.
GPU_POOL = "vitrine-gpu"
DISPATCH_POOL = "vitrine-dispatch"
#: Name of the automation that marks flow runs Crashed when their heartbeats stop (a killed machine).
ZOMBIE_AUTOMATION = "vitrine: crash flow runs without heartbeats"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


class FolderSchedule(BaseModel):
    """One products folder to catalog on a schedule.

    Args:
        name (`str`): deployment name (``catalog-batch/<name>``): letters, digits, ``-``, ``_``.
        products_dir (`str`): the products folder, the same path on every worker.
        catalog_dir (`str`, *optional*, defaults to ``"catalog"``): catalog root (shared storage for N machines).
        cron (`str`, *optional*): cron expression (5 fields); none = run on demand only.
        timezone (`str`, *optional*, defaults to ``"UTC"``): IANA time zone of ``cron``.
        engine (`str`, *optional*, defaults to ``"auto"``): engine name for every SKU.
        model_root (`str`, *optional*): model weights folder on the workers.
        force (`bool`, *optional*, defaults to `False`): redo every SKU on each run (usually wrong for a schedule).
        shard_size (`int`, *optional*): split each run into shards of at most this many SKUs, spread
            over the work pool's workers (work-pool mode only).
        paused (`bool`, *optional*, defaults to `False`): create the schedule paused.

    Relative local paths are made absolute (a process worker runs flows in a temporary folder);
    URLs (``scheme://...``) are kept as they are.
    """

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)

    name: str
    products_dir: str
    catalog_dir: str = "catalog"
    cron: str | None = None
    timezone: str = "UTC"
    engine: str = "auto"
    model_root: str | None = None
    force: bool = False
    shard_size: int | None = Field(default=None, ge=1)
    paused: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a deployment name: 1-63 letters, digits, '-' or '_', not starting with "
                             "'-' or '_'")
        return v

    @field_validator("products_dir", "catalog_dir", "model_root")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is None or "://" in v:
            return v
        if not v.strip():
            raise ValueError("must not be empty")
        return os.path.abspath(os.path.expanduser(v))

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from prefect.client.schemas.schedules import CronSchedule

        bad = f"{v!r} is not a 5-field cron expression (minute hour day month weekday)"
        if len(v.split()) != 5:
            raise ValueError(bad)
        try:
            CronSchedule(cron=v)  # Prefect's own check: what the server will accept
        except ValidationError:
            raise ValueError(bad) from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return v

    def batch_parameters(self) -> dict[str, Any]:
        """Parameters of ``catalog-batch`` runs (a shard adds ``skus``)."""
        return {"products_dir": self.products_dir, "catalog_dir": self.catalog_dir, "engine": self.engine,
                "model_root": self.model_root, "force": self.force}

    def scatter_parameters(self) -> dict[str, Any]:
        """Parameters of ``catalog-scatter`` runs."""
        return {**self.batch_parameters(), "deployment": f"catalog-batch/{self.name}",
                "shard_size": self.shard_size}


def load_schedules(path: str | Path) -> list[FolderSchedule]:
    """Read a schedules file (see the module docstring). Errors name the file, folder and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(f"cannot read the schedules file: {exc.strerror or exc}", path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", path) from None
    if not isinstance(data, dict) or set(data) - {"defaults", "folders"}:
        raise InputError("expected a mapping with 'folders' (and optional 'defaults') only", path)
    defaults = data.get("defaults") or {}
    folders = data.get("folders") or []
    if not isinstance(defaults, dict) or not isinstance(folders, list) or not folders:
        raise InputError("'defaults' must be a mapping and 'folders' a non-empty list", path)
    specs = []
    for i, folder in enumerate(folders):
        if not isinstance(folder, dict):
            raise InputError(f"folders[{i}] must be a mapping", path)
        try:
            specs.append(FolderSchedule(**{**defaults, **folder}))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "?"
            raise InputError(f"folders[{i}] ({folder.get('name', '?')}): {key}: {err['msg']}", path) from None
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"duplicate folder names {dupes}", path)
    return specs


def _schedules(spec: FolderSchedule) -> list | None:
    from prefect.schedules import Cron

    return [Cron(spec.cron, timezone=spec.timezone)] if spec.cron else None


def batch_deployment(spec: FolderSchedule, *, work_pool: str | None = None, scheduled: bool = True):
    """The ``catalog-batch/<name>`` deployment of a folder (`RunnerDeployment`), by module path."""
    from prefect.deployments.runner import EntrypointType

    from flows.catalog_batch import catalog_batch

    return catalog_batch.to_deployment(
        name=spec.name,
        schedules=_schedules(spec) if scheduled else None,
        parameters=spec.batch_parameters(),
        work_pool_name=work_pool,
        entrypoint_type=EntrypointType.MODULE_PATH,  # importable on any machine with vitrine installed
        tags=["vitrine", f"folder:{spec.name}"],
        paused=spec.paused if scheduled and spec.cron else None,
        description=f"Catalog {spec.products_dir} into {spec.catalog_dir}",
    )


def scatter_deployment(spec: FolderSchedule, *, work_pool: str):
    """The scheduled ``catalog-scatter/<name>`` deployment that shards a folder over the GPU pool."""
    from prefect.deployments.runner import EntrypointType

    from flows.sharding import catalog_scatter

    return catalog_scatter.to_deployment(
        name=spec.name,
        schedules=_schedules(spec),
        parameters=spec.scatter_parameters(),
        work_pool_name=work_pool,
        entrypoint_type=EntrypointType.MODULE_PATH,
        tags=["vitrine", f"folder:{spec.name}"],
        paused=spec.paused if spec.cron else None,
        description=f"Shard {spec.products_dir} over catalog-batch/{spec.name} ({spec.shard_size} SKUs per shard)",
    )


def ensure_process_pool(name: str) -> bool:
    """Create a process work pool named ``name`` unless it exists; returns whether it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
        return True


def ensure_zombie_automation(crash_after_s: float) -> bool:
    """Create the automation that marks a flow run Crashed when no heartbeat came for ``crash_after_s``.

    Flow runs send a heartbeat every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (180 by default;
    ``vitrine worker`` sets 60). A SIGKILLed or powered-off worker leaves its run ``Running`` forever
    without this. Returns whether it was created (an existing one of the same name is kept).
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        return False
    except ValueError:
        pass
    Automation(
        name=ZOMBIE_AUTOMATION,
        description="Marks flow runs Crashed when their heartbeats stop (docs/operations.md, 'Resume').",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=crash_after_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {crash_after_s:g} s: the worker died")],
    ).create()
    return True


def deploy_folders(specs: list[FolderSchedule], *, work_pool: str = GPU_POOL, dispatch_pool: str = DISPATCH_POOL,
                   crash_after_s: float | None = 600) -> list[str]:
    """Register every folder's deployments with the Prefect server at ``PREFECT_API_URL``.

    Creates the work pools when missing (process pools) and, unless ``crash_after_s`` is `None`, the
    zombie-run automation. Re-running it updates the deployments in place (same names).

    Returns:
        `list[str]`: the deployment names, e.g. ``["catalog-batch/shop-a", "catalog-scatter/shop-a"]``.
    """
    ensure_process_pool(work_pool)
    if any(s.shard_size for s in specs):
        ensure_process_pool(dispatch_pool)
    names = []
    for spec in specs:
        # A sharded folder's batch deployment is unscheduled: its runs come from the scatter flow.
        batch_deployment(spec, work_pool=work_pool, scheduled=not spec.shard_size).apply()
        names.append(f"catalog-batch/{spec.name}")
        if spec.shard_size:
            scatter_deployment(spec, work_pool=dispatch_pool).apply()
            names.append(f"catalog-scatter/{spec.name}")
    if crash_after_s:
        ensure_zombie_automation(crash_after_s)
    return names


def serve_folders(specs: list[FolderSchedule], *, limit: int | None = 1) -> None:
    """Serve every folder's ``catalog-batch/<name>`` deployment from this process until interrupted.

    ``limit`` flow runs at once (default 1: one GPU). ``shard_size`` is ignored: one machine.
    """
    from prefect import serve

    sharded = [s.name for s in specs if s.shard_size]
    if sharded:
        logger.warning("serve runs every folder on this machine; shard_size is ignored for %s", sharded)
    serve(*[batch_deployment(s) for s in specs], limit=limit)

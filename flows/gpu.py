"""One generation at a time per GPU: a Prefect global concurrency limit around an engine's model calls.

A GPU worker (``vitrine worker --gpu N``) exports ``VITRINE_GPU_LIMIT`` with the name of the global
concurrency limit of its GPU (``vitrine-gpu-<host>-<N>``, limit 1) and ``CUDA_VISIBLE_DEVICES=N``. The
batch flow wraps its engine in `GpuGuardedEngine`: every model call (segmentation, controls,
generation, seam inpainting) holds the GPU's slot, while loading photos, hashing and writing images
run outside it, so two SKUs of a batch overlap their I/O but never their generation.

The limit lives on the Prefect server, so it also serialises flow runs that share a GPU (a worker
started with ``--limit 2``, or ``serve`` running two deployments at once), and it can be changed at
run time (``prefect gcl update vitrine-gpu-box1-0 --limit 2`` on a GPU with memory to spare). Slots are
leased: a process killed while holding one (SIGKILL, OOM killer) frees it when its lease expires
(``GPU_SLOT_LEASE_S`` plus the server's repossessor loop, ~15 s).

Without ``VITRINE_GPU_LIMIT`` (a laptop, the CLI's ``vitrine run``, the tests' embedded API) the
engine is used as it is, and ``VITRINE_GPU_GUARD`` (``auto``/``always``/``never``) decides for engines
that never touch a GPU: under ``auto`` the CPU-only ``classic`` engine skips the slot, since every
acquire + release is an API round trip. Both come in through `pipelines.settings.VitrineSettings.gpu`.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from pipelines.engines.bundle import Engine

# Environment variables naming the global concurrency limit of this process's GPU, this worker (shown in
# reports and artifacts), the seconds a model call waits for its GPU slot, and the guard mode.
from pipelines.settings import (
    GPU_GUARD_ENV,
    GPU_GUARD_MODES,
    GPU_LIMIT_ENV,
    GPU_SLOT_TIMEOUT_ENV,
    GPU_SLOT_TIMEOUT_S,
    WORKER_NAME_ENV,
    VitrineSettings,
)

__all__ = ["GPU_GUARD_ENV", "GPU_GUARD_MODES", "GPU_LIMIT_ENV", "GPU_SLOT_TIMEOUT_ENV", "GPU_SLOT_TIMEOUT_S",
           "WORKER_NAME_ENV", "GpuGuardedEngine", "gpu_limit_name", "guard_engine", "runner_info"]
#: Lease of a held slot, renewed while the call runs; Prefect's renewal API needs at least 60 s.
GPU_SLOT_LEASE_S = 60.0
#: Engine methods that run models (and so hold the GPU). ``describe``/``models`` are metadata; ``compose``
#: runs the background and seam stages (generation included) inside one call.
GUARDED_METHODS = frozenset({"find_subject", "controls", "background", "inpaint_seam", "compose"})
# Engines whose stages never touch a GPU (``Engine.uses_gpu`` false, e.g. ``classic``) skip the slot under
# ``auto``: each acquire + release is an API round trip, ~0.17 s measured on a 2-core box with the server
# beside it (bench/reload_cost.py).


def gpu_limit_name(device: str | int, host: str | None = None) -> str:
    """The global concurrency limit name of GPU ``device`` on ``host`` (default: this machine).

    Names are ``vitrine-gpu-<host>-<device>`` with the host lower-cased and anything outside
    ``[a-z0-9-]`` replaced by ``-``, e.g. ``vitrine-gpu-box1-0``.
    """
    host = host or socket.gethostname()
    slug = re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-") or "host"
    dev = re.sub(r"[^a-z0-9-]+", "-", str(device).lower()).strip("-")
    if not dev:
        raise ValueError(f"bad GPU device {device!r}: expected an index such as 0 or a UUID")
    return f"vitrine-gpu-{slug}-{dev}"


def runner_info(settings: VitrineSettings) -> dict[str, Any]:
    """Who is running this batch: host, process, worker name, visible GPUs and the GPU limit."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "worker": settings.gpu.worker_name,
        "cuda_visible_devices": settings.gpu.cuda_visible_devices,
        "gpu_limit": settings.gpu.limit,
    }


class GpuGuardedEngine:
    """An engine whose model calls each hold one slot of a Prefect global concurrency limit.

    Args:
        engine (`Engine`): the engine to wrap; every attribute other than the model calls in
            `GUARDED_METHODS` is passed through unchanged (so ``describe()`` and the content hash of
            a SKU do not change).
        limit_name (`str`): the global concurrency limit, e.g. ``vitrine-gpu-box1-0``.
        timeout_s (`float`, *optional*): seconds to wait for a slot (`GpuSettings.slot_timeout_s`,
            ``$VITRINE_GPU_SLOT_TIMEOUT_S``); defaults to 3600. Past it the call raises `TimeoutError`.
    """

    def __init__(self, engine: Any, limit_name: str, timeout_s: float | None = None):
        self._engine = engine
        self.limit_name = limit_name
        self.timeout_s = GPU_SLOT_TIMEOUT_S if timeout_s is None else float(timeout_s)

    @property
    def wrapped(self) -> Any:
        return self._engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name not in GUARDED_METHODS or not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            from prefect.concurrency.sync import concurrency

            with concurrency(self.limit_name, occupy=1, timeout_seconds=self.timeout_s,
                             lease_duration=GPU_SLOT_LEASE_S, strict=False):
                return attr(*args, **kwargs)

        guarded.__name__ = name
        return guarded


def guard_engine(engine: Any, settings: VitrineSettings) -> Any:
    """``engine`` wrapped in `GpuGuardedEngine` when ``settings.gpu.limit`` (``$VITRINE_GPU_LIMIT``) names a
    limit, else as is.

    ``settings.gpu.guard`` (``$VITRINE_GPU_GUARD``) chooses: ``auto`` (default) guards every engine except
    the CPU-only ones (``classic``: no stage uses a GPU); ``always`` guards every engine; ``never`` none.
    """
    name, mode = settings.gpu.limit, settings.gpu.guard
    if not name or mode == "never" or (mode == "auto" and isinstance(engine, Engine) and not engine.uses_gpu):
        return engine
    return GpuGuardedEngine(engine, name, settings.gpu.slot_timeout_s)

"""Operations commands: ``vitrine deploy``, ``vitrine serve``, ``vitrine worker`` (docs/operations.md).

``deploy`` and ``worker`` talk to the Prefect server named by ``PREFECT_API_URL``; ``serve`` too (it serves
deployments to it). Exit codes are `flows.cli.common`'s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from flows.cli.common import EXIT_FAILED, EXIT_OK, error
from flows.gpu import GPU_LIMIT_ENV, WORKER_NAME_ENV, gpu_limit_name
from pipelines.errors import InputError
from pipelines.settings import process_environ, set_process_env


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


_NO_API = ("no Prefect server: set PREFECT_API_URL (e.g. `prefect config set "
           "PREFECT_API_URL=http://prefect-host:4200/api`); see docs/operations.md")


# -- folders from --config or flags ---------------------------------------------------------------------
def _add_folder_args(p: argparse.ArgumentParser) -> None:
    from pipelines.engines.registry import engine_names

    g = p.add_argument_group("folders (either --config, or one folder by flags)")
    g.add_argument("--config", metavar="FILE", help="schedules file: defaults + folders (docs/operations.md)")
    g.add_argument("--name", help="deployment name of the one folder, e.g. shop-a")
    g.add_argument("--products", metavar="DIR", help="products folder (the same path on every worker)")
    g.add_argument("--catalog", metavar="DIR", default="catalog", help="catalog root (default: ./catalog)")
    g.add_argument("--cron", help='cron schedule, e.g. "0 2 * * *" (default: none, runs on demand)')
    g.add_argument("--timezone", default="UTC", help="IANA time zone of --cron (default: UTC)")
    g.add_argument("--engine", default="auto", choices=engine_names(), help="default: auto")
    g.add_argument("--model-root", metavar="DIR", default=None)
    g.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="split each run into shards of <= N SKUs over the pool's workers")
    g.add_argument("--paused", action="store_true", help="create the schedule paused")


def _folders(args: argparse.Namespace):
    from flows.deploy import FolderSchedule, load_schedules

    if args.config:
        if args.name or args.products:
            raise ValueError("give either --config or --name/--products, not both")
        return load_schedules(args.config)
    if not args.name or not args.products:
        raise ValueError("give --config FILE, or --name and --products for one folder")
    return [FolderSchedule(name=args.name, products_dir=args.products, catalog_dir=args.catalog, cron=args.cron,
                           timezone=args.timezone, engine=args.engine, model_root=args.model_root,
                           shard_size=args.shard_size, paused=args.paused)]


def _load_folders(args: argparse.Namespace):
    from pydantic import ValidationError

    try:
        return _folders(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"--{'-'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


# -- deploy ---------------------------------------------------------------------------------------------
def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        specs = _load_folders(args)
    except (ValueError, InputError) as exc:
        return error(str(exc))
    if not _api_url():
        return error(_NO_API)
    from flows.deploy import deploy_folders

    names = deploy_folders(specs, work_pool=args.pool, dispatch_pool=args.dispatch_pool,
                           crash_after_s=args.crash_after or None)
    by_name = {s.name: s for s in specs}
    for name in names:
        spec = by_name[name.split("/", 1)[1]]
        scheduled = spec.cron and (name.startswith("catalog-scatter/") or not spec.shard_size)
        pool = args.dispatch_pool if name.startswith("catalog-scatter/") else args.pool
        when = f"cron {spec.cron!r} {spec.timezone}" + (" (paused)" if spec.paused else "") if scheduled else "on demand"
        print(f"{name}\tpool={pool}\t{when}")
    print(f"run one now: prefect deployment run '{names[-1]}'", file=sys.stderr)
    return EXIT_OK


# -- serve ----------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    try:
        specs = _load_folders(args)
    except (ValueError, InputError) as exc:
        return error(str(exc))
    set_process_env("PREFECT_LOGGING_LEVEL", args.log_level)  # before Prefect reads its settings
    if not _api_url():
        return error(_NO_API)
    from flows.deploy import serve_folders

    serve_folders(specs, limit=args.limit)
    return EXIT_OK


# -- worker ---------------------------------------------------------------------------------------------
def _gpu_list(values: list[str]) -> list[str]:
    gpus: list[str] = []
    for v in values:
        if v == "all":
            smi = shutil.which("nvidia-smi")
            if smi is None:
                raise ValueError("--gpu all needs nvidia-smi on PATH; list the GPUs instead (--gpu 0,1)")
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
            gpus += [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
        else:
            gpus += [g.strip() for g in v.split(",") if g.strip()]
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"a GPU is listed twice: {gpus}")
    return gpus


def ensure_gpu_limit(name: str, slots: int) -> bool:
    """Create the global concurrency limit ``name`` with ``slots`` unless it exists (an existing one keeps
    the value an operator may have set). Returns whether it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        except ObjectAlreadyExists:  # another worker of this GPU won the race
            return False
        return True


def worker_commands(args: argparse.Namespace) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of each ``prefect worker start`` process: one per GPU, or one without GPU."""
    host = socket.gethostname()
    gpus = [] if args.no_gpu else _gpu_list(args.gpu or [])
    if not gpus and not args.no_gpu:
        raise ValueError("name the GPU(s) this worker drives (--gpu 0, --gpu 0,1, --gpu all) or pass --no-gpu")
    if args.name and len(gpus) > 1:
        raise ValueError("--name names one worker; with several GPUs the names are <name>-gpu<N>")
    slots = [(g, gpu_limit_name(g, host)) for g in gpus] or [(None, None)]
    out = []
    for gpu, limit in slots:
        if gpu is None:
            name = args.name or f"{host}-cpu"
        else:
            name = (args.name if len(gpus) == 1 and args.name else
                    f"{args.name or host}-gpu{gpu}")
        env = process_environ()
        env["PREFECT_LOGGING_LEVEL"] = args.log_level
        env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")  # zombie detection (flows/deploy.py)
        env[WORKER_NAME_ENV] = name
        if gpu is None:
            env.pop(GPU_LIMIT_ENV, None)
            if args.no_gpu:
                env["CUDA_VISIBLE_DEVICES"] = ""
        else:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            env[GPU_LIMIT_ENV] = limit
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", args.pool, "--type", "process",
                "--limit", str(args.limit), "--name", name]
        out.append((argv, env))
    return out


def cmd_worker(args: argparse.Namespace) -> int:
    if not _api_url():
        return error(_NO_API)
    try:
        commands = worker_commands(args)
    except (ValueError, subprocess.SubprocessError, OSError) as exc:
        return error(str(exc))
    from flows.deploy import ensure_process_pool

    ensure_process_pool(args.pool)
    for _argv, env in commands:
        limit = env.get(GPU_LIMIT_ENV)
        if limit:
            created = ensure_gpu_limit(limit, args.gpu_slots)
            print(f"GPU {env['CUDA_VISIBLE_DEVICES']}: concurrency limit {limit}"
                  f"{' created' if created else ' (exists)'}", file=sys.stderr)
    for argv, env in commands:
        print(f"worker {env[WORKER_NAME_ENV]}: {' '.join(argv[1:])}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    if len(commands) == 1:  # become the worker: same PID, signals go straight to it
        argv, env = commands[0]
        os.execve(argv[0], argv, env)
    return _supervise(commands, grace_s=args.grace)


def _supervise(commands: list[tuple[list[str], dict[str, str]]], grace_s: float) -> int:
    """Run one worker process per GPU; forward SIGTERM/SIGINT to each by PID; bounded shutdown."""
    procs = [subprocess.Popen(argv, env=env) for argv, env in commands]
    stopping = {"at": None}

    def forward(signum, _frame):
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(p.poll() is None for p in procs):
        if stopping["at"] is not None and time.monotonic() - stopping["at"] > grace_s:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.5)
    codes = [p.returncode for p in procs]
    return EXIT_OK if all(c in (0, -signal.SIGTERM, 130) for c in codes) else EXIT_FAILED


# -- registration ---------------------------------------------------------------------------------------
def register(sub) -> None:
    """Add ``deploy``, ``serve`` and ``worker`` to the ``vitrine`` command line."""
    from flows.deploy import DISPATCH_POOL, GPU_POOL

    d = sub.add_parser("deploy", help="register scheduled deployments of products folders with the Prefect server")
    _add_folder_args(d)
    d.add_argument("--pool", default=GPU_POOL, help=f"GPU work pool of the batch runs (default: {GPU_POOL})")
    d.add_argument("--dispatch-pool", default=DISPATCH_POOL,
                   help=f"work pool of the scatter runs of sharded folders (default: {DISPATCH_POOL})")
    d.add_argument("--crash-after", type=float, default=600, metavar="S",
                   help="mark runs Crashed after S s without heartbeat (default 600; 0: no automation)")
    d.set_defaults(func=cmd_deploy)

    s = sub.add_parser("serve", help="serve the folders' scheduled batch deployments from this process (one machine)")
    _add_folder_args(s)
    s.add_argument("--limit", type=int, default=1, help="flow runs at once (default 1: one GPU)")
    s.add_argument("--log-level", default="INFO", help="Prefect log level on this terminal (default INFO)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="start Prefect process workers: one per GPU, one generation at a time each")
    w.add_argument("--pool", default=GPU_POOL, help=f"work pool (default: {GPU_POOL})")
    w.add_argument("--gpu", action="append", metavar="N", help="GPU index (repeatable, or 0,1 or all)")
    w.add_argument("--no-gpu", action="store_true", help="a CPU worker (the dispatch pool, or classic on CPU)")
    w.add_argument("--name", default=None, help="worker name (default: <host>-gpu<N> or <host>-cpu)")
    w.add_argument("--limit", type=int, default=1,
                   help="flow runs at once per worker (default 1; the models of a run load once per run)")
    w.add_argument("--gpu-slots", type=int, default=1,
                   help="generations at once per GPU, when its concurrency limit is created (default 1)")
    w.add_argument("--log-level", default="INFO", help="worker log level (default INFO)")
    w.add_argument("--grace", type=float, default=60, help="seconds to wait for workers to stop (default 60)")
    w.set_defaults(func=cmd_worker)

"""Prefect processes that do not outlive their parent, and flow runs that outlive a dead worker's pipe.

Why: killing ``vitrine run`` (SIGTERM from ``timeout``/systemd/cron, SIGKILL from the OOM
killer) left Prefect's embedded API server (uvicorn, ~195 MB) running forever; killing only a worker made the
flow-run child crash later, when a log line hit the broken stdout pipe, with no report written.

- `ephemeral_server_dies_with_us` starts the embedded API server itself, from the main thread, under a tiny
  exec wrapper that sets ``PR_SET_PDEATHSIG`` (Linux): the kernel sends the server SIGTERM the moment the
  CLI process dies, however it dies. Prefect's own clients then find that server running and reuse it.
- `survive_dead_pipes` watches the process's stdout/stderr when they are pipes: once the reading end is
  gone (the worker that spawned this flow run was killed), the descriptor is pointed at ``/dev/null`` so
  that log lines, rich consoles and prints carry on silently instead of raising ``BrokenPipeError``.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import sys
import threading

from pipelines.settings import PREFECT_ENV_DEFAULTS, process_environ

logger = logging.getLogger(__name__)

#: Runs ``argv[2:]`` with PR_SET_PDEATHSIG=SIGTERM; exits at once if the parent (``argv[1]``) is gone already.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def pdeathsig_command(argv: list[str], parent_pid: int | None = None) -> list[str]:
    """``argv`` wrapped so that the process gets SIGTERM when ``parent_pid`` (default: this process) dies.

    Linux only (``prctl``); elsewhere ``argv`` is returned unchanged.
    """
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _PDEATHSIG_EXEC, str(parent_pid or os.getpid()), *argv]


def ephemeral_server_dies_with_us(timeout: int | None = None) -> None:
    """Start Prefect's embedded API server (when no API is configured) so that it dies with this process.

    Call from the main thread before running a flow. With ``PREFECT_API_URL`` set (a real server) this does
    nothing. The server is Prefect's own `SubprocessASGIServer` (the instance its clients look up), started
    with the same command and environment Prefect uses, under `pdeathsig_command`.
    """
    from flows.local_batch import prefect_api_configured

    if prefect_api_configured():
        return
    import subprocess

    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    server = SubprocessASGIServer()  # the port-less singleton Prefect's clients use
    if server.running:
        return

    def run_uvicorn() -> subprocess.Popen:
        server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(server.port),
                "--log-level", "error", "--lifespan", "on"]
        # The CLI's process environment (native log levels, Prefect defaults: pipelines.settings), the
        # embedded-server defaults where this process was started without them, then Prefect's own settings.
        return subprocess.Popen(pdeathsig_command(argv), env={
            **PREFECT_ENV_DEFAULTS, **process_environ(), **server_env,
            **get_current_settings().to_environment_variables(exclude_unset=True)})

    server._run_uvicorn_command = run_uvicorn  # this instance only; Prefect's start() logic is unchanged
    server.start(timeout=timeout)


_guard_lock = threading.Lock()
_guard_started = False


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _reader_gone(fd: int) -> bool:
    """True when the reading end of pipe ``fd`` is closed (poll reports an error/hang-up on the write end)."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _fd, ev in events)


def detach_dead_pipes(fds: tuple[int, ...] = (1, 2)) -> list[int]:
    """Point every fd of ``fds`` whose pipe reader is gone at ``/dev/null``; returns the fds detached."""
    detached = []
    for fd in fds:
        if _is_pipe(fd) and _reader_gone(fd):
            _point_at_devnull(fd)
            detached.append(fd)
    return detached


def _point_at_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _quiet_rich_consoles() -> int:
    """Make every rich console held by a logging handler survive a broken pipe; returns how many were patched.

    rich's `Console.on_broken_pipe` raises ``SystemExit(1)``, which logging does not catch: one log line
    after the reader died ended the flow run (this is how a killed worker took its flow run down). The
    replacement points the console's own descriptor at ``/dev/null`` and carries on.
    """
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - rich comes with Prefect
        return 0
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    patched = 0
    for lg in loggers:
        for handler in lg.handlers:
            console = getattr(handler, "console", None)
            if not isinstance(console, Console) or getattr(console, "_vitrine_pipe_safe", False):
                continue

            def on_broken_pipe(console=console) -> None:
                console.quiet = True  # drop what it still had to write
                try:
                    _point_at_devnull(console.file.fileno())
                except (OSError, ValueError, AttributeError):
                    pass

            console.on_broken_pipe = on_broken_pipe
            console._vitrine_pipe_safe = True
            patched += 1
    return patched


def survive_dead_pipes(interval_s: float = 0.5) -> None:
    """Make this process survive the death of whoever reads its stdout/stderr (a killed worker).

    Patches the rich consoles of logging handlers (`_quiet_rich_consoles`: no ``SystemExit`` on a broken
    pipe) and starts, once per process and only when stdout or stderr is a pipe, a daemon thread that runs
    `detach_dead_pipes` every ``interval_s`` seconds, so that plain writes stop failing too. Idempotent.
    """
    global _guard_started
    _quiet_rich_consoles()
    with _guard_lock:
        if _guard_started or not (_is_pipe(1) or _is_pipe(2)):
            return
        _guard_started = True

    def watch() -> None:
        import time

        while True:
            try:
                for fd in detach_dead_pipes():
                    logger.info("fd %d: its reader is gone (a killed worker?); output now goes to /dev/null", fd)
            except Exception:  # the guard must never be what breaks a run
                pass
            time.sleep(interval_s)

    threading.Thread(target=watch, name="vitrine-pipe-guard", daemon=True).start()

"""Silence native libraries' log lines (mediapipe/TFLite ``W0000 ...``, ``XNNPACK delegate``, absl) at fd level.

Those lines are written by C++ code straight to file descriptor 2, past Python's ``sys.stderr``, so no
logging setting reaches them: left alone, they mix into the CLI's progress bar and into notebook outputs.

Two tools:

- `quiet_native_stderr` (a context manager, used by the library around native model construction and
  calls): while any thread is inside it, fd 2 points at ``/dev/null``. Re-entrant and thread-safe (a
  counter: the first entry redirects, the last exit restores). In a notebook Python's ``sys.stderr`` is
  the kernel's stream, not fd 2, so Python messages still show; in a plain script a Python message
  written to fd-2-backed ``sys.stderr`` by another thread during a native call is lost with the noise.
- `silenced_process_stderr` (used by the CLI around a whole command): ``sys.stderr`` is moved to a
  duplicate of fd 2, so every Python message (errors, warnings, the progress bar) still reaches the
  terminal, then fd 2 itself goes to ``/dev/null`` for the command's duration. Inside it
  `quiet_native_stderr` does nothing.

``VITRINE_NATIVE_LOGS=1`` (`VitrineSettings.native_logs`, which entry points pass to `keep_native_logs`) or
the CLI's ``-v`` keeps native logs.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_process_silenced = 0
_keep = False


def keep_native_logs(keep: bool) -> None:
    """Keep (or silence again) native libraries' stderr lines in this process: entry points pass
    `VitrineSettings.native_logs` (``$VITRINE_NATIVE_LOGS``)."""
    global _keep
    _keep = bool(keep)


def native_logs_wanted() -> bool:
    """True when this process keeps native libraries' stderr lines (`keep_native_logs`)."""
    return _keep


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except Exception:  # a closed or odd stream: nothing to flush
        pass


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Point fd 2 at ``/dev/null`` while native code runs inside this block (see the module docstring)."""
    global _depth, _saved_fd
    if native_logs_wanted() or _process_silenced:
        yield
        return
    with _lock:
        if _depth == 0:
            try:
                _flush_python_stderr()
                saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, 2)
                finally:
                    os.close(devnull)
                _saved_fd = saved
            except OSError:  # no fd 2 at all (a daemon): nothing to silence
                _saved_fd = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


@contextmanager
def silenced_process_stderr(enabled: bool = True) -> Iterator[None]:
    """For a whole command: Python's ``sys.stderr`` keeps the terminal, fd 2 (native code) goes to /dev/null.

    When ``sys.stderr`` is not backed by fd 2 (pytest's capture, a notebook), only fd 2 is redirected.
    The duplicate descriptor behind the new ``sys.stderr`` is kept open after the block (handlers created
    inside may still hold the stream); ``sys.stderr`` itself and fd 2 are restored.
    """
    global _process_silenced
    if not enabled or native_logs_wanted():
        yield
        return
    original = sys.stderr
    try:
        uses_fd2 = original is not None and original.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        uses_fd2 = False
    _flush_python_stderr()
    try:
        keep = os.dup(2)
    except OSError:
        yield
        return
    if uses_fd2:
        stream = io.TextIOWrapper(io.FileIO(os.dup(keep), "w", closefd=True),
                                  encoding=getattr(original, "encoding", None) or "utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)
        sys.stderr = stream
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    _process_silenced += 1
    try:
        yield
    finally:
        _process_silenced -= 1
        _flush_python_stderr()
        os.dup2(keep, 2)
        os.close(keep)
        if uses_fd2:
            sys.stderr = original

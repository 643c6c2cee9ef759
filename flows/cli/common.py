"""What every ``vitrine`` command shares: exit codes, the one-line error, safe printing of names, the review
server's defaults, and the exception-to-exit-code mapping around each command (docs/cli.md).

Exit codes: 0 success; 1 a batch or check finished with at least one failure (a SKU, an edit, a catalog entry,
a worker); 2 bad usage or input (one ``vitrine: error:`` line on stderr, no traceback); 130 interrupted
(Ctrl-C); 141 stdout was closed by its reader (``vitrine verify | head``).

Only the standard library and `pipelines.errors` are imported here: ``vitrine --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from pipelines.errors import InputError, describe_os_error

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell tool stopped by a closed pipe

#: The review server's defaults (pipelines.review_ui.server.DEFAULT_HOST/PORT, checked equal by a test), repeated
#: here so that building the parser does not import the server and its image libraries.
REVIEW_HOST, REVIEW_PORT = "127.0.0.1", 8765


def error(msg: str) -> int:
    """Print ``vitrine: error: MSG`` on stderr (one line); return `EXIT_USAGE`, for ``return error(...)``."""
    print(f"vitrine: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def catalog_problem(catalog) -> str | None:
    """Why ``catalog`` (a `Path`) cannot be reviewed or edited: not a directory, or no entries; `None` when it can."""
    from pipelines.catalog.review import catalog_entries

    if not catalog.is_dir():
        return f"{catalog}: not a directory"
    if not catalog_entries(catalog):
        return f"{catalog}: no catalog entries found"
    return None


def printable(text: object) -> str:
    """``text`` (as `str`) with control characters escaped (``\\t``, ``\\x1b``): a name cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def model_root_of(settings) -> str | None:
    """The settings' model root (`pipelines.settings.VitrineSettings`) as the string the library takes
    (`None`: no model root)."""
    return str(settings.model_root) if settings.model_root is not None else None


def not_a_sku_failure(record: logging.LogRecord) -> bool:
    """Logging filter: drop the records that report one SKU's failure (the CLI prints those once itself)."""
    return not getattr(record, "vitrine_sku_failure", False)


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``command(args)``'s exit code, with the errors every command shares turned into one line and a code:

    an `InputError` or an `OSError` (a full disk, an unreadable folder) -> its message, `EXIT_USAGE`;
    a closed stdout (`BrokenPipeError`) -> quietly `EXIT_CLOSED_PIPE`; Ctrl-C -> `EXIT_INTERRUPTED`.
    """
    try:
        code = command(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # `vitrine verify | head`: the reader left; stop quietly
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except InputError as exc:
        return error(str(exc))
    except OSError as exc:
        return error(describe_os_error(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null: the interpreter's final flush must not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass

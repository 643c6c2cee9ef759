"""Errors raised by Vitrine. Every user-facing error names the file (and key) at fault."""

from __future__ import annotations

from pathlib import Path


class VitrineError(Exception):
    """Base class for all errors Vitrine raises on purpose."""


class InputError(VitrineError, ValueError):
    """Bad input: a file that cannot be read, a value that is out of range, an unknown key.

    Args:
        path (`str | Path`, *optional*): the file at fault.
        message (`str`): what is wrong with it.
        key (`str`, *optional*): the key inside the file (e.g. ``segmentation.box_threshold``).
    """

    def __init__(self, message: str, path: str | Path | None = None, key: str | None = None):
        self.path = str(path) if path is not None else None
        self.key = key
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path
            if key:
                where += f" [{key}]"
            where += ": "
        elif key:
            where = f"[{key}]: "
        super().__init__(where + message)


class MissingBackendError(VitrineError, ImportError):
    """An optional backend is not installed. The message says how to install it."""

    def __init__(self, backend: str, install_hint: str):
        self.backend = backend
        self.install_hint = install_hint
        super().__init__(f"The {backend!r} backend is not available: {install_hint}")


class NothingFoundError(VitrineError):
    """A segmentation prompt matched nothing in the image."""


#: ``extra=`` of a log record that reports one SKU's failure (a bad product folder, a failed render). The CLI
#: prints each failure itself, once, and its terminal handler drops records carrying this mark unless ``-v``.
SKU_FAILURE_LOG = {"vitrine_sku_failure": True}


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: the file and what happened, a full disk said in plain words.

    ``OSError(ENOSPC, ..., "/cat/.staging/x/main.png")`` -> ``/cat/.staging/x/main.png: no space left on
    device (free some space and re-run: finished SKUs are kept and skipped)``.
    """
    import errno

    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device (free some space and re-run: finished SKUs are kept and skipped)"
    elif exc.errno == errno.ENAMETOOLONG:
        what = "file name too long"
    return f"{exc.filename}: {what}" if exc.filename else what

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

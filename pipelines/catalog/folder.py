"""The catalog root before a batch writes to it: created when missing, checked writable."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path


def prepare_catalog_dir(catalog: str | Path) -> str | None:
    """Make ``catalog`` ready to hold a catalog; return why it cannot, or `None` when it can.

    A local folder is created when missing, but only inside an existing parent (a typo must not create a tree
    of folders somewhere unexpected), then checked writable by creating and removing a temporary file.
    An object-store URL (``scheme://...``, `pipelines.catalog.publish`) is left alone: it is checked when written.

    Returns:
        `str | None`: the reason, phrased to follow ``"<catalog>: "``: ``exists and is not a folder``,
        ``the parent folder P does not exist (create it first)``, ``cannot create the folder: ...``,
        ``no space left on device`` or ``not writable: ...``.
    """
    if "://" in str(catalog):
        return None
    catalog = Path(catalog)
    if catalog.exists() and not catalog.is_dir():
        return "exists and is not a folder"
    if not catalog.exists():
        parent = catalog.absolute().parent
        if not parent.is_dir():
            return f"the parent folder {parent} does not exist (create it first)"
        try:
            catalog.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            return f"cannot create the folder: {exc.strerror or exc}"
    try:
        with tempfile.TemporaryFile(dir=catalog, prefix=".vitrine-write-check."):
            pass
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return "no space left on device"
        return f"not writable: {exc.strerror or exc}"
    return None

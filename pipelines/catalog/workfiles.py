"""The one writer of a catalog entry's files: work files (``work/``), outputs, exports.

`EntryWriter` writes into a staging folder (a render's, or an edit's copy of the entry) and keeps the
``work[]`` records of what it wrote. An output goes through `EntryWriter.output`, which checks its pixel
guarantee (`pipelines.catalog.guarantee`) before a byte is written, and `EntryWriter.guarantee_masks` writes
the masks that let ``vitrine verify`` re-check it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.catalog.guarantee import Guarantee, check_guarantee
from pipelines.catalog.manifest import input_record, work_record
from pipelines.imageio import LoadedImage, atomic_write_json, save_image, save_mask, sha256_file

WORK_DIR = "work"


class EntryWriter:
    """Writes the files of one catalog entry into ``folder`` and records its work files.

    Args:
        folder (`Path`): the staging folder of the entry.
        png_compress_level (`int`, defaults to 1): zlib level of PNG images (masks use their own).
        work (`list[dict]`, *optional*): the ``work[]`` records written so far (an edit continues its entry's).
    """

    def __init__(self, folder: str | Path, png_compress_level: int = 1, work: list[dict[str, Any]] | None = None):
        self.folder = Path(folder)
        self.png_compress_level = png_compress_level
        self.work: list[dict[str, Any]] = work if work is not None else []

    def _record(self, rel: str, kind: str, sha: str) -> str:
        self.work.append(work_record(rel, kind, sha))
        return rel

    def image(self, name: str, kind: str, array: np.ndarray) -> str:
        """``work/<name>`` as a PNG image; returns its path relative to the entry."""
        rel = f"{WORK_DIR}/{name}"
        return self._record(rel, kind, save_image(self.folder / rel, array, compress_level=self.png_compress_level))

    def mask(self, name: str, kind: str, array: np.ndarray) -> str:
        """``work/<name>`` as a PNG mask; returns its path relative to the entry."""
        rel = f"{WORK_DIR}/{name}"
        return self._record(rel, kind, save_mask(self.folder / rel, array))

    def json(self, name: str, kind: str, data: Any) -> str:
        """``work/<name>`` as JSON; returns its path relative to the entry."""
        rel = f"{WORK_DIR}/{name}"
        atomic_write_json(self.folder / rel, data)
        return self._record(rel, kind, sha256_file(self.folder / rel))

    def input(self, path: Path, img: LoadedImage, stem: str, role: str) -> dict[str, Any]:
        """The normalised copy of an input photo (``work/input-<stem>.png``) and its ``inputs[]`` record."""
        return input_record(path, img, self.image(f"input-{stem}.png", "input-normalized", img.rgb), role)

    def subject_masks(self, stem: str, alpha: np.ndarray) -> tuple[str, str]:
        """A subject's alpha and its hard mask (``work/alpha-<stem>.png``, ``work/mask-<stem>.png``)."""
        return (self.mask(f"alpha-{stem}.png", "alpha", alpha),
                self.mask(f"mask-{stem}.png", "mask", np.where(alpha >= 128, 255, 0).astype(np.uint8)))

    def output(self, file: str, final: np.ndarray, guarantee: Guarantee | None, *,
               where: object) -> tuple[str, dict[str, Any] | None]:
        """Check ``final``'s guarantee, then write it as the PNG output ``file``.

        Returns:
            `tuple`: (its sha256, the `check_preserved` figures or `None` without a guarantee).

        Raises:
            `VitrineError`: the guarantee does not hold; nothing is written.
        """
        preserved = check_guarantee(final, guarantee, where=where, file=file) if guarantee is not None else None
        return self.write_png(file, final), preserved

    def write_png(self, file: str, final: np.ndarray) -> str:
        """Write an output PNG (no check: `output` checks first); returns its sha256."""
        return save_image(self.folder / file, final, compress_level=self.png_compress_level)

    def export(self, file: str, final: np.ndarray, quality: int) -> str:
        """Write a lossy export (JPEG or WebP, by the file's suffix); returns its sha256."""
        return save_image(self.folder / file, final, quality=quality)

    def guarantee_masks(self, stem: str, guarantee: Guarantee) -> dict[str, str]:
        """The guarantee's masks as work files: ``product_mask``, ``preserve_mask``, ``seam_band`` (their keys in
        the output's record)."""
        return {
            "product_mask": self.mask(f"{stem}.product-mask.png", "product-mask", guarantee.alpha),
            "preserve_mask": self.mask(f"{stem}.preserve-mask.png", "preserve-mask", guarantee.keep),
            "seam_band": self.mask(f"{stem}.seam-band.png", "seam-band", guarantee.band),
        }

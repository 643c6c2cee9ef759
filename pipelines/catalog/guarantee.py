"""The pixel guarantee of a catalog output, checked before the output is written.

Every output that keeps pixels of a photo records what it keeps, and `check_guarantee` is the one check of
it, whatever made the output:

- ``placement`` (a product output): inside the preserve mask the output equals the product photo as placed,
  bit for bit; the seam step changed nothing outside the seam band;
- ``garment-transform`` (a try-on): inside the preserve mask the output equals the garment photo as placed
  by its recorded transform (the try-on pipeline also keeps everything outside its region);
- ``garment-rule`` (an edit that keeps the garment): inside the preserve mask the new version equals its
  parent; the seam repair changed nothing outside the band.

`pipelines.catalog.verify` re-checks the same promise later, from the files alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.compositing.composite import check_preserved, count_changed
from pipelines.errors import VitrineError

RULES = ("placement", "garment-transform", "garment-rule")

#: The refusal messages of each rule: (pixels changed inside the preserve mask, pixels changed outside the band).
_MESSAGES = {
    "placement": ("{where}: product pixels changed in {file} ({preserved}); refusing to write it",
                  "{where}: seam inpainting touched {n} pixels outside the band"),
    "garment-transform": ("{where}: garment pixels of {file} differ from the garment as placed ({preserved}); "
                          "refusing to write it",
                          "{where}: the seam repair of {file} touched {n} pixels outside the band"),
    "garment-rule": ("{where}: garment pixels changed inside the preserve mask; refusing to write",
                     "{where}: the seam repair touched {n} pixels outside the band"),
}


@dataclass
class Guarantee:
    """What an output promises about its pixels (all arrays at the output's size).

    Attributes:
        rule (`str`): one of `RULES`.
        reference (`np.ndarray`): HxWx3 uint8, the pixels the output must equal inside ``keep``.
        keep (`np.ndarray`): HxW, the preserve mask (non-zero: kept).
        alpha (`np.ndarray`): HxW uint8, the kept subject's alpha (recorded as the output's product mask).
        band (`np.ndarray`): HxW uint8, the seam band (the only pixels a seam step may change).
        composite (`np.ndarray`, *optional*): HxWx3 uint8, the output before its seam step; `None` when no
            seam step of the catalog ran (a try-on checks its own region).
    """

    rule: str
    reference: np.ndarray
    keep: np.ndarray
    alpha: np.ndarray
    band: np.ndarray
    composite: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown guarantee rule {self.rule!r}; one of {', '.join(RULES)}")


def check_guarantee(final: np.ndarray, guarantee: Guarantee, *, where: object, file: str) -> dict:
    """Check ``final`` against its guarantee; returns the `check_preserved` figures.

    Args:
        final (`np.ndarray`): HxWx3 uint8, the output about to be written.
        guarantee (`Guarantee`): what it promises.
        where (`object`): what the refusal names first (the photo, or the edited output).
        file (`str`): the output's file name.

    Raises:
        `VitrineError`: a kept pixel differs, or the seam step touched a pixel outside the band (nothing
        has been written).
    """
    changed_msg, outside_msg = _MESSAGES[guarantee.rule]
    preserved = check_preserved(final, guarantee.reference, guarantee.keep)
    if preserved["identical_fraction"] != 1.0:
        raise VitrineError(changed_msg.format(where=where, file=file, preserved=preserved))
    if guarantee.composite is not None:
        n = count_changed(final, guarantee.composite, guarantee.band == 0)
        if n:
            raise VitrineError(outside_msg.format(where=where, file=file, n=n))
    return preserved

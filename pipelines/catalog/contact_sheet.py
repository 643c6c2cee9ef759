"""Contact sheets: a grid of labelled thumbnails in one PNG.

`contact_sheet` lays out any grid (rows of cells, optional row and column labels): the variation-grid
notebook uses it for seeds x prompts x profiles. `catalog_contact_sheets` makes a batch's sheets, one row
per SKU with its outputs and their review status; `attach_contact_sheets` writes them next to a batch
report (``CATALOG/_reports/<report>.contact-sheet[-N].png``) and lists them in the report's
``contact_sheets`` field, or lists an earlier batch's sheets when nothing they show changed
(`contact_sheet_key`, `reuse_contact_sheets`: a fully skipped re-run draws nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.errors import InputError
from pipelines.imageio import atomic_write_json, save_image
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.catalog.report import REPORTS_DIR
from pipelines.product import validate_sku
from pipelines.quality.flags import output_flags
from pipelines.catalog.review import attention_first, is_reviewable, sku_review_status

logger = logging.getLogger(__name__)

#: Colours of the review-status stripe under each cell (RGB).
STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "pending": (160, 160, 160),
    "approved": (46, 160, 67),
    "rejected": (200, 40, 40),
    "edit-requested": (230, 150, 20),
    "needs-attention": (150, 40, 200),
}
#: Output kinds shown on a catalog contact sheet, in this order.
SHEET_KINDS = ("main", "alternate", "lifestyle", "edit", "tryon")


@dataclass
class SheetCell:
    """One cell of a contact sheet.

    Attributes:
        image (`np.ndarray | None`): HxWx3 uint8 RGB, any size (fitted into the cell); `None` for a blank.
        label (`str`, *optional*): first caption line.
        sublabel (`str`, *optional*): second caption line, smaller.
        status (`str`, *optional*): a review status; draws a coloured stripe (see `STATUS_COLOURS`).
    """

    image: np.ndarray | None
    label: str = ""
    sublabel: str = ""
    status: str | None = None


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    text = " ".join(str(text).split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _paste_fitted(canvas: Image.Image, image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    im = Image.fromarray(np.ascontiguousarray(image))
    im.thumbnail((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
    canvas.paste(im, (x0 + (x1 - x0 - im.width) // 2, y0 + (y1 - y0 - im.height) // 2))


def contact_sheet(
    rows: Sequence[Sequence[SheetCell]],
    *,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_size: int = 256,
    padding: int = 8,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Lay out labelled thumbnails in a grid.

    Args:
        rows (`Sequence[Sequence[SheetCell]]`): the grid, row by row; rows may differ in length.
        row_labels (`Sequence[str]`, *optional*): one label per row, drawn in a first column; ``\\n``
            separates lines.
        column_labels (`Sequence[str]`, *optional*): drawn above the columns.
        title (`str`, *optional*): drawn above everything.
        cell_size (`int`, *optional*, defaults to 256): side of each thumbnail's square box, pixels (>= 32).
        padding (`int`, *optional*, defaults to 8): gap between cells, pixels.
        background (`tuple[int, int, int]`, *optional*, defaults to white): sheet colour.

    Returns:
        `np.ndarray`: HxWx3 uint8 RGB sheet.

    Raises:
        `ValueError`: no rows, ``cell_size`` < 32, or label counts that do not match the grid.
    """
    # 1. Check inputs.
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    if cell_size < 32:
        raise ValueError(f"cell_size must be at least 32, got {cell_size}")
    n_cols = max(len(r) for r in rows) or 1
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    if column_labels is not None and len(column_labels) > n_cols:
        raise ValueError(f"{len(column_labels)} column labels for {n_cols} columns")

    # 2. Geometry.
    small, big = max(10, cell_size // 18), max(12, cell_size // 14)
    font_small, font_big, font_title = _font(small), _font(big), _font(big + 4)
    caption_h = big + small + 10
    stripe_h = 5
    cell_h = cell_size + stripe_h + caption_h
    label_w = cell_size if row_labels is not None else 0
    title_h = big + 4 + 2 * padding if title else 0
    header_h = big + padding if column_labels else 0
    width = padding + (label_w + padding if label_w else 0) + n_cols * (cell_size + padding)
    height = padding + title_h + header_h + len(rows) * (cell_h + padding)
    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    ink, grey = (20, 20, 20), (100, 100, 100)

    # 3. Title and column labels.
    y = padding
    if title:
        draw.text((padding, y + padding // 2), _fit_text(draw, title, font_title, width - 2 * padding),
                  fill=ink, font=font_title)
        y += title_h
    x_cells = padding + (label_w + padding if label_w else 0)
    if column_labels:
        for c, text in enumerate(column_labels):
            x = x_cells + c * (cell_size + padding)
            draw.text((x, y), _fit_text(draw, text, font_big, cell_size), fill=ink, font=font_big)
        y += header_h

    # 4. Rows: label, then each cell's thumbnail, status stripe and captions.
    for r, row in enumerate(rows):
        if row_labels is not None:
            ty = y
            for i, line in enumerate(str(row_labels[r]).split("\n")[:6]):
                font = font_big if i == 0 else font_small
                draw.text((padding, ty), _fit_text(draw, line, font, label_w), fill=ink if i == 0 else grey, font=font)
                ty += (big if i == 0 else small) + 4
        for c, cell in enumerate(row):
            x = x_cells + c * (cell_size + padding)
            draw.rectangle((x, y, x + cell_size - 1, y + cell_size - 1), fill=(240, 240, 240))
            if cell.image is not None:
                _paste_fitted(sheet, cell.image, (x, y, x + cell_size, y + cell_size))
            if cell.status is not None:
                colour = STATUS_COLOURS.get(cell.status, (0, 0, 0))
                draw.rectangle((x, y + cell_size, x + cell_size - 1, y + cell_size + stripe_h - 1), fill=colour)
            ty = y + cell_size + stripe_h + 3
            if cell.label:
                draw.text((x, ty), _fit_text(draw, cell.label, font_big, cell_size), fill=ink, font=font_big)
            if cell.sublabel:
                draw.text((x, ty + big + 3), _fit_text(draw, cell.sublabel, font_small, cell_size), fill=grey,
                          font=font_small)
        y += cell_h + padding
    return np.asarray(sheet).copy()


def load_thumbnail(path: str | Path, max_side: int) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB whose longer side is at most ``max_side`` (fast JPEG draft decode)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max_side, max_side))
            im = im.convert("RGB")
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(im).copy()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image: {exc}", path=path) from None


def catalog_contact_sheets(
    catalog_dir: str | Path,
    skus: Sequence[str] | None = None,
    *,
    kinds: Sequence[str] = SHEET_KINDS,
    cell_size: int = 224,
    max_columns: int = 8,
    skus_per_sheet: int = 40,
    title: str | None = None,
) -> list[np.ndarray]:
    """Contact sheets of a catalog: one row per SKU (label: SKU, title, review status), its outputs after.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        skus (`Sequence[str]`, *optional*): these SKUs, in this order (default: every entry), except that
            SKUs with outputs that need attention (quality flags, undecided) come first, and such outputs
            first in their row. SKUs with no entry (failed) are left out.
        kinds (`Sequence[str]`, *optional*): output kinds to show (exports are never shown: they repeat
            their source), in this order.
        cell_size (`int`, *optional*, defaults to 224): thumbnail box side, pixels.
        max_columns (`int`, *optional*, defaults to 8): outputs per row; a SKU with more gets more rows.
        skus_per_sheet (`int`, *optional*, defaults to 40): SKUs per sheet; a larger batch gets more sheets.
        title (`str`, *optional*): drawn on top of each sheet (with "page i/n" when there are several).

    Returns:
        `list[np.ndarray]`: HxWx3 uint8 RGB sheets; empty when no SKU has an entry.
    """
    catalog = Path(catalog_dir)
    if skus is None:
        skus = sorted(d.name for d in catalog.iterdir() if (d / MANIFEST_NAME).is_file()) if catalog.is_dir() else []
    order = {k: i for i, k in enumerate(kinds)}
    rows: list[list[SheetCell]] = []
    labels: list[str] = []
    manifests = []
    for sku in skus:
        try:
            validate_sku(sku)
            manifests.append((sku, read_manifest(catalog / sku / MANIFEST_NAME)))
        except InputError as exc:
            logger.info("contact sheet: skipping %s (%s)", sku, exc)
    # SKUs (and, in a row, outputs) that need attention (quality flags, undecided) come first.
    for sku, manifest in attention_first(manifests, lambda e: e[1].get("outputs")):
        outputs = sorted((o for o in manifest.get("outputs", []) if o.get("kind") in order and is_reviewable(o)),
                         key=lambda o: (order[o["kind"]], o["file"]))
        outputs = attention_first(outputs, lambda o: [o])
        cells = []
        for o in outputs:
            try:
                path = catalog / sku / o["file"]
                if not path.resolve().is_relative_to(catalog.resolve()):
                    raise InputError("outside the catalog; not shown", path=path)
                thumb = load_thumbnail(path, cell_size)
            except InputError as exc:
                logger.warning("contact sheet: %s", exc)
                thumb = None
            status = (o.get("review") or {}).get("status", "pending")
            flags = ",".join(sorted({f.get("flag", "?") for f in output_flags(o)}))
            caption = f"{o['kind']} | {o.get('background', '')} | {status}" + (f" | {flags}" if flags else "")
            cells.append(SheetCell(thumb, o["file"], caption, status))
        product = manifest.get("product") or {}
        label = f"{sku}\n{product.get('title') or ''}\nreview: {sku_review_status(manifest.get('outputs', []))}"
        for start in range(0, max(len(cells), 1), max_columns):
            rows.append(cells[start:start + max_columns])
            labels.append(label if start == 0 else "")
    # Split into sheets by SKU count (continuation rows stay with their SKU).
    sheets: list[tuple[list, list]] = []
    current: tuple[list, list] = ([], [])
    n_skus = 0
    for row, label in zip(rows, labels, strict=True):
        if label and n_skus == skus_per_sheet:
            sheets.append(current)
            current, n_skus = ([], []), 0
        n_skus += bool(label)
        current[0].append(row)
        current[1].append(label)
    if current[0]:
        sheets.append(current)
    out = []
    for i, (sheet_rows, sheet_labels) in enumerate(sheets, start=1):
        page_title = title
        if title and len(sheets) > 1:
            page_title = f"{title} (page {i}/{len(sheets)})"
        out.append(contact_sheet(sheet_rows, row_labels=sheet_labels, title=page_title, cell_size=cell_size))
    return out


#: The report key holding `contact_sheet_key` of what its ``contact_sheets`` show.
SHEET_KEY = "contact_sheets_key"
#: Bumped when the sheets' layout changes, so that sheets drawn by an older layout are drawn again.
SHEET_LAYOUT_VERSION = 1
#: How many of the newest batch reports are searched for sheets of the same catalog state.
REUSE_LOOKBACK = 50


def _sheet_skus(report: dict[str, Any]) -> list[str]:
    """The SKUs a batch's sheets show: those of ``report["entries"]`` with an entry (ok or skipped), in order."""
    return [e["sku"] for e in report.get("entries") or [] if e.get("status") in ("ok", "skipped")]


def contact_sheet_key(catalog_dir: str | Path, skus: Sequence[str]) -> str:
    """A fingerprint (sha256 hex) of what the contact sheets of ``skus`` show: the layout version, then each SKU's
    name and the sha256 of its ``manifest.json`` bytes, in order. A manifest lists every output with its sha256,
    review status and quality flags, and is rewritten by every render, review decision and edit, so two equal keys
    mean identical sheets (up to the title's run id); a SKU without a readable manifest counts as empty."""
    catalog = Path(catalog_dir)
    h = hashlib.sha256(f"vitrine contact sheet v{SHEET_LAYOUT_VERSION}\n".encode())
    for sku in skus:
        try:
            validate_sku(sku)
            data = (catalog / sku / MANIFEST_NAME).read_bytes()
        except (InputError, OSError):
            data = b""
        h.update(json.dumps(sku).encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _sheets_present(catalog: Path, sheets: Any) -> bool:
    return (isinstance(sheets, list) and bool(sheets) and all(isinstance(r, str) for r in sheets)
            and all((catalog / r).is_file() and (catalog / r).resolve().is_relative_to(catalog.resolve())
                    for r in sheets))


def previous_contact_sheets(catalog_dir: str | Path, key: str, exclude: str | Path | None = None) -> list[str] | None:
    """The sheets an earlier batch drew for the catalog state ``key`` (`contact_sheet_key`), if they still exist.

    Searches the newest `REUSE_LOOKBACK` batch reports (``_reports/<UTC time>-<run id>.json``, ``exclude`` left
    out) for one whose `SHEET_KEY` is ``key`` and whose ``contact_sheets`` are all there.

    Returns:
        `list[str] | None`: their paths relative to the catalog root, or `None` when there are none.
    """
    catalog = Path(catalog_dir)
    reports = sorted((catalog / REPORTS_DIR).glob("[0-9]*.json"), reverse=True)
    excluded = Path(exclude).resolve() if exclude is not None else None
    for path in [p for p in reports if p.resolve() != excluded][:REUSE_LOOKBACK]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get(SHEET_KEY) == key and _sheets_present(catalog, data.get("contact_sheets")):
            return list(data["contact_sheets"])
    return None


def reuse_contact_sheets(report: dict[str, Any], catalog_dir: str | Path) -> list[str] | None:
    """Before a batch report is written: when nothing its sheets would show changed since an earlier batch drew
    them (same SKUs, same manifests: outputs, sha256, review states), list those sheets in ``report``.

    Sets ``report[SHEET_KEY]`` (when the batch has SKUs to show) and, on a match, ``report["contact_sheets"]``;
    `attach_contact_sheets` then neither draws nor rewrites the report.

    Returns:
        `list[str] | None`: the reused sheets (relative to the catalog root), or `None`.
    """
    skus = _sheet_skus(report)
    if not skus:
        return None
    report[SHEET_KEY] = key = contact_sheet_key(catalog_dir, skus)
    previous = previous_contact_sheets(catalog_dir, key)
    if previous is not None:
        report["contact_sheets"] = previous
    return previous


def attach_contact_sheets(report: dict[str, Any], catalog_dir: str | Path, report_path: str | Path) -> list[str]:
    """Write a batch's contact sheets next to its report, and list them in the report (rewritten atomically),
    unless sheets of the very same catalog state exist already: then those are listed instead.

    The sheets show the SKUs of ``report["entries"]`` that have an entry (ok or skipped) and are named
    ``<report stem>.contact-sheet.png`` (``-2``, ``-3``, ... for further pages). The report records what they
    show as `SHEET_KEY` (`contact_sheet_key`). When an earlier batch's sheets have the same key (a fully
    skipped re-run with no decision, edit or file changed since), nothing is drawn: the report lists those
    sheets, and is not rewritten when `reuse_contact_sheets` listed them before it was written.

    Args:
        report (`dict`): the batch report (see `pipelines.catalog.report.build_report`); its ``contact_sheets``
            field is set to the sheets' paths relative to the catalog root.
        catalog_dir (`str | Path`): the catalog root.
        report_path (`str | Path`): where the report was written (`pipelines.catalog.report.write_report`).

    Returns:
        `list[str]`: the sheets' paths relative to the catalog root (empty when no SKU has outputs).
    """
    catalog = Path(catalog_dir)
    report_path = Path(report_path)
    skus = _sheet_skus(report)
    key = contact_sheet_key(catalog, skus) if skus else None
    if key is not None and report.get(SHEET_KEY) == key and _sheets_present(catalog, report.get("contact_sheets")):
        return list(report["contact_sheets"])  # listed before the report was written: nothing to draw or rewrite
    rel = previous_contact_sheets(catalog, key, exclude=report_path) if key is not None else None
    if rel is None:
        title = f"Catalog batch {report.get('run_id', '')}: {len(skus)} SKUs"
        sheets = catalog_contact_sheets(catalog, skus, title=title) if skus else []
        rel = []
        for i, sheet in enumerate(sheets, start=1):
            name = f"{report_path.stem}.contact-sheet{'' if i == 1 else f'-{i}'}.png"
            save_image(report_path.parent / name, sheet, compress_level=6)
            rel.append(Path(os.path.relpath(report_path.parent / name, catalog)).as_posix())
    report["contact_sheets"] = rel
    if key is not None and rel:
        report[SHEET_KEY] = key
    atomic_write_json(report_path, report)
    return rel

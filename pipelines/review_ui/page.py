"""The catalog review page: one HTML page per catalog, served live (`pipelines.review_ui.server`) or exported.

Per SKU it shows the product facts, provenance (engine, backends, models with revision and licence,
seeds, prompts, render parameters, package versions), quality figures and timings, the inputs with their
masks and control images, and every output with its masks, quality figures and review status. The live
page adds, per output, buttons to approve, reject (with a note) or request an edit (with an instruction).

Every piece of text that comes from a catalog (titles, SKUs, file names, notes, instructions, reasons) is
HTML-escaped here; the page's script only ever sets ``textContent``. The live page carries no inline
script and its Content-Security-Policy allows scripts from the server only; the exported page has no
script at all and a policy that forbids scripts.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipelines.catalog.contact_sheet import load_thumbnail
from pipelines.catalog.index import SkuFacts, facts_from_manifest, failed_skus, review_order_key
from pipelines.errors import InputError
from pipelines.imageio import atomic_write_text, save_image
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.catalog.review import STATUSES, catalog_entries, is_reviewable, pending_edit_requests, review_counts, sku_review_status

logger = logging.getLogger(__name__)

#: Longer side of the thumbnails shown on the page, pixels.
THUMB_SIDE = 480
#: Image suffixes the page shows as pictures.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

#: Policy of the live page (sent as a header by the server).
SERVER_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Policy of the exported page (a meta tag): no script may run.
STATIC_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'none'; " \
             "base-uri 'none'; form-action 'none'"

STYLE = """
:root { --ink: #1d1d1f; --muted: #666; --line: #ddd; --bg: #fafafa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0; background: var(--bg); }
header.page { background: #fff; border-bottom: 1px solid var(--line); padding: 12px 20px; position: sticky; top: 0; z-index: 2; }
header.page h1 { font-size: 18px; margin: 0 0 4px; }
header.page p { margin: 2px 0; color: var(--muted); }
nav.skus { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
nav.skus a { text-decoration: none; color: var(--ink); border: 1px solid var(--line); border-radius: 12px; padding: 1px 8px; background: #fff; }
main { padding: 12px 20px 40px; }
section.sku { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; padding: 12px 16px; }
section.sku > h2 { font-size: 17px; margin: 0; display: flex; gap: 10px; align-items: center; }
p.title { font-size: 15px; margin: 2px 0 8px; }
h3 { font-size: 14px; margin: 14px 0 6px; border-bottom: 1px solid var(--line); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table.kv { border-collapse: collapse; margin: 4px 0; }
table.kv td, table.kv th { border: 1px solid var(--line); padding: 2px 6px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
.strip { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 220px; }
figure img { width: 220px; height: 220px; object-fit: contain; background: #eee; border: 1px solid var(--line); display: block; }
figure.small, figure.small img { width: 120px; }
figure.small img { height: 120px; }
figcaption { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.outputs { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
article.output { border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
article.output > a > img { width: 100%; height: 300px; object-fit: contain; background: #eee; display: block; }
article.output h4 { margin: 6px 0 2px; font-size: 14px; overflow-wrap: anywhere; }
.badge { font-size: 12px; border-radius: 10px; padding: 1px 8px; color: #fff; background: #888; font-weight: 600; }
.status-approved { background: #2e7d32; }
.status-rejected { background: #c62828; }
.status-edit-requested { background: #e08a00; }
.status-pending { background: #888; }
.review p { margin: 2px 0; overflow-wrap: anywhere; white-space: pre-wrap; }
.decide textarea { width: 100%; min-height: 38px; font: inherit; margin: 3px 0; }
.decide .buttons { display: flex; gap: 6px; flex-wrap: wrap; }
.decide button { font: inherit; padding: 3px 10px; cursor: pointer; }
.msg { display: block; min-height: 1.2em; font-size: 12px; color: var(--muted); }
.msg.error { color: #c62828; }
.error { color: #c62828; }
article.output small { word-break: break-all; color: var(--muted); }
.qline { font-size: 12px; color: var(--muted); margin: 2px 0; }
.readonly { background: #fff8e1; border: 1px solid #f0d98c; padding: 6px 10px; border-radius: 6px; }
"""


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included), `None` as an empty string."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class PageLinks:
    """How the page addresses catalog files.

    Attributes:
        full (`Callable[[str, str], str]`): ``(sku, relpath) -> URL`` of the file itself.
        thumb (`Callable[[str, str], str]`): ``(sku, relpath) -> URL`` of a thumbnail of a picture.
    """

    full: Callable[[str, str], str]
    thumb: Callable[[str, str], str]


def server_links() -> PageLinks:
    """URLs of `pipelines.review_ui.server`: ``/files/<sku>/<path>`` and ``/thumb/<sku>/<path>``."""
    return PageLinks(
        full=lambda sku, rel: "/files/" + quote(f"{sku}/{rel}", safe="/"),
        thumb=lambda sku, rel: "/thumb/" + quote(f"{sku}/{rel}", safe="/"),
    )


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def _kv_table(rows: Iterable[tuple[str, Any]], head: tuple[str, ...] | None = None) -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_fmt(v))}</td></tr>" for k, v in rows)
    if not body:
        return "<p>none</p>"
    thead = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" if head else ""
    return f'<table class="kv">{thead}{body}</table>'


def _figure(links: PageLinks, sku: str, rel: str, caption: str, *, small: bool = False) -> str:
    cls = ' class="small"' if small else ""
    if Path(rel).suffix.lower() not in PICTURE_SUFFIXES:
        return (f'<figure{cls}><a href="{esc(links.full(sku, rel))}">{esc(rel)}</a>'
                f"<figcaption>{esc(caption)}</figcaption></figure>")
    return (
        f'<figure{cls}><a href="{esc(links.full(sku, rel))}"><img loading="lazy" src="{esc(links.thumb(sku, rel))}" '
        f'alt="{esc(caption)}"></a><figcaption>{esc(caption)}</figcaption></figure>'
    )


def _quality_line(q: dict[str, Any]) -> str:
    """The figures a reviewer checks first: product pixels preserved, fill, white background."""
    parts = []
    if "preserved_identical_fraction" in q:
        parts.append(f"product pixels preserved {q['preserved_identical_fraction'] * 100:.2f}%")
    if "fill" in q:
        parts.append(f"fill {_fmt(q['fill'])}")
    wb = q.get("white_background")
    if isinstance(wb, dict) and "ok" in wb:
        parts.append("white background ok" if wb["ok"] else "white background NOT ok")
    return f'<p class="qline">{esc(" | ".join(parts))}</p>' if parts else ""


def _badge(status: str, role: str) -> str:
    status = status if status in STATUSES else "pending"
    return f'<span class="badge status-{esc(status)}" data-role="{esc(role)}">{esc(status)}</span>'


def _review_block(review: dict[str, Any]) -> str:
    note, instruction, updated = review.get("note"), review.get("instruction"), review.get("updated_at")
    by = f" by {review['reviewer']}" if review.get("reviewer") else ""
    return (
        '<div class="review">'
        f'<p>Review: {_badge(review.get("status", "pending"), "output-status")}</p>'
        f'<p data-role="note">{esc("Note: " + note) if note else ""}</p>'
        f'<p data-role="instruction">{esc("Edit instruction: " + instruction) if instruction else ""}</p>'
        f'<p data-role="updated">{esc(f"Decided {updated}{by}") if updated else ""}</p>'
        "</div>"
    )


DECIDE_FORM = """
<div class="decide">
  <textarea name="note" maxlength="2000" placeholder="Note (required to reject)" aria-label="Note"></textarea>
  <textarea name="instruction" maxlength="2000" placeholder="Edit instruction, e.g. make the background warmer" aria-label="Edit instruction"></textarea>
  <div class="buttons">
    <button type="button" data-action="approve">Approve</button>
    <button type="button" data-action="reject">Reject</button>
    <button type="button" data-action="request-edit">Request edit</button>
    <button type="button" data-action="reset">Reset</button>
  </div>
  <output class="msg" aria-live="polite"></output>
</div>
"""


def _output_card(
    links: PageLinks, sku: str, o: dict[str, Any], exports: list[dict[str, Any]], interactive: bool
) -> str:
    facts = [o.get("kind"), o.get("background"), f"seed {o['seed']}" if "seed" in o else None,
             f"{o.get('width')}x{o.get('height')}", o.get("format")]
    masks = "".join(
        _figure(links, sku, o[k], k.replace("_", " "), small=True)
        for k in ("product_mask", "preserve_mask", "seam_band") if o.get(k)
    )
    export_links = "".join(
        f'<li><a href="{esc(links.full(sku, e["file"]))}">{esc(e["file"])}</a> ({esc(e.get("format"))}'
        f'{", lossy" if e.get("lossy") else ""})</li>'
        for e in exports
    )
    parts = [
        f'<article class="output" data-sku="{esc(sku)}" data-output="{esc(o["file"])}" '
        f'data-sha256="{esc(o.get("sha256"))}" '
        f'data-status="{esc((o.get("review") or {}).get("status", "pending"))}">',
        f'<a href="{esc(links.full(sku, o["file"]))}"><img loading="lazy" src="{esc(links.thumb(sku, o["file"]))}" '
        f'alt="{esc(o["file"])}"></a>',
        f"<h4>{esc(o['file'])}</h4>",
        f"<p>{esc(' | '.join(str(f) for f in facts if f))}</p>",
        _quality_line(o.get("quality") or {}),
        _review_block(o.get("review") or {}),
    ]
    if interactive:
        parts.append(DECIDE_FORM)
    if export_links:
        parts.append(f"<p>Exports (follow this review):</p><ul>{export_links}</ul>")
    parts.append(f"<details><summary>Quality</summary>{_kv_table(_flatten(o.get('quality') or {}))}</details>")
    if masks:
        parts.append(f'<details><summary>Masks</summary><div class="strip">{masks}</div></details>')
    if o.get("placement"):
        parts.append(f"<details><summary>Placement</summary>{_kv_table(_flatten(o['placement']))}</details>")
    parts.append(f'<p><small>sha256 {esc(o.get("sha256"))}</small></p></article>')
    return "".join(parts)


def sku_section(links: PageLinks, index: int, sku: str, m: dict[str, Any], interactive: bool) -> str:
    product = m.get("product") or {}
    spec = product.get("spec") or {}
    engine = m.get("engine") or {}
    outputs = m.get("outputs") or []
    status = sku_review_status(outputs)
    counts = review_counts(outputs)
    facts = [
        ("category", product.get("category")), ("garment type", product.get("garment_type")),
        ("commercial", product.get("commercial")), ("marketplaces", ", ".join(product.get("marketplaces") or [])),
        ("engine", f"{engine.get('name')} ({engine.get('reason')})"), ("created", m.get("created_at")),
        ("content hash", m.get("content_hash")), ("vitrine", m.get("vitrine_version")),
        ("reviewed", ", ".join(f"{v} {k}" for k, v in counts.items() if v)),
    ]
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))

    seeds_prompts = [("seeds", spec.get("seeds")), *_flatten(spec.get("prompts") or {}, "prompts."),
                     *_flatten(spec.get("thresholds") or {}, "thresholds.")]
    models = _kv_table(
        ((mod.get("id"), f"revision {mod.get('revision')}, licence {mod.get('licence')}"
          + (f", from {mod['source']}" if mod.get("source") else "")) for mod in m.get("models") or []),
        ("model", "revision and licence"),
    )
    prov = (
        "<details><summary>Provenance: engine, models and licences, seeds, prompts, parameters</summary>"
        f"<h3>Engine backends</h3>{_kv_table((engine.get('backends') or {}).items())}"
        f"<h3>Models</h3>{models}"
        f"<h3>Seeds and prompts</h3>{_kv_table(seeds_prompts)}"
        f"<h3>Render parameters</h3>{_kv_table(_flatten((m.get('parameters') or {}).get('render') or {}))}"
        f"<h3>Packages</h3>{_kv_table((m.get('packages') or {}).items())}"
        f'<p><a href="{esc(links.full(sku, MANIFEST_NAME))}">manifest.json</a></p>'
        "</details>"
    )
    quality = (
        "<details><summary>Quality and timings</summary>"
        f"{_kv_table(_flatten(m.get('quality') or {}))}<h3>Timings (s)</h3>{_kv_table((m.get('timings') or {}).items())}"
        "</details>"
    )

    inputs = []
    for i in m.get("inputs") or []:
        if i.get("normalized"):
            size = "x".join(str(v) for v in i.get("source_size") or [])
            inputs.append(_figure(links, sku, i["normalized"], f"input {i['file']} ({i.get('role')}, {size})"))
    for s in m.get("subjects") or []:
        why = f"{s.get('kind')} by {s.get('source')}: {s.get('reason')}"
        inputs.append(_figure(links, sku, s["alpha"], f"alpha of {s.get('input')}, {why}"))
        inputs.append(_figure(links, sku, s["mask"], f"mask of {s.get('input')}"))
        for cname, rel in (s.get("controls") or {}).items():
            inputs.append(_figure(links, sku, rel, f"control {cname} of {s.get('input')}"))

    exports_of: dict[str, list[dict[str, Any]]] = {}
    for o in outputs:
        if not is_reviewable(o):
            exports_of.setdefault(o["derived_from"], []).append(o)
    cards = "".join(_output_card(links, sku, o, exports_of.get(o["file"], []), interactive)
                    for o in outputs if is_reviewable(o))
    return (
        f'<section class="sku" id="sku-{index}" data-sku="{esc(sku)}">'
        f"<h2>{esc(sku)} {_badge(status, 'sku-status')}</h2>"
        f'<p class="title">{esc(product.get("title") or "(no title)")}</p>'
        f'<dl class="facts">{facts_html}</dl>{prov}{quality}'
        f'<h3>Inputs, masks and controls</h3><div class="strip">{"".join(inputs)}</div>'
        f'<h3>Outputs</h3><div class="outputs">{cards}</div>'
        "</section>"
    )


def load_entries(catalog_dir: str | Path) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """``(sku, manifest or None, error or None)`` for every catalog entry, sorted by SKU."""
    out = []
    for sku, d in catalog_entries(catalog_dir):
        try:
            out.append((sku, read_manifest(d / MANIFEST_NAME), None))
        except InputError as exc:
            out.append((sku, None, str(exc)))
    return out


def order_entries(entries: list[tuple[str, dict[str, Any] | None, str | None]],
                  failed: dict[str, str] | None = None) -> list:
    """The live page's order (`pipelines.catalog.index.review_order_key`): SKUs that need attention (quality
    flags, outputs marked needs-attention) first, then failed ones (an unreadable manifest, or failed in the
    latest batch: ``failed``, `pipelines.catalog.index.failed_skus`), then the rest; by SKU within each."""
    failed = failed or {}

    def facts(entry) -> SkuFacts:
        sku, manifest, error = entry
        if manifest is None:
            return SkuFacts(sku=sku, status="failed", error=error or "unreadable manifest", has_manifest=False)
        f = facts_from_manifest(sku, manifest)
        return SkuFacts(**{**f.__dict__, "error": failed[sku]}) if sku in failed else f

    return sorted(entries, key=lambda e: review_order_key(facts(e)))


def render_page(
    catalog_dir: str | Path,
    links: PageLinks,
    *,
    interactive: bool,
    token: str | None = None,
    status_filter: str | None = None,
) -> str:
    """The review page as HTML.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        links (`PageLinks`): how to address catalog files (`server_links`, or relative links for an export).
        interactive (`bool`): add the decision buttons, the script and the CSRF ``token`` (live page), or
            produce a script-free read-only page with its styles inline (export).
        token (`str`, *optional*): the server's CSRF token (required when ``interactive``).
        status_filter (`str`, *optional*): only SKUs with this review status.

    Returns:
        `str`: the page.
    """
    if interactive and not token:
        raise ValueError("an interactive page needs the server's token")
    if status_filter is not None and status_filter not in STATUSES:
        raise InputError(f"unknown status {status_filter!r}; expected one of {', '.join(STATUSES)}", key="status")
    catalog = Path(catalog_dir)
    entries = order_entries(load_entries(catalog), failed_skus(catalog))
    sku_counts = dict.fromkeys(STATUSES, 0)
    for _sku, m, _err in entries:
        if m is not None:
            sku_counts[sku_review_status(m.get("outputs") or [])] += 1
    try:
        pending_edits: int | str = len(pending_edit_requests(catalog))
    except InputError as exc:
        pending_edits = f"unknown ({exc})"

    sections, nav = [], []
    for index, (sku, m, err) in enumerate(entries):
        if m is None:
            sections.append(f'<section class="sku" id="sku-{index}"><h2>{esc(sku)}</h2>'
                            f'<p class="error">{esc(err)}</p></section>')
            nav.append(f'<a href="#sku-{index}">{esc(sku)} (unreadable)</a>')
            continue
        status = sku_review_status(m.get("outputs") or [])
        if status_filter is not None and status != status_filter:
            continue
        sections.append(sku_section(links, index, sku, m, interactive))
        nav.append(f'<a href="#sku-{index}">{esc(sku)} {_badge(status, "nav-status")}</a>')

    summary = ", ".join(f"{v} {k}" for k, v in sku_counts.items())
    if interactive:
        head = (
            f'<meta name="vitrine-token" content="{esc(token)}">'
            '<link rel="stylesheet" href="/static/review.css"><script src="/static/review.js" defer></script>'
        )
        banner = ""
    else:
        head = f'<meta http-equiv="Content-Security-Policy" content="{esc(STATIC_CSP)}"><style>{STYLE}</style>'
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        banner = (  # the catalog's name, never its absolute path: an export is shared with others
            f'<p class="readonly">Read-only export made {esc(stamp)}. To record decisions run '
            f"<code>vitrine review {esc(catalog.resolve().name)}</code> (the catalog folder).</p>"
        )
    filters = ""
    if interactive:
        filters = "<p>Show: " + " ".join(
            ['<a href="/">all</a>'] + [f'<a href="/?status={esc(s)}">{esc(s)}</a>' for s in STATUSES]) + "</p>"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>Vitrine review: {esc(catalog.resolve().name)}</title>{head}</head>'
        '<body><header class="page">'
        f"<h1>Vitrine catalog review</h1><p>{esc(catalog.resolve() if interactive else catalog.resolve().name)}</p>"
        f"<p>{len(entries)} SKUs: {esc(summary)}. Pending edit requests: {esc(pending_edits)}.</p>"
        f'{filters}<nav class="skus">{"".join(nav)}</nav></header>'
        f"<main>{banner}{''.join(sections) or '<p>No catalog entries.</p>'}</main></body></html>\n"
    )


# --------------------------------------------------------------------------------------------------
# Static export
# --------------------------------------------------------------------------------------------------


def write_thumbnail(src: Path, dest: Path, max_side: int = THUMB_SIDE) -> None:
    """Write a JPEG thumbnail of the picture ``src`` to ``dest`` (atomically)."""
    save_image(dest, load_thumbnail(src, max_side), quality=85)


#: The export's record of the files it wrote, in the export folder (a re-export deletes only files listed here):
#: ``{"v": 1, "files": [...]}``.
EXPORT_MANIFEST = ".vitrine-export.json"


def _export_owned(out: Path) -> set[str]:
    """The files (relative to ``out``) an earlier export recorded as its own; empty when there is none."""
    try:
        data = json.loads((out / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files") if isinstance(data, dict) else None
        return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()
    except (OSError, ValueError):
        return set()


def export_static(catalog_dir: str | Path, out_dir: str | Path, *, thumb_side: int = THUMB_SIDE) -> Path:
    """Write a read-only review page that opens from disk: ``OUT/index.html`` and ``OUT/thumbs/*.jpg``.

    The export owns only what it wrote: ``OUT/.vitrine-export.json`` lists its files; a re-export removes
    only listed files it no longer needs, and refuses to overwrite an ``index.html`` or thumbnail it did not
    write (`InputError` naming the file). The page names the catalog folder, never its absolute path.

    Thumbnails are copied into ``OUT``; full-size images and manifests are linked by relative paths into
    the catalog, so keep ``OUT`` and the catalog where they are (``CATALOG/_review/site`` is a good
    place). The page has no script (its Content-Security-Policy forbids any), and all catalog text is
    escaped.

    Args:
        catalog_dir (`str | Path`): the catalog root.
        out_dir (`str | Path`): the export folder (created).
        thumb_side (`int`, *optional*, defaults to `THUMB_SIDE`): thumbnail longer side, pixels.

    Returns:
        `Path`: the ``index.html`` written.
    """
    catalog = Path(catalog_dir).resolve()
    out = Path(out_dir).resolve()
    if not catalog.is_dir():
        raise InputError("catalog folder not found", path=catalog)
    for sku, _d in catalog_entries(catalog):
        if out == catalog / sku or (catalog / sku) in out.parents:
            raise InputError("the export folder must not be inside a SKU folder (a re-render replaces it)",
                             path=out)
    owned = _export_owned(out)
    index = out / "index.html"
    if index.exists() and "index.html" not in owned:
        raise InputError("exists and was not written by a Vitrine export; export into an empty folder "
                         "(e.g. CATALOG/_review/site) or move the file away", path=index)
    thumbs = out / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()

    def full(sku: str, rel: str) -> str:
        return quote(Path(os.path.relpath(catalog / sku / rel, out)).as_posix(), safe="/")

    def thumb(sku: str, rel: str) -> str:
        src = catalog / sku / rel
        if not src.resolve().is_relative_to(catalog):  # a tampered manifest must not pull files in
            logger.warning("export: %s is outside the catalog; not shown", src)
            return "#"
        name = hashlib.sha256(f"{sku}/{rel}".encode()).hexdigest()[:24] + ".jpg"
        if name not in written:
            if (thumbs / name).exists() and f"thumbs/{name}" not in owned:
                logger.warning("export: %s exists and is not this export's; linking the full image", thumbs / name)
                return full(sku, rel)
            try:
                write_thumbnail(src, thumbs / name, thumb_side)
            except InputError as exc:
                logger.warning("export: no thumbnail for %s: %s", src, exc)
                return full(sku, rel)
            written.add(name)
        return f"thumbs/{name}"

    page = render_page(catalog, PageLinks(full=full, thumb=thumb), interactive=False)
    mine = {"index.html", *(f"thumbs/{n}" for n in written)}
    # The record first (it lists old and new files), then the page, then the record of the new files only:
    # a crash in between leaves files listed as this export's, never an unlisted file of ours.
    atomic_write_text(out / EXPORT_MANIFEST, json.dumps({"v": 1, "files": sorted(owned | mine)}, indent=1) + "\n")
    atomic_write_text(index, page)
    for rel in sorted(owned - mine):  # this export's thumbnails of images no longer in the catalog
        stale = out / rel
        if rel.startswith("thumbs/") and "/" not in rel[len("thumbs/"):] and stale.is_file():
            stale.unlink()
    atomic_write_text(out / EXPORT_MANIFEST, json.dumps({"v": 1, "files": sorted(mine)}, indent=1) + "\n")
    return index

"""The live review page at catalog scale, and the mask brush page (served by `pipelines.review_ui.server`).

The live page shows one page of SKUs (`pipelines.catalog.index.ReviewQuery`: 20 by default) chosen, ordered
and counted by a `pipelines.catalog.index.CatalogIndex`, so it stays small and fast on 10,000 SKUs. Its
sticky header is compact (title, live counts that are also the status filters, a search/filter form and
the keyboard help: a few lines, well under a quarter of the viewport); each SKU section is rendered by
`pipelines.review_ui.page` as on the export, plus a tool bar (approve all, fix mask, flags, failure).

Keyboard (shown on the page; ``?`` toggles the full list): ``j``/``k`` next/previous output, ``a`` approve,
``r`` reject (types into the note; ``Enter`` sends), ``e`` request an edit (types into the instruction;
``Enter`` sends), ``u`` reset, ``A`` approve every output of the SKU, ``m`` fix the mask, ``n``/``p``
next/previous page, ``/`` search, ``Esc`` leave a text box.

The mask brush page (``GET /mask/<sku>``) paints include (white), exclude (black) or keep-model (grey)
over the SKU's main input photo, at the photo's original size, over an overlay of the current mask, with
brush size and undo; saving sends ``POST /api/mask`` (see `pipelines.catalog.mask_edit`).

As on the export, all catalog text is HTML-escaped and the script only sets ``textContent``; the page
carries no inline script (the server's policy allows scripts from itself only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pipelines.errors import InputError
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.catalog.review import pending_edit_requests
from pipelines.catalog.index import FILTERS, CatalogIndex, ReviewQuery, SkuFacts
from pipelines.review_ui.page import STYLE, sku_section, esc, server_links

#: Extra styles of the live page (served after `pipelines.review_ui.page.STYLE`).
LIVE_STYLE = STYLE + """
header.page { padding: 6px 16px; }
header.page h1 { font-size: 15px; margin: 0; display: inline; }
header.page .where { color: var(--muted); font-size: 12px; margin-left: 8px; }
.counts { display: flex; flex-wrap: wrap; gap: 4px 10px; margin: 3px 0; font-size: 13px; }
.counts a { color: var(--ink); text-decoration: none; border-bottom: 2px solid transparent; }
.counts a.active { border-bottom-color: var(--ink); font-weight: 600; }
.counts a .n { font-variant-numeric: tabular-nums; }
form.find { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 2px 0; font-size: 13px; }
form.find input[type=search] { width: 14em; }
.keys { font-size: 12px; color: var(--muted); margin: 2px 0; }
.keys kbd, #help kbd { border: 1px solid var(--line); border-radius: 3px; padding: 0 3px; background: #fff; font: 11px monospace; }
#help { display: none; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 6px 0; }
#help.open { display: block; }
nav.pages { display: flex; gap: 10px; align-items: center; margin: 8px 0; }
section.sku, article.output { scroll-margin-top: 140px; }
article.output.current { outline: 3px solid #1565c0; outline-offset: 1px; }
.sku-tools { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 4px 0; }
.sku-tools button { font: inherit; padding: 2px 8px; cursor: pointer; }
.flags { color: #8a4b00; font-size: 12px; }
.status-failed { background: #6a1b9a; }
.status-needs-attention { background: #ad1457; }
.mask-tools { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 8px 0; }
.mask-stage { position: relative; display: inline-block; max-width: 100%; border: 1px solid var(--line); }
.mask-stage img, .mask-stage canvas { display: block; width: 100%; height: auto; }
.mask-stage canvas, .mask-stage img.overlay { position: absolute; left: 0; top: 0; }
.mask-stage img.overlay { opacity: 0.35; mix-blend-mode: multiply; pointer-events: none; }
.mask-stage canvas.view { opacity: 0.55; cursor: crosshair; touch-action: none; }
/* Keep the sticky header under a quarter of small viewports: drop the path and the key line (? still helps). */
@media (max-width: 700px) { header.page .where, header.page .keys { display: none; } }
@media (max-height: 520px) { header.page { position: static; } }
"""

KEYS = [
    ("j / k", "next / previous output"), ("a", "approve"), ("r", "reject: type the note, Enter sends"),
    ("e", "request an edit: type the instruction, Enter sends"), ("u", "reset to pending"),
    ("A", "approve every output of the SKU"), ("m", "fix the SKU's mask"), ("n / p", "next / previous page"),
    ("/", "search SKUs"), ("Esc", "leave a text box"), ("?", "this help"),
]


def _url(query: ReviewQuery, **changes: Any) -> str:
    params = query.params(**changes)
    return "/?" + urlencode(params) if params else "/"


def _counts_html(query: ReviewQuery, counts: dict[str, int]) -> str:
    links = []
    for s in FILTERS:
        cls = ' class="active"' if s == query.status else ""
        links.append(f'<a href="{esc(_url(query, status=s, page=1))}" data-filter="{esc(s)}"{cls}>{esc(s)} '
                     f'<span class="n" data-count="{esc(s)}">{counts.get(s, 0)}</span></a>')
    return f'<nav class="counts" aria-label="Filter by status">{"".join(links)}</nav>'


def _find_form(query: ReviewQuery, engines: list[str], marketplaces: list[str]) -> str:
    def select(name: str, values: list[str], current: str | None, label: str) -> str:
        opts = [f'<option value="">{esc(label)}: any</option>'] + [
            f'<option value="{esc(v)}"{" selected" if v == current else ""}>{esc(v)}</option>' for v in values]
        return f'<select name="{esc(name)}" aria-label="{esc(label)}">{"".join(opts)}</select>'

    return (
        '<form class="find" role="search" action="/" method="get">'
        f'<input type="hidden" name="status" value="{esc(query.status)}">'
        f'<input type="search" name="q" value="{esc(query.q)}" placeholder="Search SKU (/)" aria-label="Search SKU">'
        f'{select("engine", engines, query.engine, "engine")}'
        f'{select("marketplace", marketplaces, query.marketplace, "marketplace")}'
        '<button type="submit">Show</button></form>'
    )


def _keys_html() -> str:
    short = " · ".join(f"<kbd>{esc(k)}</kbd> {esc(v.split(':')[0])}" for k, v in KEYS[:8])
    full = "".join(f"<dt><kbd>{esc(k)}</kbd></dt><dd>{esc(v)}</dd>" for k, v in KEYS)
    return (f'<p class="keys" data-role="keys">Keys: {short} · <kbd>?</kbd> more</p>'
            f'<div id="help" role="dialog" aria-label="Keyboard shortcuts"><dl class="facts">{full}</dl></div>')


def _sku_tools(f: SkuFacts, has_outputs: bool) -> str:
    parts = []
    if has_outputs:
        parts.append('<button type="button" data-sku-action="approve-all" title="Approve every output (A)">'
                     "Approve all</button>")
        parts.append(f'<a href="/mask/{esc(quote(f.sku, safe=""))}" data-role="fix-mask">Fix mask (m)</a>')
    if f.flags:
        parts.append(f'<span class="flags" data-role="flags">flags: {esc(", ".join(f.flags))}</span>')
    parts.append('<output class="msg" data-role="sku-msg" aria-live="polite"></output>')
    return f'<div class="sku-tools">{"".join(parts)}</div>'


def _failure(f: SkuFacts) -> str:
    if f.error is None:
        return ""
    return f'<p class="error" data-role="failure">Failed: {esc(f.error)}</p>'


def _mask_edits(catalog: Path) -> dict[str, dict[str, Any]]:
    """The latest ``mask-edit`` event per SKU from the decisions file (empty if unreadable)."""
    from pipelines.catalog.review import read_decisions

    try:
        return {e["sku"]: e for e in read_decisions(catalog) if e["event"] == "mask-edit"}
    except InputError:
        return {}


def _mask_note(m: dict[str, Any], edit: dict[str, Any] | None) -> str:
    """A line saying a painted mask waits for a re-render (the event is newer than the rendering)."""
    if not edit or str(edit.get("created_at") or "") <= str(m.get("created_at") or ""):
        return ""
    by = f" by {edit['reviewer']}" if edit.get("reviewer") else ""
    return (f'<p class="flags" data-role="mask-edit">Mask painted {esc(edit["created_at"])}{esc(by)} '
            f'({esc(edit.get("mask"))}): run vitrine run to re-render this SKU from it.</p>')


def _section(catalog: Path, index: int, f: SkuFacts, mask_edit: dict[str, Any] | None = None) -> str:
    links = server_links()
    m = None
    if f.has_manifest:
        try:
            m = read_manifest(catalog / f.sku / MANIFEST_NAME)
        except InputError as exc:
            f = SkuFacts(**{**f.__dict__, "error": str(exc), "has_manifest": False})
    if m is None:
        return (f'<section class="sku failed" id="sku-{index}" data-sku="{esc(f.sku)}">'
                f'<h2>{esc(f.sku)} <span class="badge status-failed" data-role="sku-status">failed</span></h2>'
                f"{_failure(f)}</section>")
    html = sku_section(links, index, f.sku, m, True)
    # The tool bar (and the failure of the latest run, if any) go right under the SKU's heading; catalog
    # text is escaped, so the first "</h2>" is the section's own.
    tools = _failure(f) + _sku_tools(f, bool(f.output_statuses)) + _mask_note(m, mask_edit)
    return html.replace("</h2>", "</h2>" + tools, 1)


def render_live_page(catalog_dir: str | Path, index: CatalogIndex, query: ReviewQuery, *, token: str) -> str:
    """The live review page for one `ReviewQuery` (one page of SKUs).

    Args:
        catalog_dir (`str | Path`): the catalog root.
        index (`CatalogIndex`): the catalog's index (kept by the server between requests).
        query (`ReviewQuery`): filters and page.
        token (`str`): the server's CSRF token, embedded for the script.

    Returns:
        `str`: the HTML page.
    """
    catalog = Path(catalog_dir).resolve()
    page = index.query(query)
    try:
        pending_edits: int | str = len(pending_edit_requests(catalog))
    except InputError as exc:
        pending_edits = f"unknown ({exc})"
    first = (page.page - 1) * query.per_page
    edits = _mask_edits(catalog)
    sections = "".join(_section(catalog, first + i, f, edits.get(f.sku)) for i, f in enumerate(page.skus))
    prev_link = (f'<a href="{esc(_url(query, page=page.page - 1))}" rel="prev" data-role="prev">previous</a>'
                 if page.page > 1 else "")
    next_link = (f'<a href="{esc(_url(query, page=page.page + 1))}" rel="next" data-role="next">next</a>'
                 if page.page < page.pages else "")
    shown = f"{first + 1}-{first + len(page.skus)}" if page.skus else "0"
    pager = (f'<nav class="pages" aria-label="Pages">{prev_link}<span>page {page.page} of {page.pages} '
             f"(SKUs {shown} of {page.total})</span>{next_link}</nav>")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>Vitrine review: {esc(catalog.name)}</title>'
        f'<meta name="vitrine-token" content="{esc(token)}">'
        '<link rel="stylesheet" href="/static/review.css"><script src="/static/review.js" defer></script></head>'
        f'<body data-page="review" data-per-page="{query.per_page}"><header class="page">'
        f'<h1>Vitrine catalog review</h1><span class="where">{esc(catalog)}</span>'
        f'<span class="where">pending edit requests: <span data-role="pending-edits">{esc(pending_edits)}</span></span>'
        f"{_counts_html(query, page.counts)}{_find_form(query, page.engines, page.marketplaces)}{_keys_html()}"
        "</header>"
        f"<main>{pager}{sections or '<p>No SKUs match.</p>'}{pager if page.skus else ''}</main></body></html>\n"
    )


def render_mask_page(catalog_dir: str | Path, sku: str, *, token: str, has_override: bool = False) -> str:
    """The mask brush page of one SKU: its main input photo, the current mask, and the brush.

    With ``has_override`` the brush starts from the SKU's saved override (``GET /mask/<sku>/override.png``),
    so saving again keeps the earlier strokes.

    Raises:
        `InputError`: no catalog entry, or its manifest lists no image input with a normalized copy.
    """
    from pipelines.catalog.mask_edit import main_input

    catalog = Path(catalog_dir).resolve()
    m = read_manifest(catalog / sku / MANIFEST_NAME)
    inp = main_input(m, catalog / sku / MANIFEST_NAME)
    links = server_links()
    mask = next((s.get("mask") for s in m.get("subjects") or [] if s.get("input") == inp["file"]), None)
    w, h = inp["source_size"]
    overlay = (f'<img class="overlay" alt="current mask" src="{esc(links.full(sku, mask))}">' if mask else "")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>Mask: {esc(sku)}</title>'
        f'<meta name="vitrine-token" content="{esc(token)}">'
        '<link rel="stylesheet" href="/static/review.css"><script src="/static/review.js" defer></script></head>'
        f'<body data-page="mask" data-sku="{esc(sku)}" data-width="{int(w)}" data-height="{int(h)}" '
        f'data-override="{"1" if has_override else ""}">'
        f'<header class="page"><h1>Fix the mask of {esc(sku)}</h1><span class="where">{esc(inp["file"])}, '
        f'{int(w)}x{int(h)}</span> <a href="/?q={esc(quote(sku, safe=""))}">back to the review</a>'
        '<p class="keys">Paint <b>include</b> (white: always product), <b>exclude</b> (black: never product) or '
        "<b>keep</b> (grey: the model decides). Save writes masks/product.png in the product folder; the next "
        "<code>vitrine run</code> re-renders the SKU from it. Keys: <kbd>i</kbd> include · <kbd>x</kbd> exclude · "
        "<kbd>g</kbd> keep · <kbd>[</kbd>/<kbd>]</kbd> brush size · <kbd>Ctrl+Z</kbd> undo · <kbd>s</kbd> save</p>"
        "</header><main>"
        '<div class="mask-tools">'
        '<label><input type="radio" name="mode" value="include" checked> include</label>'
        '<label><input type="radio" name="mode" value="exclude"> exclude</label>'
        '<label><input type="radio" name="mode" value="keep"> keep model</label>'
        '<label>brush <input type="range" name="size" min="2" max="200" value="24"> '
        '<span data-role="size">24</span> px</label>'
        '<button type="button" data-mask-action="undo">Undo</button>'
        '<button type="button" data-mask-action="clear">Clear</button>'
        '<button type="button" data-mask-action="save">Save mask</button>'
        '<output class="msg" data-role="mask-msg" aria-live="polite"></output></div>'
        f'<div class="mask-stage"><img class="photo" alt="input photo" src="{esc(links.full(sku, inp["normalized"]))}">'
        f"{overlay}"
        f'<canvas class="view" width="{int(w)}" height="{int(h)}"></canvas></div>'
        "</main></body></html>\n"
    )


LIVE_SCRIPT = r"""
"use strict";
(function () {
  var meta = document.querySelector('meta[name="vitrine-token"]');
  var token = meta ? meta.getAttribute("content") : "";
  var STATUSES = ["pending", "approved", "rejected", "edit-requested", "needs-attention", "failed"];

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Vitrine-Token": token },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, error: "HTTP " + r.status }; })
        .then(function (data) {
          if (!r.ok || !data.ok) throw new Error(data.error || "HTTP " + r.status);
          return data;
        });
    });
  }

  // ------------------------------------------------------------------ the review page
  function setBadge(el, status) {
    if (!el) return;
    STATUSES.forEach(function (s) { el.classList.remove("status-" + s); });
    el.classList.add("status-" + status);
    el.textContent = status;
  }
  function setText(card, role, label, value) {
    var el = card.querySelector('[data-role="' + role + '"]');
    if (el) el.textContent = value ? label + value : "";
  }
  function setCounts(counts) {
    if (!counts) return;
    Object.keys(counts).forEach(function (k) {
      var el = document.querySelector('[data-count="' + k + '"]');
      if (el) el.textContent = String(counts[k]);
    });
  }
  function applyResult(card, data) {
    var review = data.output_review;
    card.setAttribute("data-status", review.status);
    card.setAttribute("data-sha256", card.getAttribute("data-sha256"));
    setBadge(card.querySelector('[data-role="output-status"]'), review.status);
    setText(card, "note", "Note: ", review.note);
    setText(card, "instruction", "Edit instruction: ", review.instruction);
    setText(card, "updated", "Decided ", review.updated_at + (review.reviewer ? " by " + review.reviewer : ""));
    var section = card.closest("section.sku");
    if (section) setBadge(section.querySelector('[data-role="sku-status"]'), data.sku_review.status);
    setCounts(data.counts);
    if (data.pending_edits !== undefined) {
      var pe = document.querySelector('[data-role="pending-edits"]');
      if (pe) pe.textContent = String(data.pending_edits);
    }
  }
  function decide(card, action) {
    var msg = card.querySelector(".msg");
    var note = card.querySelector('textarea[name="note"]').value;
    var instruction = card.querySelector('textarea[name="instruction"]').value;
    var body = { sku: card.getAttribute("data-sku"), output: card.getAttribute("data-output"),
                 expected_sha256: card.getAttribute("data-sha256"), action: action };
    if (note.trim()) body.note = note;
    if (action === "request-edit") body.instruction = instruction;
    msg.classList.remove("error");
    var missing = action === "reject" && !note.trim() ? "Write a note saying why, then reject."
      : action === "request-edit" && !instruction.trim() ? "Write the edit instruction first." : "";
    if (missing) {
      msg.classList.add("error"); msg.textContent = missing;
      card.querySelector('textarea[name="' + (action === "reject" ? "note" : "instruction") + '"]').focus();
      return Promise.resolve(false);
    }
    var buttons = card.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    msg.textContent = "Saving...";
    return post("/api/decision", body).then(function (data) {
      applyResult(card, data);
      msg.textContent = "Saved: " + data.output_review.status + ".";
      return true;
    }).catch(function (err) {
      msg.classList.add("error");
      msg.textContent = "Not saved: " + err.message;
      return false;
    }).then(function (ok) {
      buttons.forEach(function (b) { b.disabled = false; });
      return ok;
    });
  }
  function approveAll(section) {
    var cards = Array.prototype.slice.call(section.querySelectorAll("article[data-output]"));
    var msg = section.querySelector('[data-role="sku-msg"]');
    var todo = cards.filter(function (c) { return c.getAttribute("data-status") !== "approved"; });
    if (msg) { msg.classList.remove("error"); msg.textContent = "Approving " + todo.length + "..."; }
    var chain = Promise.resolve(0);
    todo.forEach(function (c) {
      chain = chain.then(function (n) { return decide(c, "approve").then(function (ok) { return n + (ok ? 1 : 0); }); });
    });
    return chain.then(function (n) {
      if (!msg) return;
      msg.textContent = "Approved " + n + " of " + todo.length + ".";
      if (n < todo.length) msg.classList.add("error");
    });
  }

  var current = null;
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("article[data-output]")); }
  function select(card) {
    if (current) current.classList.remove("current");
    current = card;
    if (!card) return;
    card.classList.add("current");
    card.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    var all = cards();
    if (!all.length) return;
    var i = current ? all.indexOf(current) : -1;
    select(all[Math.max(0, Math.min(all.length - 1, i < 0 ? 0 : i + step))]);
  }
  function go(rel) {
    var a = document.querySelector('nav.pages a[rel="' + rel + '"]');
    if (a) window.location.href = a.href;
  }

  function initReview() {
    document.addEventListener("click", function (ev) {
      var btn = ev.target.closest("button[data-action]");
      if (btn) {
        var card = btn.closest("article[data-output]");
        select(card);
        decide(card, btn.getAttribute("data-action"));
        return;
      }
      var tool = ev.target.closest('button[data-sku-action="approve-all"]');
      if (tool) approveAll(tool.closest("section.sku"));
      var art = ev.target.closest("article[data-output]");
      if (art && art !== current && !ev.target.closest("a")) select(art);
    });
    document.addEventListener("keydown", function (ev) {
      var t = ev.target;
      if (t && t.tagName === "TEXTAREA") {
        var card = t.closest("article[data-output]");
        if (ev.key === "Escape") { t.blur(); ev.preventDefault(); return; }
        if (ev.key === "Enter" && !ev.shiftKey && card) {
          ev.preventDefault();
          decide(card, t.name === "note" ? "reject" : "request-edit").then(function (ok) { if (ok) t.blur(); });
        }
        return;
      }
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT")) {
        if (ev.key === "Escape") t.blur();
        return;
      }
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var k = ev.key;
      if (k === "?") { document.getElementById("help").classList.toggle("open"); ev.preventDefault(); return; }
      if (k === "/") { var s = document.querySelector('form.find input[name="q"]'); if (s) { s.focus(); s.select(); } ev.preventDefault(); return; }
      if (k === "j" || k === "ArrowDown" && ev.shiftKey) { move(1); ev.preventDefault(); return; }
      if (k === "k" || k === "ArrowUp" && ev.shiftKey) { move(-1); ev.preventDefault(); return; }
      if (k === "n") { go("next"); return; }
      if (k === "p") { go("prev"); return; }
      if (!current) { if ("aruAem".indexOf(k) >= 0) move(1); if (!current) return; }
      if (k === "a") { decide(current, "approve"); ev.preventDefault(); }
      else if (k === "u") { decide(current, "reset"); ev.preventDefault(); }
      else if (k === "r") { current.querySelector('textarea[name="note"]').focus(); ev.preventDefault(); }
      else if (k === "e") { current.querySelector('textarea[name="instruction"]').focus(); ev.preventDefault(); }
      else if (k === "A") { approveAll(current.closest("section.sku")); ev.preventDefault(); }
      else if (k === "m") {
        var fix = current.closest("section.sku").querySelector('[data-role="fix-mask"]');
        if (fix) window.location.href = fix.href;
      }
    });
    var form = document.querySelector("form.find");
    if (form) form.addEventListener("submit", function (ev) {
      // The policy forbids form submission; build the URL here, leaving out empty fields.
      ev.preventDefault();
      var params = new URLSearchParams();
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && el.value && !(el.name === "status" && el.value === "all")) params.set(el.name, el.value);
      });
      var qs = params.toString();
      window.location.href = "/" + (qs ? "?" + qs : "");
    });
  }

  // ------------------------------------------------------------------ the mask brush page
  function initMask() {
    var body = document.body;
    var W = parseInt(body.getAttribute("data-width"), 10), H = parseInt(body.getAttribute("data-height"), 10);
    var view = document.querySelector("canvas.view");
    var vctx = view.getContext("2d");
    var data = document.createElement("canvas");  // what is saved: grey = keep, white = include, black = exclude
    data.width = W; data.height = H;
    var dctx = data.getContext("2d");
    dctx.fillStyle = "rgb(128,128,128)"; dctx.fillRect(0, 0, W, H);
    var stage = document.querySelector(".mask-stage");
    function fit() {  // as large as fits: up to the page's width and the viewport's height
      var room = Math.max(200, window.innerHeight - stage.getBoundingClientRect().top - 16);
      stage.style.width = Math.max(120, Math.min(stage.parentNode.clientWidth, 1200, room * W / H)) + "px";
    }
    fit();
    window.addEventListener("resize", fit);
    var msg = document.querySelector('[data-role="mask-msg"]');
    var sizeInput = document.querySelector('input[name="size"]');
    var undo = [];
    if (body.getAttribute("data-override") === "1") {  // start from the saved override: keep earlier strokes
      var prev = new Image();
      prev.onload = function () {
        dctx.drawImage(prev, 0, 0, W, H);
        var d = dctx.getImageData(0, 0, W, H), v = vctx.createImageData(W, H);
        for (var i = 0; i < d.data.length; i += 4) {
          var g = d.data[i];
          if (g >= 224) { v.data[i + 1] = 200; v.data[i + 3] = 255; }
          else if (g <= 31) { v.data[i] = 220; v.data[i + 3] = 255; }
        }
        vctx.putImageData(v, 0, 0);
        body.setAttribute("data-override-loaded", "1");
      };
      prev.src = "/mask/" + encodeURIComponent(body.getAttribute("data-sku")) + "/override.png";
    }
    var COLORS = { include: ["rgb(255,255,255)", "rgb(0,200,0)"], exclude: ["rgb(0,0,0)", "rgb(220,0,0)"],
                   keep: ["rgb(128,128,128)", null] };
    function mode() { return document.querySelector('input[name="mode"]:checked').value; }
    function size() { return parseInt(sizeInput.value, 10) * Math.max(W, H) / Math.max(view.clientWidth, 1); }
    function pos(ev) {
      var r = view.getBoundingClientRect();
      return [(ev.clientX - r.left) * W / r.width, (ev.clientY - r.top) * H / r.height];
    }
    function stroke(ctx, color, erase, a, b) {
      ctx.save();
      ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
      ctx.strokeStyle = erase ? "rgba(0,0,0,1)" : color;
      ctx.lineWidth = size(); ctx.lineCap = "round"; ctx.lineJoin = "round";
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0] + 0.01, b[1]); ctx.stroke();
      ctx.restore();
    }
    var last = null;
    function paint(p) {
      var c = COLORS[mode()];
      stroke(dctx, c[0], false, last || p, p);
      stroke(vctx, c[1], c[1] === null, last || p, p);
      last = p;
    }
    view.addEventListener("pointerdown", function (ev) {
      ev.preventDefault();
      undo.push([dctx.getImageData(0, 0, W, H), vctx.getImageData(0, 0, W, H)]);
      if (undo.length > 30) undo.shift();
      if (view.setPointerCapture) view.setPointerCapture(ev.pointerId);
      last = null; paint(pos(ev));
    });
    view.addEventListener("pointermove", function (ev) { if (last) paint(pos(ev)); });
    function end() { last = null; }
    view.addEventListener("pointerup", end); view.addEventListener("pointercancel", end);
    function doUndo() {
      var u = undo.pop();
      if (!u) return;
      dctx.putImageData(u[0], 0, 0); vctx.putImageData(u[1], 0, 0);
    }
    function clear() {
      undo.push([dctx.getImageData(0, 0, W, H), vctx.getImageData(0, 0, W, H)]);
      dctx.fillStyle = "rgb(128,128,128)"; dctx.fillRect(0, 0, W, H); vctx.clearRect(0, 0, W, H);
    }
    function save() {
      msg.classList.remove("error"); msg.textContent = "Saving...";
      var b64 = data.toDataURL("image/png").split(",")[1];
      return post("/api/mask", { sku: body.getAttribute("data-sku"), mask_png: b64 }).then(function (res) {
        msg.textContent = "Saved " + res.mask + ". Run vitrine run to re-render this SKU.";
      }).catch(function (err) { msg.classList.add("error"); msg.textContent = "Not saved: " + err.message; });
    }
    sizeInput.addEventListener("input", function () {
      document.querySelector('[data-role="size"]').textContent = sizeInput.value;
    });
    document.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-mask-action]");
      if (!b) return;
      var a = b.getAttribute("data-mask-action");
      if (a === "undo") doUndo(); else if (a === "clear") clear(); else if (a === "save") save();
    });
    document.addEventListener("keydown", function (ev) {
      if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") { doUndo(); ev.preventDefault(); return; }
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var pick = { i: "include", x: "exclude", g: "keep" }[ev.key];
      if (pick) { document.querySelector('input[name="mode"][value="' + pick + '"]').checked = true; return; }
      if (ev.key === "[" || ev.key === "]") {
        sizeInput.value = String(parseInt(sizeInput.value, 10) + (ev.key === "]" ? 4 : -4));
        sizeInput.dispatchEvent(new Event("input"));
      }
      if (ev.key === "s") { save(); ev.preventDefault(); }
    });
  }

  if (document.body.getAttribute("data-page") === "mask") initMask(); else initReview();
})();
"""

"""The review page in a real headless Chromium: decisions reach the manifest and the decisions file, and
catalog text never runs as script.

Playwright drives the system Chromium (``/usr/bin/chromium``, or ``$VITRINE_CHROMIUM``); it never downloads
a browser. Without one the tests are skipped, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.review import HOSTILE_TITLE, build_review_catalog

from pipelines.catalog.manifest import read_manifest
from pipelines.catalog.review import decisions_path, pending_edit_requests

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def _chromium() -> str | None:
    for candidate in (os.environ.get("VITRINE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        message = "no system Chromium (apt install chromium, or set VITRINE_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def catalog(tmp_path):
    return build_review_catalog(tmp_path)


@pytest.fixture
def server(catalog):
    from pipelines.review_ui.server import ReviewServer

    srv = ReviewServer(catalog, "127.0.0.1", 0, reviewer="browser-test")
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.problems = problems
    yield pg
    context.close()


def card(page, sku, output):
    return page.locator(f'article[data-sku="{sku}"][data-output="{output}"]')


def decide(page, sku, output, action, *, note=None, instruction=None):
    c = card(page, sku, output)
    if note is not None:
        c.locator('textarea[name="note"]').fill(note)
    if instruction is not None:
        c.locator('textarea[name="instruction"]').fill(instruction)
    c.locator(f'button[data-action="{action}"]').click()
    c.locator(".msg", has_text="Saved").wait_for()
    return c


def output_review(catalog, sku, output):
    m = read_manifest(catalog / sku / "manifest.json")
    return next(o for o in m["outputs"] if o["file"] == output)["review"], m["review"]


def test_review_in_a_real_browser(page, server, catalog):
    page.goto(server.url)
    # The hostile title shows as text and nothing ran.
    assert page.locator("section.sku[data-sku='tee-navy'] p.title").inner_text() == HOSTILE_TITLE
    assert page.evaluate("typeof window.__vitrine_xss") == "undefined"
    assert page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0).length") == 0
    assert not decisions_path(catalog).exists()

    # Approve one output.
    c = decide(page, "tee-navy", "main.png", "approve")
    assert c.locator('[data-role="output-status"]').inner_text() == "approved"
    review, _ = output_review(catalog, "tee-navy", "main.png")
    assert review["status"] == "approved" and review["reviewer"] == "browser-test"
    assert output_review(catalog, "tee-navy", "main.jpg")[0]["status"] == "approved"

    # Reject one with a note (hostile text, too). Without a note, nothing is sent.
    c = card(page, "tee-navy", "lifestyle-studio-s0.png")
    c.locator('button[data-action="reject"]').click()
    c.locator(".msg.error", has_text="note").wait_for()
    assert output_review(catalog, "tee-navy", "lifestyle-studio-s0.png")[0]["status"] == "pending"
    note = '<img src=x onerror="window.__vitrine_xss = 3"> shadow looks fake'
    c = decide(page, "tee-navy", "lifestyle-studio-s0.png", "reject", note=note)
    assert c.locator('[data-role="note"]').inner_text() == f"Note: {note}"
    review, sku_review = output_review(catalog, "tee-navy", "lifestyle-studio-s0.png")
    assert review["status"] == "rejected" and review["note"] == note and sku_review["status"] == "rejected"
    assert page.locator("section.sku[data-sku='tee-navy'] [data-role='sku-status']").inner_text() == "rejected"

    # Request an edit with an instruction.
    decide(page, "tote-canvas", "main.png", "request-edit", instruction="remove the floor shadow")
    review, sku_review = output_review(catalog, "tote-canvas", "main.png")
    assert review["status"] == "edit-requested" and review["instruction"] == "remove the floor shadow"
    assert sku_review["status"] == "edit-requested"

    # The decisions file has the three decisions, in order; the edit flow sees the request.
    events = [json.loads(line) for line in decisions_path(catalog).read_text().splitlines()]
    assert [(e["sku"], e["output"], e["action"]) for e in events] == [
        ("tee-navy", "main.png", "approve"),
        ("tee-navy", "lifestyle-studio-s0.png", "reject"),
        ("tote-canvas", "main.png", "request-edit"),
    ]
    assert all(e["source"] == "review-server" for e in events)
    [req] = pending_edit_requests(catalog)
    assert (req.sku, req.output, req.instruction) == ("tote-canvas", "main.png", "remove the floor shadow")

    # After a reload the page shows the stored decisions, and still nothing ran.
    page.reload()
    assert card(page, "tee-navy", "lifestyle-studio-s0.png").locator('[data-role="note"]').inner_text() == f"Note: {note}"
    assert card(page, "tote-canvas", "main.png").locator('[data-role="output-status"]').inner_text() == "edit-requested"
    assert page.evaluate("typeof window.__vitrine_xss") == "undefined"
    assert page.problems == []


def test_forged_request_from_the_page_without_token_fails(page, server, catalog):
    page.goto(server.url)
    status = page.evaluate("""async () => {
        const r = await fetch('/api/decision', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({sku: 'tee-navy', output: 'main.png', action: 'approve'})});
        return r.status; }""")
    assert status == 403
    assert not decisions_path(catalog).exists()


def test_static_export_opens_from_disk(page, catalog, tmp_path):
    from pipelines.catalog.review import record_decision
    from pipelines.review_ui.page import export_static

    record_decision(catalog, "tee-navy", "main.png", "reject", note="<script>window.__vitrine_xss = 4</script>")
    index = export_static(catalog, catalog / "_review" / "site")
    page.goto(index.as_uri())
    assert page.locator("section.sku[data-sku='tee-navy'] p.title").inner_text() == HOSTILE_TITLE
    assert "window.__vitrine_xss = 4" in card(page, "tee-navy", "main.png").locator('[data-role="note"]').inner_text()
    assert page.locator("button").count() == 0, "the export is read-only"
    page.wait_for_load_state("load")
    n_images = page.evaluate("document.images.length")
    broken = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0).length")
    assert n_images > 5 and broken == 0
    assert page.evaluate("typeof window.__vitrine_xss") == "undefined"


# -- catalog scale: 300 SKUs, keyboard review, live counts, failed SKUs, mask brush ---------------------------
@pytest.fixture
def scale_server(catalog, tmp_path):
    from tests.helpers.review import build_scale_catalog

    from pipelines.review_ui.server import ReviewServer

    big = build_scale_catalog(catalog, tmp_path / "big", 300, failed=2)
    srv = ReviewServer(big, "127.0.0.1", 0, reviewer="browser-test")
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def count(page, status):
    return int(page.locator(f'[data-count="{status}"]').inner_text())


def test_300_skus_page_is_small_compact_and_keyboard_driven(page, scale_server):
    big = scale_server.catalog
    page.goto(scale_server.url)
    # One page's worth of DOM, not 300 SKUs: 20 sections, 2 reviewable outputs each.
    assert page.locator("section.sku").count() == 20
    assert page.locator("article[data-output]").count() == 40
    nodes, per_sku = page.evaluate("""() => [document.getElementsByTagName('*').length,
        Math.max(...Array.from(document.querySelectorAll('section.sku'), s => s.getElementsByTagName('*').length))]""")
    assert nodes < 20 * per_sku + 400, (nodes, per_sku)  # the page's 20 SKUs plus chrome, not 300 SKUs
    # Needs attention (flagged) first, with its flags shown.
    first = page.locator("section.sku").first
    assert first.get_attribute("data-sku") == "sku-00003" and "low-fill" in first.locator("[data-role=flags]").inner_text()
    # The sticky header is compact: at most a quarter of the viewport, also after scrolling.
    header_h = page.evaluate("document.querySelector('header.page').getBoundingClientRect().height")
    assert header_h <= 0.25 * 900, header_h
    page.mouse.wheel(0, 4000)
    assert page.evaluate("document.querySelector('header.page').getBoundingClientRect().height") <= 0.25 * 900
    assert "j / k" in page.locator("[data-role=keys]").inner_text(), "the shortcuts are visible"
    assert (count(page, "all"), count(page, "failed"), count(page, "approved")) == (302, 2, 0)

    # Keyboard: j selects the first output, a approves it; the counts update without a reload.
    page.keyboard.press("j")
    cur = page.locator("article.output.current")
    assert cur.get_attribute("data-sku") == "sku-00003" and cur.get_attribute("data-output") == "main.png"
    page.keyboard.press("a")
    cur.locator(".msg", has_text="Saved").wait_for()
    out = {o["file"]: o for o in read_manifest(big / "sku-00003" / "manifest.json")["outputs"]}
    assert out["main.png"]["review"]["status"] == "approved" and out["main.png"]["review"]["reviewer"] == "browser-test"
    # j then r: type a note, Enter rejects with it.
    page.keyboard.press("j")
    page.keyboard.press("r")
    page.keyboard.type("halo on the sleeve")
    page.keyboard.press("Enter")
    cur = page.locator("article.output.current")
    assert cur.get_attribute("data-output") == "lifestyle-studio-s0.png"
    cur.locator(".msg", has_text="Saved").wait_for()
    out = {o["file"]: o for o in read_manifest(big / "sku-00003" / "manifest.json")["outputs"]}
    assert out["lifestyle-studio-s0.png"]["review"] == {**out["lifestyle-studio-s0.png"]["review"],
                                                        "status": "rejected", "note": "halo on the sleeve"}
    assert count(page, "rejected") == 1 and page.locator(
        "section.sku[data-sku='sku-00003'] [data-role='sku-status']").inner_text() == "rejected"
    # j, e: an edit request with an instruction.
    page.keyboard.press("j")
    page.keyboard.press("e")
    page.keyboard.type("warmer light")
    page.keyboard.press("Enter")
    page.locator("article.output.current .msg", has_text="Saved").wait_for()
    assert count(page, "edit-requested") == 1
    sku2 = page.locator("article.output.current").get_attribute("data-sku")
    # A: approve every output of the current SKU (the edit request becomes an approval).
    page.keyboard.press("A")
    page.locator(f"section.sku[data-sku='{sku2}'] [data-role=sku-msg]", has_text="Approved 2 of 2").wait_for()
    m = read_manifest(big / sku2 / "manifest.json")
    assert m["review"]["status"] == "approved" and count(page, "edit-requested") == 0
    assert [json.loads(x)["action"] for x in decisions_path(big).read_text().splitlines()] == [
        "approve", "reject", "request-edit", "approve", "approve"]

    # Next page by key; then the failed SKUs with their errors from the latest report.
    page.keyboard.press("n")
    page.wait_for_url("**page=2**")
    assert page.locator("section.sku").count() == 20
    page.goto(scale_server.url + "?status=failed")
    assert page.locator("section.sku").count() == 2
    assert page.locator("section.sku[data-sku='bad-00001'] [data-role=failure]").inner_text() == (
        "Failed: bad-00001/front.jpg: cannot read image")
    # Search by SKU (/ focuses the box; Enter shows the matches).
    page.goto(scale_server.url)
    page.keyboard.press("/")
    page.keyboard.type("sku-0029")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=sku-0029**")
    assert sorted(s.get_attribute("data-sku") for s in page.locator("section.sku").all()) == [
        f"sku-0029{i}" for i in range(10)]
    assert page.problems == []


def test_rejected_filter_shows_a_rejected_output_of_an_edit_requested_sku(page, server, catalog):
    from pipelines.catalog.review import record_decision

    record_decision(catalog, "tee-navy", "main.png", "reject", note="halo")
    record_decision(catalog, "tee-navy", "lifestyle-studio-s0.png", "request-edit", instruction="warmer")
    page.goto(server.url + "?status=rejected")
    assert [s.get_attribute("data-sku") for s in page.locator("section.sku").all()] == ["tee-navy"]
    assert page.locator("section.sku [data-role='sku-status']").inner_text() == "edit-requested"


def test_mask_brush_paints_and_saves_the_override(page, catalog):
    from PIL import Image

    from pipelines.review_ui.server import ReviewServer

    products = catalog.parent / "products"
    srv = ReviewServer(catalog, "127.0.0.1", 0, reviewer="browser-test", products_dir=products)
    srv.start_in_thread()
    try:
        page.goto(srv.url)
        card(page, "tee-navy", "main.png").click()
        page.keyboard.press("m")
        page.wait_for_url("**/mask/tee-navy")
        canvas = page.locator("canvas.view")
        box = canvas.bounding_box()
        sx, sy = box["width"] / 256, box["height"] / 256  # page pixels per photo pixel

        def stroke(x0, y0, x1, y1):
            page.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sy)
            page.mouse.down()
            for t in (0.25, 0.5, 0.75, 1.0):
                page.mouse.move(box["x"] + (x0 + (x1 - x0) * t) * sx, box["y"] + (y0 + (y1 - y0) * t) * sy)
            page.mouse.up()

        page.locator('input[name="size"]').fill("20")
        stroke(40, 60, 200, 60)  # include: a horizontal band at y=60
        page.keyboard.press("x")
        stroke(128, 150, 128, 240)  # exclude: a vertical band at x=128
        stroke(20, 20, 20, 240)  # a mistake ...
        page.keyboard.press("Control+z")  # ... undone
        page.locator('button[data-mask-action="save"]').click()
        page.locator('[data-role="mask-msg"]', has_text="Saved").wait_for()
        mask = np.asarray(Image.open(products / "tee-navy" / "masks" / "product.png"))
        assert mask.shape == (256, 256)
        assert mask[60, 60] == 255 and mask[60, 190] == 255, "include painted white"
        assert mask[200, 128] == 0, "exclude painted black"
        assert mask[200, 20] == 128 and mask[5, 5] == 128, "undone stroke and unpainted area keep the model's"
        events = [json.loads(x) for x in decisions_path(catalog).read_text().splitlines()]
        assert [e["event"] for e in events] == ["mask-edit"] and events[0]["reviewer"] == "browser-test"

        # A second session starts from the saved override: its strokes are kept, new ones added.
        page.reload()
        page.locator("body[data-override-loaded='1']").wait_for()
        box = page.locator("canvas.view").bounding_box()
        page.keyboard.press("x")
        stroke(20, 100, 20, 200)
        page.keyboard.press("s")
        page.locator('[data-role="mask-msg"]', has_text="Saved").wait_for()
        again = np.asarray(Image.open(products / "tee-navy" / "masks" / "product.png"))
        assert again[60, 60] == 255 and again[200, 128] == 0, "the first session's strokes are kept"
        assert again[150, 20] == 0 and again[5, 5] == 128
        assert len(decisions_path(catalog).read_text().splitlines()) == 2
        assert page.problems == []
    finally:
        srv.shutdown()
        srv.server_close()

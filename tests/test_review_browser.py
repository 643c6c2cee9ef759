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

import pytest
from review_helpers import HOSTILE_TITLE, build_review_catalog

from pipelines.manifest import read_manifest
from pipelines.review import decisions_path, pending_edit_requests

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
    from pipelines.review_server import ReviewServer

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
    from pipelines.review import record_decision
    from pipelines.review_page import export_static

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

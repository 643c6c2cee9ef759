"""Review decisions, the decisions file, the review server (over HTTP, no browser), the static export,
contact sheets and the ``vitrine review`` command."""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.review import HOSTILE_TITLE, build_review_catalog, copy_catalog

from pipelines.catalog.store import sku_lock
from pipelines.errors import InputError
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.catalog.review import (
    DECISIONS_NAME,
    REVIEW_DIR,
    ReviewConflictError,
    decisions_path,
    pending_edit_requests,
    read_decisions,
    record_decision,
    record_edit_result,
    review_summary,
    sku_review_status,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_review_catalog(tmp_path_factory.mktemp("review-template"))


@pytest.fixture
def catalog(template, tmp_path):
    return copy_catalog(template, tmp_path / "catalog")


def outputs_by_file(catalog: Path, sku: str) -> dict:
    return {o["file"]: o for o in read_manifest(catalog / sku / "manifest.json")["outputs"]}


# -- decisions -----------------------------------------------------------------------------------------
def test_approve_writes_manifest_and_decisions_file(catalog):
    d = record_decision(catalog, "tee-navy", "main.png", "approve", reviewer="ana")
    manifest = read_manifest(catalog / "tee-navy" / "manifest.json")
    validate_manifest(manifest)
    outs = {o["file"]: o for o in manifest["outputs"]}
    assert outs["main.png"]["review"]["status"] == "approved"
    assert outs["main.png"]["review"]["decision_id"] == d.id and outs["main.png"]["review"]["reviewer"] == "ana"
    assert outs["main.jpg"]["review"]["status"] == "approved", "an export follows its source"
    assert outs["lifestyle-studio-s0.png"]["review"]["status"] == "pending"
    assert manifest["review"]["status"] == "pending" and manifest["review"]["updated_at"] == d.created_at

    path = catalog / REVIEW_DIR / DECISIONS_NAME
    assert path == decisions_path(catalog)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event == {
        "v": 1, "event": "decision", "id": d.id, "created_at": d.created_at, "sku": "tee-navy", "output": "main.png",
        "output_sha256": outs["main.png"]["sha256"], "derived": ["main.jpg"], "action": "approve",
        "status": "approved", "note": None, "instruction": None, "reviewer": "ana", "source": "api",
    }
    assert not [p for p in path.parent.iterdir() if p.name != DECISIONS_NAME], "no temporary files left"

    record_decision(catalog, "tee-navy", "lifestyle-studio-s0.png", "approve")
    assert read_manifest(catalog / "tee-navy" / "manifest.json")["review"]["status"] == "approved"
    assert len(read_decisions(catalog)) == 2


def test_reject_and_edit_request_need_their_text(catalog):
    with pytest.raises(InputError, match="note"):
        record_decision(catalog, "tee-navy", "main.png", "reject")
    with pytest.raises(InputError, match="note"):
        record_decision(catalog, "tee-navy", "main.png", "reject", note="   ")
    with pytest.raises(InputError, match="instruction"):
        record_decision(catalog, "tee-navy", "main.png", "request-edit", note="hm")
    with pytest.raises(InputError, match="instruction"):
        record_decision(catalog, "tee-navy", "main.png", "approve", instruction="warmer")
    with pytest.raises(InputError, match="limit"):
        record_decision(catalog, "tee-navy", "main.png", "reject", note="x" * 5000)
    assert not decisions_path(catalog).exists(), "a refused decision writes nothing"

    d = record_decision(catalog, "tee-navy", "main.png", "reject", note="  collar cut off  ")
    assert d.note == "collar cut off" and d.status == "rejected"
    assert read_manifest(catalog / "tee-navy" / "manifest.json")["review"]["status"] == "rejected"


@pytest.mark.parametrize(("sku", "output", "action", "match"), [
    ("../tee-navy", "main.png", "approve", "must not"),
    ("no-such-sku", "main.png", "approve", "no catalog entry"),
    ("_review", "main.png", "approve", "must not start"),
    ("tee-navy", "nope.png", "approve", "has no output"),
    ("tee-navy", "../tote-canvas/main.png", "approve", "has no output"),
    ("tee-navy", "main.jpg", "approve", "export of 'main.png'"),
    ("tee-navy", "main.png", "delete", "unknown review action"),
])
def test_bad_decisions_are_refused(catalog, sku, output, action, match):
    with pytest.raises(InputError, match=match):
        record_decision(catalog, sku, output, action)


def test_changed_output_and_held_lock_are_conflicts(catalog):
    with pytest.raises(ReviewConflictError, match="changed since"):
        record_decision(catalog, "tee-navy", "main.png", "approve", expected_sha256="0" * 64)
    with sku_lock(catalog, "tee-navy"):
        with pytest.raises(ReviewConflictError, match="locked"):
            record_decision(catalog, "tee-navy", "main.png", "approve", lock_timeout=0.05)
    sha = outputs_by_file(catalog, "tee-navy")["main.png"]["sha256"]
    record_decision(catalog, "tee-navy", "main.png", "approve", expected_sha256=sha)


def test_concurrent_decisions_are_all_kept(catalog):
    outputs = [("tee-navy", "main.png"), ("tee-navy", "lifestyle-studio-s0.png"), ("tote-canvas", "main.png")]
    errors = []

    def decide(sku, output):
        try:
            for _ in range(3):
                record_decision(catalog, sku, output, "approve")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=o) for o in outputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(read_decisions(catalog)) == 9
    for sku, output in outputs:
        assert outputs_by_file(catalog, sku)[output]["review"]["status"] == "approved"


def test_sku_review_status_rules():
    def outs(*statuses):
        return [{"file": f"{i}.png", "kind": "main", "review": {"status": s}} for i, s in enumerate(statuses)]

    assert sku_review_status(outs("approved", "approved")) == "approved"
    assert sku_review_status(outs("approved", "pending")) == "pending"
    assert sku_review_status(outs("approved", "rejected", "pending")) == "rejected"
    assert sku_review_status(outs("rejected", "edit-requested")) == "edit-requested"
    export = {"file": "0.jpg", "kind": "export", "derived_from": "0.png", "review": {"status": "pending"}}
    assert sku_review_status([*outs("approved"), export]) == "approved", "exports do not count"
    assert sku_review_status([]) == "pending"


# -- pending edit requests ------------------------------------------------------------------------------
def test_pending_edit_requests_lifecycle(catalog):
    assert pending_edit_requests(catalog) == []
    first = record_decision(catalog, "tee-navy", "main.png", "request-edit", instruction="make the collar white",
                            note="collar looks grey", reviewer="ana")
    second = record_decision(catalog, "tote-canvas", "main.png", "request-edit", instruction="remove the shadow")
    reqs = pending_edit_requests(catalog)
    assert [(r.sku, r.output, r.instruction) for r in reqs] == [
        ("tee-navy", "main.png", "make the collar white"), ("tote-canvas", "main.png", "remove the shadow")]
    r = reqs[0]
    assert r.decision_id == first.id and r.note == "collar looks grey" and r.reviewer == "ana"
    assert r.derived == ("main.jpg",) and r.failed_attempts == 0
    assert r.output_sha256 == outputs_by_file(catalog, "tee-navy")["main.png"]["sha256"]
    assert read_manifest(catalog / "tee-navy" / "manifest.json")["review"]["status"] == "edit-requested"

    # A failed attempt keeps it pending; an applied one removes it.
    record_edit_result(catalog, first.id, applied=False, error="CUDA out of memory")
    assert pending_edit_requests(catalog)[0].failed_attempts == 1
    result = record_edit_result(catalog, first.id, applied=True, new_output="main.edit-1.png")
    assert result["event"] == "edit-result" and result["result"] == "applied" and result["sku"] == "tee-navy"
    assert [r.decision_id for r in pending_edit_requests(catalog)] == [second.id]

    # A later decision on the same output supersedes the request.
    record_decision(catalog, "tote-canvas", "main.png", "approve")
    assert pending_edit_requests(catalog) == []
    with pytest.raises(InputError, match="no edit request"):
        record_edit_result(catalog, "f" * 32, applied=True)


def test_stale_edit_request_is_dropped(catalog):
    record_decision(catalog, "tee-navy", "main.png", "request-edit", instruction="brighter")
    assert len(pending_edit_requests(catalog)) == 1
    # A re-render that changed the pixels: the manifest lists another sha256.
    path = catalog / "tee-navy" / "manifest.json"
    m = read_manifest(path)
    next(o for o in m["outputs"] if o["file"] == "main.png")["sha256"] = "1" * 64
    path.write_text(json.dumps(m), encoding="utf-8")
    assert pending_edit_requests(catalog) == []


def test_bad_decisions_file_names_the_line(catalog):
    record_decision(catalog, "tee-navy", "main.png", "approve")
    path = decisions_path(catalog)
    path.write_text(path.read_text() + '{"v": 1, "event": "decision"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2"):
        read_decisions(catalog, strict=True)
    assert len(read_decisions(catalog)) == 1  # the default reader skips the bad line (with a warning)
    assert pending_edit_requests(catalog) == []
    path.write_text('{"v": 2, "event": "decision"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 1.*version"):
        read_decisions(catalog, strict=True)


def test_review_summary(catalog):
    record_decision(catalog, "tee-navy", "main.png", "reject", note="no")
    record_decision(catalog, "tote-canvas", "main.png", "approve")
    s = review_summary(catalog)
    assert s["skus"] == {"pending": 0, "approved": 1, "rejected": 1, "edit-requested": 0, "needs-attention": 0}
    assert s["outputs"]["approved"] == 1 and s["outputs"]["rejected"] == 1 and s["outputs"]["pending"] == 1
    assert s["per_sku"]["tee-navy"]["status"] == "rejected" and s["pending_edits"] == 0


# -- the server, over plain HTTP -----------------------------------------------------------------------
@pytest.fixture
def server(catalog):
    from pipelines.review_ui.server import ReviewServer

    srv = ReviewServer(catalog, "127.0.0.1", 0, reviewer="tester")
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if data is not None:
            hdrs["Content-Length"] = str(len(data))
        for k, v in hdrs.items():
            if v is not None:
                conn.putheader(k, v)
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def post_decision(server, body, **headers):
    base = {"Content-Type": "application/json", "X-Vitrine-Token": server.token}
    return request(server, "POST", "/api/decision", body, {**base, **headers})


def test_page_escapes_catalog_text_and_sets_a_strict_policy(server):
    status, headers, body = request(server, "GET", "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>window.__vitrine_xss" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__vitrine_xss = 1;&lt;/script&gt;" in page
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/review.js" defer>'], "no inline script"
    assert f'content="{server.token}"' in page
    for needle in ("main.png", "lifestyle-studio-s0.png", "mediapipe", "Apache-2.0", "seeds", "Approve", "Request edit"):
        assert needle in page


@pytest.mark.parametrize("path", [
    "/files/../catalog/tee-navy/manifest.json",
    "/files/tee-navy/../../secret.json",
    "/files/tee-navy/%2e%2e/%2e%2e/secret.json",
    "/files/tee-navy/..%2f..%2fsecret.json",
    "/files/%2Fetc/passwd",
    "/files//etc/passwd.json",
    "/files/.locks/tee-navy.lock",
    "/files/tee-navy/work/..%5c..%5csecret.json",
    "/files/tee-navy/product.yaml",
    "/files/tee-navy/link-out.json",
    "/thumb/tee-navy/../../secret.png",
    "/files/tee-navy%00/main.png",
])
def test_files_outside_the_catalog_are_never_served(server, catalog, path):
    (catalog.parent / "secret.json").write_text('{"secret": true}')
    (catalog.parent / "secret.png").write_bytes(b"secret")
    (catalog / "tee-navy" / "link-out.json").symlink_to(catalog.parent / "secret.json")
    status, _h, body = request(server, "GET", path)
    assert status in (400, 404)
    assert b"secret" not in body


def test_catalog_files_and_thumbnails_are_served(server):
    status, headers, body = request(server, "GET", "/files/tee-navy/main.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
    status, headers, body = request(server, "GET", "/thumb/tee-navy/work/mask-front.png")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, headers, body = request(server, "GET", "/files/tee-navy/manifest.json")
    assert status == 200 and json.loads(body)["sku"] == "tee-navy"


def test_decision_over_http(server, catalog):
    sha = outputs_by_file(catalog, "tee-navy")["main.png"]["sha256"]
    status, _h, body = post_decision(server, {"sku": "tee-navy", "output": "main.png", "action": "request-edit",
                                              "instruction": "<b>warmer</b> light", "expected_sha256": sha},
                                     Origin=f"http://127.0.0.1:{server.port}")
    data = json.loads(body)
    assert status == 200 and data["ok"], data
    assert data["output_review"]["status"] == "edit-requested" and data["sku_review"]["status"] == "edit-requested"
    assert data["decision"]["source"] == "review-server" and data["decision"]["reviewer"] == "tester"
    assert outputs_by_file(catalog, "tee-navy")["main.png"]["review"]["instruction"] == "<b>warmer</b> light"
    [req] = pending_edit_requests(catalog)
    assert req.instruction == "<b>warmer</b> light"
    _s, _h, page = request(server, "GET", "/")
    assert b"&lt;b&gt;warmer&lt;/b&gt; light" in page and b"<b>warmer</b>" not in page

    status, _h, body = request(server, "GET", "/api/edit-requests")
    assert status == 200 and json.loads(body)["requests"][0]["decision_id"] == req.decision_id
    status, _h, body = request(server, "GET", "/api/catalog")
    assert json.loads(body)["skus"]["edit-requested"] == 1


@pytest.mark.parametrize(("headers", "body", "code"), [
    ({"X-Vitrine-Token": None}, None, 403),
    ({"X-Vitrine-Token": "wrong"}, None, 403),
    ({"Origin": "http://evil.example"}, None, 403),
    ({"Host": "evil.example:80"}, None, 403),
    ({"Content-Type": "text/plain"}, None, 415),
    ({"Content-Type": "application/x-www-form-urlencoded"}, None, 415),
    ({}, b"not json", 400),
    ({}, {"sku": "tee-navy", "output": "main.png", "action": "reject"}, 400),
    ({}, {"sku": "tee-navy", "output": "main.png", "action": "approve", "extra": 1}, 400),
    ({}, {"sku": "tee-navy", "output": "main.png", "action": "approve", "expected_sha256": "0" * 64}, 409),
    ({}, {"sku": "../x", "output": "main.png", "action": "approve"}, 400),
])
def test_bad_or_forged_decisions_are_refused(server, catalog, headers, body, code):
    before = (catalog / "tee-navy" / "manifest.json").read_bytes()
    body = body if body is not None else {"sku": "tee-navy", "output": "main.png", "action": "approve"}
    status, _h, resp = post_decision(server, body, **headers)
    assert status == code, resp
    assert (catalog / "tee-navy" / "manifest.json").read_bytes() == before
    assert not decisions_path(catalog).exists()


def test_foreign_host_header_is_refused_for_reads_too(server):
    status, _h, body = request(server, "GET", "/", headers={"Host": f"rebind.example:{server.port}"})
    assert status == 403 and b"token" not in body


# -- static export ----------------------------------------------------------------------------------------
def test_static_export_has_no_script_and_relative_links(catalog, tmp_path):
    from pipelines.review_ui.page import export_static

    record_decision(catalog, "tee-navy", "main.png", "reject", note='<script>alert("note")</script>')
    out = catalog / "_review" / "site"
    index = export_static(catalog, out)
    page = index.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "script-src &#x27;none&#x27;" in page
    assert "&lt;script&gt;window.__vitrine_xss" in page and "&lt;script&gt;alert(&quot;note&quot;)" in page
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs and all(s.startswith("thumbs/") and (out / s).is_file() for s in srcs)
    hrefs = re.findall(r'href="([^"#]+)"', page)
    assert hrefs and all(not h.startswith(("/", "http")) for h in hrefs)
    assert all((out / h).resolve().is_relative_to(catalog.resolve()) and (out / h).exists() for h in hrefs)
    with pytest.raises(InputError, match="inside a SKU folder"):
        export_static(catalog, catalog / "tee-navy" / "site")


def test_tampered_manifest_cannot_pull_outside_files_into_an_export_or_sheet(catalog, tmp_path):
    from pipelines.catalog.contact_sheet import catalog_contact_sheets
    from pipelines.imageio import save_image
    from pipelines.review_ui.page import export_static

    secret = np.full((64, 64, 3), 7, np.uint8)
    save_image(catalog.parent / "secret.png", secret)
    path = catalog / "tee-navy" / "manifest.json"
    m = read_manifest(path)
    m["outputs"][0]["file"] = "../../secret.png"
    path.write_text(json.dumps(m), encoding="utf-8")
    out = tmp_path / "site"
    page = export_static(catalog, out).read_text(encoding="utf-8")
    assert "secret" not in " ".join(re.findall(r'src="([^"]+)"', page))
    assert len(list((out / "thumbs").iterdir())) == len(set(re.findall(r'src="(thumbs/[^"]+)"', page)))
    [sheet] = catalog_contact_sheets(catalog, ["tee-navy"], cell_size=64)
    assert not (sheet == 7).all(axis=2).any()


# -- contact sheets and the report ------------------------------------------------------------------------
def test_contact_sheet_layout():
    from pipelines.catalog.contact_sheet import SheetCell, contact_sheet

    red = np.zeros((40, 80, 3), np.uint8)
    red[..., 0] = 255
    sheet = contact_sheet([[SheetCell(red, "a", "b", "approved"), SheetCell(None, "blank")], [SheetCell(red)]],
                          row_labels=["row 1", "row 2"], column_labels=["c1", "c2"], title="t", cell_size=64)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[1] == 8 + (64 + 8) * 3
    assert (sheet[..., 0] > 200).sum() > 64 * 30, "the red thumbnail is drawn"
    with pytest.raises(ValueError, match="row labels"):
        contact_sheet([[SheetCell(red)]], row_labels=["a", "b"])
    with pytest.raises(ValueError, match="at least one row"):
        contact_sheet([])


def test_batch_contact_sheet_is_written_and_linked(catalog):
    from datetime import UTC, datetime

    from pipelines.catalog.contact_sheet import attach_contact_sheets
    from pipelines.catalog.report import build_report, report_markdown, write_report

    entries = [
        {"sku": "tee-navy", "status": "ok", "error": None, "outputs": ["main.png"]},
        {"sku": "tote-canvas", "status": "skipped", "error": None, "outputs": ["main.png"]},
        {"sku": "broken", "status": "failed", "error": "bad", "outputs": []},
    ]
    report = build_report(entries, products_dir=catalog, catalog_dir=catalog, engine=None,
                          started_at=datetime.now(UTC))
    assert report["contact_sheets"] == []
    path = write_report(report, catalog)
    rel = attach_contact_sheets(report, catalog, path)
    assert rel == [f"_reports/{path.stem}.contact-sheet.png"]
    assert json.loads(path.read_text())["contact_sheets"] == rel
    from PIL import Image

    with Image.open(catalog / rel[0]) as im:
        assert im.width > 400 and im.height > 200
    md = report_markdown(report)
    assert f"({(catalog / rel[0]).resolve().as_uri()})" in md


def test_contact_sheets_paginate(catalog):
    from pipelines.catalog.contact_sheet import catalog_contact_sheets

    sheets = catalog_contact_sheets(catalog, ["tee-navy", "tote-canvas", "missing"], skus_per_sheet=1,
                                    cell_size=64, title="x")
    assert len(sheets) == 2


# -- the command line ---------------------------------------------------------------------------------------
def test_cli_review_export_and_list_edits(catalog, tmp_path, capsys):
    from flows.cli import main

    assert main(["review", str(catalog), "--export", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").is_file()
    record_decision(catalog, "tote-canvas", "main.png", "request-edit", instruction="crop tighter")
    capsys.readouterr()
    assert main(["review", str(catalog), "--list-edits"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["instruction"] == "crop tighter"
    assert main(["review", str(tmp_path / "nope")]) == 2


def test_cli_defaults_match_the_server():
    from flows.cli import common
    from pipelines.review_ui import server as review_server
    assert (common.REVIEW_HOST, common.REVIEW_PORT) == (review_server.DEFAULT_HOST, review_server.DEFAULT_PORT)


def test_cli_review_serves_until_interrupted(catalog, monkeypatch, capsys):
    from flows import cli
    from pipelines.review_ui import server as review_server
    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(review_server.ReviewServer, "serve_forever", interrupt)
    assert cli.main(["review", str(catalog), "--port", "0"]) == 0
    assert re.search(r"at http://127\.0\.0\.1:\d+/", capsys.readouterr().out)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_static_export_refuses_missing_catalog(tmp_path):
    from pipelines.review_ui.page import export_static

    with pytest.raises(InputError, match="not found"):
        export_static(tmp_path / "missing", tmp_path / "out")


def test_hostile_title_fixture_is_really_hostile(template):
    assert read_manifest(template / "tee-navy" / "manifest.json")["product"]["title"] == HOSTILE_TITLE


def test_the_exported_page_orders_skus_as_the_live_page_does(tmp_path):
    """Needs attention, then failed (unreadable, or failed in the latest batch), then the rest; by SKU within."""
    from pipelines.catalog.index import CatalogIndex, failed_skus
    from pipelines.review_ui.page import load_entries, order_entries

    def manifest(sku, flags=(), status="pending"):
        out = {"file": "main.png", "kind": "main", "review": {"status": status},
               "quality": {"flags": [{"check": "cutout", "flag": f, "message": f} for f in flags]}}
        return {"sku": sku, "outputs": [out], "product": {}, "engine": {"name": "classic"}}

    entries = [("a-ok", manifest("a-ok"), None), ("b-bad", None, "b-bad/manifest.json: not JSON"),
               ("c-flagged", manifest("c-flagged", ["halo"]), None), ("d-ok", manifest("d-ok", status="approved"), None),
               ("e-failed-last-run", manifest("e-failed-last-run"), None),
               ("f-marked", manifest("f-marked", status="needs-attention"), None)]
    got = [e[0] for e in order_entries(entries, {"e-failed-last-run": "boom"})]
    assert got == ["c-flagged", "f-marked", "b-bad", "e-failed-last-run", "a-ok", "d-ok"]
    catalog = build_review_catalog(tmp_path / "cat")
    live = [f.sku for f in CatalogIndex(catalog).all()]
    assert [e[0] for e in order_entries(load_entries(catalog), failed_skus(catalog))] == live

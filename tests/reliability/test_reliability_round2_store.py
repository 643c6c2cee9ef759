"""Issue 14, round 2 of the reliability attack: the store (catalog, journal, export, review server, edits).

One regression test per finding (numbers are the issue's): each reproduced the finding on the code before
its fix. Figures for docs/reliability.md are recorded with `record_figures` when bench/reliability.py runs.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from pipelines.catalog.render import is_up_to_date, process_sku, sku_content_hash
from pipelines.catalog.store import LOCKS_DIR, STAGING_DIR, TRASH_DIR, sku_lock
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.errors import InputError
from pipelines.imageio import save_image, sha256_file
from pipelines.catalog.manifest import MANIFEST_NAME, read_manifest
from pipelines.product import load_product
from tests.helpers.reliability import check_catalog, make_products, record_figures, render_options


@pytest.fixture(scope="module")
def engine():
    return get_engine("classic")


def _tree(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


# -- 1. overlapping products/catalog trees ---------------------------------------------------------------
LAYOUTS = {
    "catalog is the products folder": ("p", "p"),
    "catalog inside the products tree": ("p", "p/catalog"),
    "products inside the catalog": ("c/products", "c"),
    "a SKU named like the products root": ("c/sku-00", "c"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_overlapping_products_and_catalog_are_refused_before_anything_is_touched(tmp_path, layout, capsys):
    from flows.cli import main

    prel, crel = LAYOUTS[layout]
    products, catalog = tmp_path / prel, tmp_path / crel
    make_products(products, 2)
    if layout == "a SKU named like the products root":
        shutil.move(products / "sku-01", products / "sku-00")  # products c/sku-00 holds SKU sku-00
    before = _tree(tmp_path)
    rc = main(["run", str(products), "--catalog", str(catalog), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(products.resolve()) in err and str(catalog.resolve()) in err
    assert _tree(tmp_path) == before  # not one file created, moved or removed
    if layout != "products inside the catalog":
        assert not (products / ".staging").exists() and not (products / ".locks").exists()


def test_a_catalog_reached_through_a_link_is_the_same_tree(tmp_path, capsys):
    from flows.cli import main

    products = tmp_path / "p"
    make_products(products, 1)
    (tmp_path / "link").symlink_to(products, target_is_directory=True)
    before = _tree(products)
    assert main(["run", str(products), "--catalog", str(tmp_path / "link"), "--no-progress"]) == 2
    assert "overlap" in capsys.readouterr().err
    assert _tree(products) == before


def test_library_and_flow_entry_points_refuse_overlap_too(tmp_path, engine):
    from flows.catalog_batch import catalog_batch

    products = tmp_path / "p"
    make_products(products, 1)
    before = _tree(products)
    product = load_product(products / "sku-00", root=products)
    with pytest.raises(InputError, match="overlap") as err:
        process_sku(product, products, engine, render_options())
    assert str(products.resolve()) in str(err.value)
    with pytest.raises(InputError, match="overlap"):
        catalog_batch.fn(str(products), str(products / "cat"))
    assert _tree(products) == before


def test_a_folder_that_is_not_a_vitrine_entry_is_never_replaced(tmp_path, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    make_products(products, 1)
    mine = catalog / "sku-00"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    result = process_sku(load_product(products / "sku-00", root=products), catalog, engine, render_options())
    assert result.status == "failed" and str(mine) in result.error and "not a Vitrine catalog entry" in result.error
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert not (catalog / TRASH_DIR).exists() or not any((catalog / TRASH_DIR).iterdir())
    record_figures("round2_overlap", {"layouts_refused": len(LAYOUTS) + 1, "files_lost": 0})


# -- 2. the static export owns only what it wrote --------------------------------------------------------
@pytest.fixture(scope="module")
def review_template(tmp_path_factory):
    from tests.helpers.review import build_review_catalog

    return build_review_catalog(tmp_path_factory.mktemp("round2-review"))


@pytest.fixture()
def catalog(review_template, tmp_path):
    from tests.helpers.review import copy_catalog

    return copy_catalog(review_template, tmp_path / "catalog")


def test_export_never_deletes_files_it_did_not_write(catalog, tmp_path):
    from pipelines.review_ui.page import export_static

    site = tmp_path / "site"
    (site / "thumbs").mkdir(parents=True)
    (site / "thumbs" / "holiday.jpg").write_bytes(b"my photo")
    (site / "notes.txt").write_text("mine")
    export_static(catalog, site)
    assert (site / "thumbs" / "holiday.jpg").read_bytes() == b"my photo"
    assert (site / "notes.txt").read_text() == "mine"
    ours = set(json.loads((site / ".vitrine-export.json").read_text())["files"])
    assert "index.html" in ours and all(f.startswith("thumbs/") for f in ours - {"index.html"})
    # A re-export after a SKU left the catalog removes only its own stale thumbnails.
    shutil.rmtree(catalog / "tote-canvas")
    export_static(catalog, site)
    now = set(json.loads((site / ".vitrine-export.json").read_text())["files"])
    assert now < ours
    assert all(not (site / f).exists() for f in ours - now)
    assert (site / "thumbs" / "holiday.jpg").read_bytes() == b"my photo"


def test_export_refuses_to_overwrite_a_page_it_did_not_write(catalog, tmp_path):
    from pipelines.review_ui.page import export_static

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>my home page</p>")
    with pytest.raises(InputError, match="not written by a Vitrine export") as err:
        export_static(catalog, site)
    assert "index.html" in str(err.value)
    assert (site / "index.html").read_text() == "<p>my home page</p>"


def test_export_holds_no_absolute_catalog_path(catalog, tmp_path):
    from pipelines.review_ui.page import export_static

    index = export_static(catalog, tmp_path / "site")
    text = index.read_text(encoding="utf-8")
    assert str(catalog.resolve()) not in text and str(tmp_path) not in text
    assert "vitrine review" in text  # the banner still says how to record decisions


# -- 3. the decisions journal survives every Unicode line terminator -------------------------------------
#: Every character some reader splits lines on (`str.splitlines` is the widest: 10 of them).
TERMINATORS = [chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1]


def test_line_terminators_in_notes_and_names_keep_the_journal_readable(catalog, capsys):
    from flows.cli import main
    from pipelines.catalog.review import decisions_path, pending_edit_requests, read_decisions, record_decision, review_summary

    for i, t in enumerate(TERMINATORS):
        record_decision(catalog, "tee-navy", "main.png", "reject", note=f"pasted{t}note {i}", reviewer=f"ann{t}b")
    record_decision(catalog, "tote-canvas", "main.png", "request-edit", instruction=f"crop{chr(0x2028)}tighter")
    raw = decisions_path(catalog).read_bytes()
    assert raw.count(b"\n") == len(TERMINATORS) + 1
    assert "\u2028".encode() not in raw and "\x85".encode() not in raw
    events = read_decisions(catalog)
    assert [e["note"] for e in events[:-1]] == [f"pasted{t}note {i}" for i, t in enumerate(TERMINATORS)]
    assert [e["reviewer"] for e in events[:-1]] == [f"ann{t}b" for t in TERMINATORS]
    assert [r.instruction for r in pending_edit_requests(catalog)] == ["crop\u2028tighter"]
    assert review_summary(catalog)["pending_edits"] == 1
    capsys.readouterr()
    assert main(["review", str(catalog), "--list-edits"]) == 0
    assert json.loads(capsys.readouterr().out)["instruction"] == "crop\u2028tighter"


def test_one_bad_journal_line_is_skipped_with_a_warning_naming_it(catalog, caplog):
    from pipelines.catalog.review import decisions_path, pending_edit_requests, read_decisions, record_decision

    record_decision(catalog, "tee-navy", "main.png", "approve")
    path = decisions_path(catalog)
    # An old writer's raw U+2028 (json.dumps(ensure_ascii=False)) and a torn line, between good lines.
    old = json.dumps({"v": 1, "event": "decision", "note": "a\u2028b"}, ensure_ascii=False)
    path.write_bytes(path.read_bytes() + old.encode() + b"\n" + b'{"v": 1, "ev\n')
    record_decision(catalog, "tote-canvas", "main.png", "request-edit", instruction="warmer")
    with caplog.at_level(logging.WARNING, logger="pipelines.catalog.review"):
        events = read_decisions(catalog)
    assert [e["sku"] for e in events] == ["tee-navy", "tote-canvas"]
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(path) in m and "line 2" in m for m in warned) and any("line 3" in m for m in warned)
    assert [r.output for r in pending_edit_requests(catalog)] == ["main.png"]
    with pytest.raises(InputError, match="line 2"):
        read_decisions(catalog, strict=True)
    from pipelines.review_ui.server import ReviewServer

    srv = ReviewServer(catalog, "127.0.0.1", 0)
    srv.start_in_thread()
    try:
        status, body = _get(srv.port, f"127.0.0.1:{srv.port}", "/api/catalog")
    finally:
        srv.shutdown()
        srv.server_close()
    assert status == 200 and json.loads(body)["pending_edits"] == 1
    record_figures("round2_journal", {"line_terminators_tried": len(TERMINATORS), "events_lost": 0})


# -- 4. DNS rebinding: a Host allow-list for every bind address ------------------------------------------
def _get(port: int, host_header: str, path: str = "/", method: str = "GET", headers: dict | None = None,
         body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture()
def wide_server(catalog):
    from pipelines.review_ui.server import ReviewServer

    srv = ReviewServer(catalog, "0.0.0.0", 0, reviewer="t", allowed_hosts=("review.lan",))
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_wildcard_bind_still_refuses_foreign_host_headers(wide_server):
    port = wide_server.port
    status, body = _get(port, f"rebind.example:{port}")
    assert status == 403 and wide_server.token.encode() not in body
    for ok in (f"127.0.0.1:{port}", f"localhost:{port}", f"review.lan:{port}", f"REVIEW.LAN:{port}"):
        status, body = _get(port, ok)
        assert status == 200 and wide_server.token.encode() in body, ok
    assert _get(port, f"review.lan:{port + 1}")[0] == 403  # another port is another origin


def test_decisions_need_an_origin_of_an_allowed_host(wide_server, catalog):
    port = wide_server.port
    body = json.dumps({"sku": "tee-navy", "output": "main.png", "action": "approve"}).encode()
    base = {"Content-Type": "application/json", "X-Vitrine-Token": wide_server.token}
    before = (catalog / "tee-navy" / MANIFEST_NAME).read_bytes()
    for host, origin in ((f"rebind.example:{port}", f"http://rebind.example:{port}"),
                         (f"127.0.0.1:{port}", f"http://rebind.example:{port}"),
                         (f"127.0.0.1:{port}", "null")):
        status, _ = _get(port, host, "/api/decision", "POST", {**base, "Origin": origin}, body)
        assert status == 403, (host, origin)
    assert (catalog / "tee-navy" / MANIFEST_NAME).read_bytes() == before
    status, resp = _get(port, f"review.lan:{port}", "/api/decision", "POST",
                        {**base, "Origin": f"http://review.lan:{port}"}, body)
    assert status == 200, resp


def test_cli_passes_allow_host_to_the_server(catalog, monkeypatch):
    from flows import cli
    from pipelines.review_ui import server as review_server
    seen = {}

    def fake_serve(self, *a, **k):
        seen["ok"] = self.host_allowed(f"box.example:{self.port}")
        seen["foreign"] = self.host_allowed(f"evil.example:{self.port}")
        raise KeyboardInterrupt

    monkeypatch.setattr(review_server.ReviewServer, "serve_forever", fake_serve)
    assert cli.main(["review", str(catalog), "--host", "0.0.0.0", "--port", "0", "--allow-host", "box.example"]) == 0
    assert seen == {"ok": True, "foreign": False}
    assert cli.main(["review", str(catalog), "--port", "0", "--allow-host", "bad/name"]) == 2


# -- 13. review server limits: idle timeout, connection cap ----------------------------------------------
def test_stalled_connections_neither_pile_up_threads_nor_stay_open(catalog):
    from pipelines.review_ui.server import ReviewServer

    srv = ReviewServer(catalog, "127.0.0.1", 0, idle_timeout=0.5, max_connections=4)
    srv.start_in_thread()
    base = threading.active_count()
    socks = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            socks.append(s)
        time.sleep(0.2)
        assert threading.active_count() <= base + 4
        refused = 0
        for s in socks[4:]:
            data = s.recv(200)
            refused += data.startswith(b"HTTP/1.1 503")
        assert refused == 16
        time.sleep(0.8)  # past the idle timeout: the stalled four are closed by the server
        for s in socks[:4]:
            assert s.recv(200) == b""
        assert _get(srv.port, f"127.0.0.1:{srv.port}")[0] == 200  # and the server still serves
    finally:
        for s in socks:
            s.close()
        srv.shutdown()
        srv.server_close()
    record_figures("round2_server", {"stalled_connections": 20, "threads_held_max": 4, "refused_503": refused})


# -- 6. the skip check and verify hash every listed file --------------------------------------------------
@pytest.fixture()
def two_skus(tmp_path, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    skus = make_products(products, 2)
    for sku in skus:
        assert process_sku(load_product(products / sku, root=products), catalog, engine,
                           render_options()).status == "ok"
    return products, catalog


def _tamper(catalog: Path, how: str) -> str:
    entry = catalog / "sku-00"
    m = read_manifest(entry / MANIFEST_NAME)
    if how == "main.jpg from another SKU":
        shutil.copyfile(catalog / "sku-01" / "main.jpg", entry / "main.jpg")
        return "main.jpg"
    if how == "work file deleted":
        rel = m["work"][-1]["file"]
        (entry / rel).unlink()
        return rel
    # The normalised input repainted (what verify re-derives the product pixels from).
    import numpy as np
    from PIL import Image

    norm = next(i["normalized"] for i in m["inputs"] if i.get("normalized"))
    img = np.asarray(Image.open(entry / norm).convert("RGB")).copy()
    img[..., 0] = 255 - img[..., 0]
    save_image(entry / norm, img)
    return norm


@pytest.mark.parametrize("how", ["main.jpg from another SKU", "work file deleted", "normalised input repainted"])
def test_skip_check_and_verify_catch_any_changed_file(two_skus, engine, how, capsys):
    from flows.cli import main

    products, catalog = two_skus
    bad = _tamper(catalog, how)
    product = load_product(products / "sku-00", root=products)
    assert not is_up_to_date(catalog / "sku-00", sku_content_hash(product, engine, render_options()))
    capsys.readouterr()
    assert main(["verify", str(catalog)]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("sku-00"))
    assert bad in line and "sku-01\tok" in out
    result = process_sku(product, catalog, engine, render_options())
    assert result.status == "ok"  # re-rendered, not skipped
    complete, problems = check_catalog(catalog, ["sku-00", "sku-01"])
    assert not problems and set(complete) == {"sku-00", "sku-01"}
    assert main(["verify", str(catalog)]) == 0


# -- 10. stale staging is cleaned at batch start -----------------------------------------------------------
def test_staging_left_by_a_kill_is_cleaned_even_when_the_sku_is_skipped(two_skus, engine):
    products, catalog = two_skus
    stale = catalog / STAGING_DIR / "sku-00.4242.deadbeef"
    (stale / "work").mkdir(parents=True)
    (stale / "work" / "big.png").write_bytes(b"x" * 1000)
    result = process_sku(load_product(products / "sku-00", root=products), catalog, engine, render_options())
    assert result.status == "skipped" and result.reason == "unchanged"
    assert not stale.exists()


def test_batch_start_cleans_only_vitrine_staging_of_unlocked_skus(two_skus):
    from pipelines.catalog.store import clean_stale_staging

    _, catalog = two_skus
    gone = [catalog / STAGING_DIR / "old-sku.77.0badf00d", catalog / TRASH_DIR / "sku-01.0badf00d"]
    held = catalog / STAGING_DIR / "sku-00.99.feedbeef"
    foreign = [catalog / STAGING_DIR / "notes", catalog / STAGING_DIR / "sku-00.draft"]
    for d in [*gone, held, *foreign]:
        d.mkdir(parents=True)
        (d / "f").write_text("x")
    with sku_lock(catalog, "sku-00"):  # a run writing sku-00 right now
        removed = clean_stale_staging(catalog)
    assert sorted(removed) == sorted(str(p) for p in gone)
    assert all(not p.exists() for p in gone) and held.exists() and all(p.exists() for p in foreign)
    assert (catalog / "sku-01" / MANIFEST_NAME).is_file()  # the entry whose trash was cleared is intact


# -- 13. a reviewer's lock does not make a --force render skip the SKU ---------------------------------------
def test_a_short_reviewer_lock_delays_a_forced_render_instead_of_skipping_it(two_skus, engine):
    products, catalog = two_skus
    product = load_product(products / "sku-00", root=products)
    held = threading.Event()

    def reviewer():  # a decision being written: the SKU lock held for half a second
        with sku_lock(catalog, "sku-00"):
            held.set()
            time.sleep(0.5)

    t = threading.Thread(target=reviewer)
    t.start()
    held.wait(10)
    result = process_sku(product, catalog, engine, render_options(), force=True)
    t.join()
    assert result.status == "ok", result


def test_a_sku_held_too_long_is_failed_as_locked_not_skipped(two_skus, engine):
    from pipelines.catalog.store import render_lock

    products, catalog = two_skus
    product = load_product(products / "sku-00", root=products)
    with sku_lock(catalog, "sku-00"):
        result = process_sku(product, catalog, engine, render_options(), force=True, write_lock_timeout=0.2)
    assert result.status == "failed" and "locked" in result.error and str(catalog / LOCKS_DIR) in result.error
    with render_lock(catalog, "sku-00"):  # another run rendering it: that run's to write
        result = process_sku(product, catalog, engine, render_options(), force=True)
    assert result.status == "skipped" and "another run" in result.reason


# -- 7. edits go through staging and are idempotent per decision id -----------------------------------------
@pytest.fixture(scope="module")
def kontext():
    from tests.helpers.tryon import tiny_kontext

    return tiny_kontext()


@pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")
def test_an_edit_crash_before_the_journal_update_is_not_applied_twice(catalog, kontext):
    from pipelines.catalog.edit_batch import apply_edit_job, plan_edits
    from pipelines.catalog.edits import edit_output
    from pipelines.edit.kontext import EditParams
    from pipelines.catalog.review import pending_edit_requests, record_decision
    from tests.helpers.tryon import fast_settings

    ed, model = kontext
    d = record_decision(catalog, "tee-navy", "lifestyle-studio-s0.png", "request-edit", instruction="warmer")
    (job,) = plan_edits(catalog)
    # The run wrote the edit and the manifest, then died before record_edit_result.
    first = edit_output(catalog, job.sku, job.output, job.instruction, ed, model=model, params=EditParams(steps=2),
                        expected_sha256=job.expected_sha256, decision_id=job.decision_id)
    (again,) = plan_edits(catalog)
    entry = apply_edit_job(catalog, again, editor=kontext, settings=fast_settings())
    assert entry["status"] == "applied" and entry["new_output"] == first.new_output
    m = read_manifest(catalog / "tee-navy" / MANIFEST_NAME)
    edits = [o for o in m["outputs"] if (o.get("edit") or {}).get("decision_id") == d.id]
    assert len(edits) == 1 and not list((catalog / "tee-navy").glob("*.edit-2*"))
    assert pending_edit_requests(catalog) == []


@pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")
def test_an_edit_that_fails_mid_write_leaves_the_live_entry_untouched(catalog, kontext, monkeypatch):
    from pipelines.catalog.store import clean_stale_staging
    from pipelines.catalog import edits as catalog_edit
    from pipelines.catalog import manifest as catalog_manifest
    from pipelines.edit.kontext import EditParams

    ed, model = kontext
    entry = catalog / "tee-navy"
    before = _tree(entry)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(catalog_manifest, "atomic_write_json", disk_full)
    with pytest.raises(OSError):
        catalog_edit.edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "warmer", ed, model=model,
                                 params=EditParams(steps=2))
    assert _tree(entry) == before  # no orphan edit-1.png, no changed manifest
    monkeypatch.undo()
    clean_stale_staging(catalog)
    assert not (catalog / STAGING_DIR).exists() or not any((catalog / STAGING_DIR).iterdir())
    r = catalog_edit.edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "warmer", ed, model=model,
                                 params=EditParams(steps=2))
    assert r.new_output == "lifestyle-studio-s0.edit-1.png"
    complete, problems = check_catalog(catalog, ["tee-navy", "tote-canvas"])
    assert not problems, problems
    assert all(v["ok"] for v in verify_entry(entry))
    assert os.path.isfile(entry / r.new_output)


# -- 7. SIGKILL trials on `vitrine edit`'s write: the entry stays whole, no edit applied twice ----------------
EDIT_WORKER = r"""
import json, sys
from pipelines.catalog.edit_batch import apply_edit_job, plan_edits
from pipelines.catalog.edits import load_kontext_editor
from pipelines.generation.settings import GenerationSettings

catalog, root = sys.argv[1], sys.argv[2]
settings = GenerationSettings(device="cpu", steps=2, seam_steps=2)
editor = load_kontext_editor(root, settings)
print("ready", flush=True)
sys.stdin.readline()
for job in plan_edits(catalog):
    print(json.dumps(apply_edit_job(catalog, job, editor=editor, settings=settings)), flush=True)
print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")
def test_edit_kill_trials_leave_whole_entries_and_apply_each_request_once(review_template, tmp_path):
    import random
    import subprocess
    import sys

    from pipelines.catalog.review import pending_edit_requests, record_decision
    from tests.helpers.reliability import REPO, Worker
    from tests.helpers.review import copy_catalog
    from tests.helpers.tryon import tiny_flux_root

    root = tiny_flux_root()
    trials = int(os.environ.get("VITRINE_EDIT_KILL_TRIALS", "3"))
    rng = random.Random(14)

    class EditWorker(Worker):
        def __init__(self, catalog: Path):  # noqa: D107 - same barrier protocol as the render worker
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
            self.proc = subprocess.Popen([sys.executable, "-c", EDIT_WORKER, str(catalog), str(root)], cwd=REPO,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, env=env)
            self.lines = []

    def fresh(n: int) -> Path:
        catalog = copy_catalog(review_template, tmp_path / f"c{n}")
        for sku, out in (("tee-navy", "lifestyle-studio-s0.png"), ("tote-canvas", "main.png")):
            record_decision(catalog, sku, out, "request-edit", instruction="warmer light")
        return catalog

    # One uninterrupted run: how long the edits take once the model is loaded.
    w = EditWorker(fresh(0))
    w.wait_ready(300)
    t = time.perf_counter()
    w.go()
    assert w.wait(300) == 0
    span = time.perf_counter() - t
    assert [r["status"] for r in w.results()] == ["applied", "applied"]
    broken = twice = 0
    for n in range(1, trials + 1):
        catalog = fresh(n)
        w = EditWorker(catalog)
        w.wait_ready(300)
        w.go()
        time.sleep(rng.uniform(0, span))
        w.kill()
        complete, problems = check_catalog(catalog, ["tee-navy", "tote-canvas"])
        broken += bool(problems) or len(complete) != 2
        again = EditWorker(catalog)
        again.wait_ready(300)
        again.go()
        assert again.wait(300) == 0
        assert pending_edit_requests(catalog) == []
        for sku in ("tee-navy", "tote-canvas"):
            m = read_manifest(catalog / sku / MANIFEST_NAME)
            ids = [o["edit"]["decision_id"] for o in m["outputs"] if o.get("kind") == "edit"]
            twice += len(ids) != len(set(ids)) or len(ids) != 1
    assert broken == 0 and twice == 0
    record_figures("round2_edit_kills", {"trials": trials, "broken": broken, "applied_twice": twice,
                                         "edit_seconds": round(span, 2)})


@pytest.mark.slow
def test_the_batch_flow_cleans_stale_staging_at_start(prefect_harness, tmp_path):
    from flows.catalog_batch import catalog_batch

    products, catalog = tmp_path / "p", tmp_path / "c"
    make_products(products, 1, size=512)  # the flow's 2000 px main: within the upscale limit
    stale = catalog / STAGING_DIR / "gone-sku.4242.deadbeef"
    stale.mkdir(parents=True)
    (stale / "main.png").write_bytes(b"x" * 100)
    result = catalog_batch(str(products), str(catalog), engine="classic")
    assert result["counts"]["ok"] == 1 and not stale.exists()


def test_the_local_batch_cleans_stale_staging_and_refuses_overlap(tmp_path):
    """`vitrine run` without Prefect (flows.local_batch) does what the flow does at batch start."""
    from flows.local_batch import run_local_batch

    products, catalog = tmp_path / "p", tmp_path / "c"
    make_products(products, 1, size=512)
    stale = catalog / STAGING_DIR / "gone-sku.4242.deadbeef"
    stale.mkdir(parents=True)
    (stale / "main.png").write_bytes(b"x" * 100)
    with pytest.raises(InputError):
        run_local_batch(str(products), str(products / "sku-00"), engine="classic")
    result = run_local_batch(str(products), str(catalog), engine="classic")
    assert result["counts"]["ok"] == 1 and not stale.exists()

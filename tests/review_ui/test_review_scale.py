"""The catalog-scale review page over HTTP (no browser): the index, filters, pagination, failed SKUs, live
counts in decision responses, and the mask brush's ``POST /api/mask`` (a painted override that the next
run renders from)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from tests.helpers.review import build_review_catalog, build_scale_catalog, copy_catalog
from tests.review_ui.test_review import post_decision, request

from pipelines.errors import InputError
from pipelines.catalog.manifest import read_manifest
from pipelines.catalog.review import pending_edit_requests, read_decisions, record_decision
from pipelines.catalog.index import CatalogIndex, ReviewQuery, review_order_key


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_review_catalog(tmp_path_factory.mktemp("scale-template"))


@pytest.fixture
def small(template, tmp_path):
    """The two-SKU catalog with its products folder next to it (``tmp/products``, ``tmp/catalog``)."""
    import shutil

    shutil.copytree(template.parent / "products", tmp_path / "products")
    return copy_catalog(template, tmp_path / "catalog")


@pytest.fixture
def big(template, tmp_path):
    return build_scale_catalog(template, tmp_path / "big", 120, failed=3)


def _server(catalog, **kw):
    from pipelines.review_ui.server import ReviewServer

    srv = ReviewServer(catalog, "127.0.0.1", 0, reviewer="tester", **kw)
    srv.start_in_thread()
    return srv


@pytest.fixture
def big_server(big):
    srv = _server(big)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def small_server(small):
    srv = _server(small, products_dir=small.parent / "products")
    yield srv
    srv.shutdown()
    srv.server_close()


# -- the index ---------------------------------------------------------------------------------------------
def test_index_orders_needs_attention_first_and_lists_failed_skus(big):
    facts = CatalogIndex(big).all()
    assert len(facts) == 123
    flagged = [f.sku for f in facts if f.needs_attention]
    assert flagged and [f.sku for f in facts[:len(flagged)]] == flagged, "needs attention comes first"
    assert all(f.flags == ("low-fill",) for f in facts[:len(flagged)])
    failed = [f for f in facts if f.failed]
    assert [f.sku for f in failed] == ["bad-00000", "bad-00001", "bad-00002"]
    assert failed[0].error == "bad-00000/front.jpg: cannot read image" and not failed[0].has_manifest
    assert facts == sorted(facts, key=review_order_key)


def test_index_filters_by_output_status_engine_marketplace_and_search(big):
    index = CatalogIndex(big)
    # sku-00001: one output rejected, the other asked for an edit -> the SKU is "edit-requested" ...
    record_decision(big, "sku-00001", "main.png", "reject", note="halo")
    record_decision(big, "sku-00001", "lifestyle-studio-s0.png", "request-edit", instruction="warmer")
    assert read_manifest(big / "sku-00001" / "manifest.json")["review"]["status"] == "edit-requested"
    # ... and still shows under ?status=rejected (output status), and under edit-requested.
    assert [f.sku for f in index.query(ReviewQuery(status="rejected")).skus] == ["sku-00001"]
    assert [f.sku for f in index.query(ReviewQuery(status="edit-requested")).skus] == ["sku-00001"]
    page = index.query(ReviewQuery(status="all"))
    assert page.counts["rejected"] == 1 and page.counts["failed"] == 3 and page.counts["all"] == 123
    assert page.counts["needs-attention"] == len([i for i in range(120) if i % 7 == 3])
    assert page.engines == ["classic", "grounded-sam"] and page.marketplaces == ["amazon"]
    gs = index.query(ReviewQuery(engine="grounded-sam", per_page=200))
    assert gs.total == 11 and all(f.engine == "grounded-sam" for f in gs.skus)
    amazon = index.query(ReviewQuery(marketplace="amazon", per_page=200))
    assert amazon.total == 24 and all(int(f.sku[4:]) % 5 == 0 for f in amazon.skus)
    found = [f.sku for f in index.query(ReviewQuery(q="SKU-0011")).skus]
    assert found[0] == "sku-00115" and sorted(found) == [f"sku-0011{i}" for i in range(10)]  # flagged first
    # Pagination: 20 a page, the last one short, a page past the end is the last.
    p7 = index.query(ReviewQuery(page=7))
    assert (p7.page, p7.pages, p7.total, len(p7.skus)) == (7, 7, 123, 3)
    assert index.query(ReviewQuery(page=99)).page == 7


def test_query_parameters_are_checked():
    assert ReviewQuery.from_params({"status": ["failed"], "page": ["2"], "q": [" tee "]}) == ReviewQuery(
        status="failed", page=2, q="tee")
    assert ReviewQuery.from_params({"per_page": ["100000"]}).per_page == 200
    for params, key in (({"status": ["nope"]}, "status"), ({"page": ["x"]}, "page"), ({"page": ["0"]}, "page")):
        with pytest.raises(InputError) as info:
            ReviewQuery.from_params(params)
        assert info.value.key == key


def test_index_rereads_only_changed_manifests(big, monkeypatch):
    import pipelines.catalog.index as ri

    index = CatalogIndex(big, ttl=0)
    index.all()
    reads = []
    real = ri.read_manifest
    monkeypatch.setattr(ri, "read_manifest", lambda p: reads.append(p) or real(p))
    index.all()
    assert reads == []
    record_decision(big, "sku-00002", "main.png", "approve")
    facts = {f.sku: f for f in index.all()}
    assert [p.parent.name for p in reads] == ["sku-00002"]
    assert facts["sku-00002"].output_statuses == ("approved", "pending")


def test_a_reused_scan_is_refreshed_per_sku(big):
    index = CatalogIndex(big, ttl=3600)
    assert index.query(ReviewQuery()).counts["approved"] == 0
    record_decision(big, "sku-00002", "main.png", "approve")
    record_decision(big, "sku-00002", "lifestyle-studio-s0.png", "approve")
    assert index.query(ReviewQuery()).counts["approved"] == 0, "the scan is reused"
    index.refresh("sku-00002")
    assert index.query(ReviewQuery()).counts["approved"] == 1


# -- the page over HTTP -------------------------------------------------------------------------------------
def test_page_shows_one_page_with_failed_skus_and_filters(big_server):
    status, _h, body = request(big_server, "GET", "/?status=failed")
    page = body.decode()
    assert status == 200
    assert page.count('<section class="sku') == 3
    assert "Failed: bad-00001/front.jpg: cannot read image" in page
    _s, _h, body = request(big_server, "GET", "/")
    page = body.decode()
    assert page.count('<section class="sku') == 20
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/review.js" defer>']
    assert 'data-count="failed">3<' in page and 'data-count="all">123<' in page
    assert "flags: low-fill" in page and 'rel="next"' in page
    status, _h, body = request(big_server, "GET", "/?page=abc")
    assert status == 400 and b"page must be a whole number" in body


def test_decision_response_carries_live_counts(big_server, big):
    status, _h, body = post_decision(big_server, {"sku": "sku-00004", "output": "main.png", "action": "reject",
                                                  "note": "crooked"})
    data = json.loads(body)
    assert status == 200 and data["ok"]
    assert data["counts"]["rejected"] == 1 and data["counts"]["all"] == 123 and data["pending_edits"] == 0


def test_api_catalog_pages_the_index_and_keeps_the_summary(big_server):
    _s, _h, body = request(big_server, "GET", "/api/catalog")
    plain = json.loads(body)
    assert "index" not in plain and plain["skus"]["pending"] == 120
    _s, _h, body = request(big_server, "GET", "/api/catalog?status=needs-attention&per_page=5")
    data = json.loads(body)
    assert data["skus"] == plain["skus"], "the summary is unchanged"
    idx = data["index"]
    assert len(idx["skus"]) == 5 and all(s["needs_attention"] for s in idx["skus"]) and idx["total"] == 17


# -- the mask brush: POST /api/mask ---------------------------------------------------------------------------
def _png(size, fill=128, mode="L", **draw):
    a = np.full((size[1], size[0]), fill, np.uint8)
    for (x0, y0, x1, y1), v in draw.get("boxes", []):
        a[y0:y1, x0:x1] = v
    buf = io.BytesIO()
    Image.fromarray(a, "L").convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def post_mask(server, body, **headers):
    base = {"Content-Type": "application/json", "X-Vitrine-Token": server.token}
    return request(server, "POST", "/api/mask", body, {**base, **headers})


def test_mask_is_written_atomically_recorded_and_rendered_by_the_next_run(small_server, small):
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku
    from pipelines.engines.registry import get_engine
    from pipelines.product import load_product

    products = small.parent / "products"
    before = read_manifest(small / "tee-navy" / "manifest.json")
    # Exclude everything left of x=128: the tee's left half must leave the cutout.
    png = _png((256, 256), 128, "RGB", boxes=[((0, 0, 128, 256), 0)])
    status, _h, body = post_mask(small_server, {"sku": "tee-navy", "mask_png": base64.b64encode(png).decode()},
                                 Origin=f"http://127.0.0.1:{small_server.port}")
    data = json.loads(body)
    assert status == 200 and data["ok"], data
    written = products / "tee-navy" / "masks" / "product.png"
    mask = np.asarray(Image.open(written))
    assert mask.shape == (256, 256) and Image.open(written).mode == "L"
    assert (mask[:, :128] == 0).all() and (mask[:, 128:] == 128).all()
    assert [p.name for p in written.parent.iterdir()] == ["product.png"], "no temporary file left"
    [event] = [e for e in read_decisions(small) if e["event"] == "mask-edit"]
    assert event["sku"] == "tee-navy" and event["mask"] == "masks/product.png" and event["reviewer"] == "tester"
    assert event["source"] == "review-server" and event["exclude_pixels"] == 128 * 256
    assert pending_edit_requests(small) == [], "a mask edit is not an edit request"

    page = request(small_server, "GET", "/?q=tee-navy")[2].decode()
    assert 'data-role="mask-edit"' in page and "run vitrine run to re-render" in page

    # The next run re-renders the SKU (the override is part of the content hash) from the painted mask.
    product = load_product(products / "tee-navy", root=products)
    result = process_sku(product, small, get_engine("classic"), RenderOptions(canvas=256, lifestyle_size=(200, 256)))
    assert result.status == "ok", result.error
    after = read_manifest(small / "tee-navy" / "manifest.json")
    assert after["content_hash"] != before["content_hash"]
    subject = after["subjects"][0]
    assert subject["source"].endswith("+override") and subject["metrics"]["override"] == "masks/product.png"
    new_mask = np.asarray(Image.open(small / "tee-navy" / subject["mask"]).convert("L"))
    assert new_mask[:, :128].max() < 128 and new_mask[:, 128:].max() >= 128
    assert subject["bbox"][0] >= 128
    assert 'data-role="mask-edit"' not in request(small_server, "GET", "/?q=tee-navy")[2].decode(), \
        "after the re-render the note is gone"


@pytest.mark.parametrize(("body", "headers", "code", "message"), [
    ({"mask_png": "WRONGSIZE"}, {}, 400, "the mask is 100x80 but the photo is 256x256"),
    ({"mask_png": base64.b64encode(b"GIF89a not a png").decode()}, {}, 400, "not a PNG"),
    ({"mask_png": base64.b64encode(b"\x89PNG\r\n\x1a\ngarbage").decode()}, {}, 400, "cannot be decoded"),
    ({"mask_png": "%%% not base64"}, {}, 400, "not base64"),
    ({"mask_png": "GOOD"}, {"X-Vitrine-Token": "wrong"}, 403, "X-Vitrine-Token"),
    ({"mask_png": "GOOD"}, {"X-Vitrine-Token": None}, 403, "X-Vitrine-Token"),
    ({"mask_png": "GOOD"}, {"Origin": "http://evil.example"}, 403, "cross-origin"),
    ({"mask_png": "GOOD"}, {"Host": "evil.example:80"}, 403, "Host"),
    ({"mask_png": "GOOD"}, {"Content-Type": "text/plain"}, 415, "application/json"),
    ({"mask_png": "GOOD", "sku": "../tee-navy"}, {}, 400, "SKU"),
    ({"mask_png": "GOOD", "extra": 1}, {}, 400, "JSON object"),
])
def test_bad_or_forged_masks_are_refused(small_server, small, body, headers, code, message):
    good = base64.b64encode(_png((256, 256))).decode()
    wrong = base64.b64encode(_png((100, 80))).decode()
    body = {"sku": "tee-navy", **body}
    body["mask_png"] = {"GOOD": good, "WRONGSIZE": wrong}.get(body["mask_png"], body["mask_png"])
    status, _h, resp = post_mask(small_server, body, **headers)
    assert status == code, resp
    assert message in resp.decode()
    assert not (small.parent / "products" / "tee-navy" / "masks").exists()
    assert not [e for e in read_decisions(small) if e["event"] == "mask-edit"]


def test_mask_refused_outside_the_products_root_and_without_products(small, tmp_path):
    from pipelines.catalog.mask_edit import save_mask_override

    products = small.parent / "products"
    outside = tmp_path / "outside"
    outside.mkdir()
    (products / "tee-navy" / "masks").symlink_to(outside)
    with pytest.raises(InputError, match="outside the products root"):
        save_mask_override(small, products, "tee-navy", _png((256, 256)))
    assert list(outside.iterdir()) == []
    empty = tmp_path / "empty-products"
    empty.mkdir()
    with pytest.raises(InputError, match="no product folder"):
        save_mask_override(small, empty, "tee-navy", _png((256, 256)))

    srv = _server(small)  # no --products and no report: masks are refused with a hint
    try:
        assert srv.products is None
        status, _h, resp = post_mask(srv, {"sku": "tee-navy", "mask_png": base64.b64encode(_png((256, 256))).decode()})
        assert status == 409 and b"--products" in resp
    finally:
        srv.shutdown()
        srv.server_close()


def test_mask_page_is_served_for_known_skus_only(small_server):
    status, headers, body = request(small_server, "GET", "/mask/tee-navy")
    page = body.decode()
    assert status == 200 and 'data-width="256"' in page and "work/input-front.png" in page
    assert "work/mask-front.png" in page and re.findall(r"<script\b[^>]*>", page) == [
        '<script src="/static/review.js" defer>']
    assert request(small_server, "GET", "/mask/nope")[0] == 404
    assert request(small_server, "GET", "/mask/..%2Fx")[0] == 404
    assert 'data-override=""' in page
    assert request(small_server, "GET", "/mask/tee-navy/override.png")[0] == 404
    png = _png((256, 256), 128, boxes=[((0, 0, 10, 10), 255)])
    assert post_mask(small_server, {"sku": "tee-navy", "mask_png": base64.b64encode(png).decode()})[0] == 200
    status, headers, body = request(small_server, "GET", "/mask/tee-navy/override.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert np.asarray(Image.open(io.BytesIO(body)))[5, 5] == 255
    assert 'data-override="1"' in request(small_server, "GET", "/mask/tee-navy")[2].decode()
    assert request(small_server, "GET", "/mask/..%2Fx/override.png")[0] == 400


def test_cli_review_takes_the_products_folder(small, monkeypatch, capsys):
    from flows import cli
    from pipelines.review_ui import server as review_server
    seen = []

    def interrupt(self, *a, **k):
        seen.append(self.products)
        raise KeyboardInterrupt

    monkeypatch.setattr(review_server.ReviewServer, "serve_forever", interrupt)
    products = small.parent / "products"
    assert cli.main(["review", str(small), "--port", "0", "--products", str(products)]) == 0
    assert seen == [products.resolve()]
    assert cli.main(["review", str(small), "--port", "0"]) == 0
    assert seen[-1] is None and "pass --products" in capsys.readouterr().err
    assert cli.main(["review", str(small), "--port", "0", "--products", str(small.parent / "nope")]) == 2
    assert "products folder not found" in capsys.readouterr().err


def test_products_folder_defaults_to_the_latest_report(small):
    from pipelines.catalog.mask_edit import products_dir_from_report

    (small / "_reports").mkdir()
    (small / "_reports" / "20260101T000000Z-a.json").write_text(json.dumps(
        {"entries": [], "products_dir": str(small.parent / "products")}))
    (small / "_reports" / "20250101T000000Z-old.json").write_text(json.dumps(
        {"entries": [], "products_dir": "/somewhere/else"}))
    assert products_dir_from_report(small) == small.parent / "products"
    srv = _server(small)
    try:
        assert srv.products == (small.parent / "products").resolve()
    finally:
        srv.shutdown()
        srv.server_close()


def test_decisions_do_not_rescan_the_catalog(big_server, big, monkeypatch):
    import pipelines.catalog.index as ri

    request(big_server, "GET", "/")
    big_server.index.ttl = 0  # every page request rescans; a decision must not
    scans = []
    real = ri.catalog_entries
    monkeypatch.setattr(ri, "catalog_entries", lambda c: scans.append(c) or real(c))
    for n, sku in enumerate(("sku-00010", "sku-00011"), start=1):
        status, _h, body = post_decision(big_server, {"sku": sku, "output": "main.png", "action": "reject",
                                                      "note": "crooked"})
        assert status == 200 and json.loads(body)["counts"]["rejected"] == n, body
    assert scans == []

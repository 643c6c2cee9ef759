"""The Prefect batch flow under prefect_test_harness: isolation, reports, skipping."""

import json
from pathlib import Path

import pytest

from pipelines.imageio import save_image
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.catalog.report import report_markdown

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def products(tmp_path_factory, drawn_products):
    root = tmp_path_factory.mktemp("flow") / "products"
    for name in ("tee", "tote"):
        d = root / f"sku-{name}"
        d.mkdir(parents=True)
        save_image(d / "front.png", drawn_products[name][0])
        (d / "product.yaml").write_text("backgrounds: [white]\n")
    bad = root / "sku-broken"
    bad.mkdir()
    (bad / "front.jpg").write_bytes(b"this is not a jpeg")
    badyaml = root / "sku-badyaml"
    badyaml.mkdir()
    save_image(badyaml / "front.png", drawn_products["dress"][0])
    (badyaml / "product.yaml").write_text("backgrounds: [white]\nbox_threshold: 0.3\n")
    return root


def test_batch_isolates_broken_skus_and_reports_each(prefect_harness, products, tmp_path):
    from flows.catalog_batch import catalog_batch

    catalog = tmp_path / "catalog"
    result = catalog_batch(str(products), str(catalog), engine="auto")
    assert result["counts"] == {"ok": 2, "failed": 2, "skipped": 0}
    assert sorted(result["failed"]) == ["sku-badyaml", "sku-broken"]
    report_path = Path(result["report_path"])
    assert report_path.parent == catalog / "_reports" and report_path.suffix == ".json"
    report = json.loads(report_path.read_text())
    by_sku = {e["sku"]: e for e in report["entries"]}
    assert set(by_sku) == {"sku-tee", "sku-tote", "sku-broken", "sku-badyaml"}
    for e in report["entries"]:
        assert set(e) >= {"sku", "status", "error", "outputs"}
    assert "front.jpg" in by_sku["sku-broken"]["error"]
    assert "product.yaml" in by_sku["sku-badyaml"]["error"] and "box_threshold" in by_sku["sku-badyaml"]["error"]
    assert by_sku["sku-tee"]["status"] == "ok" and "main.png" in by_sku["sku-tee"]["outputs"]
    assert report["engine"]["name"] == "classic" and "no generation model" in report["engine"]["reason"]
    for sku in ("sku-tee", "sku-tote"):
        validate_manifest(read_manifest(catalog / sku / "manifest.json"))
    assert not (catalog / "sku-broken").exists()

    # A re-run skips the unchanged SKUs and still reports the broken ones.
    again = catalog_batch(str(products), str(catalog))
    assert again["counts"] == {"ok": 0, "failed": 2, "skipped": 2}
    assert len(list((catalog / "_reports").glob("*.json"))) == 2


def test_shard_renders_only_the_named_skus(prefect_harness, products, tmp_path):
    from flows.catalog_batch import catalog_batch

    result = catalog_batch(str(products), str(tmp_path / "c"), skus=["sku-tote"])
    assert result["counts"] == {"ok": 1, "failed": 0, "skipped": 0}
    assert (tmp_path / "c" / "sku-tote" / "manifest.json").is_file()
    assert not (tmp_path / "c" / "sku-tee").exists()


def test_render_task_logic_without_a_flow(products, tmp_path):
    from flows.catalog_batch import render_sku

    entry = render_sku.fn(str(products), "sku-broken", str(tmp_path / "c"))
    assert entry["status"] == "failed" and "front.jpg" in entry["error"]


def test_report_markdown_escapes_user_text():
    report = {
        "run_id": "r1", "counts": {"ok": 0, "failed": 1, "skipped": 0}, "seconds": 1.0,
        "engine": {"name": "classic"},
        "entries": [{"sku": "<script>alert(1)</script>", "status": "failed", "error": "a|b <b>", "outputs": []}],
    }
    md = report_markdown(report)
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "a\\|b &lt;b&gt;" in md

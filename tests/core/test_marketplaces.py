"""Marketplace rule sets as data; per-marketplace main images; unknown marketplaces fail that SKU only."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import marketplaces as mk
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.verify import verify_entry
from pipelines.engines.classic import classic_engine
from pipelines.errors import InputError
from pipelines.imageio import save_image
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.product import discover_products, load_product


def test_shipped_rule_sets_cover_the_four_marketplaces_and_cite_sources():
    sets = mk.rule_sets()
    assert {"amazon", "zalando", "shopify", "etsy"} <= set(sets)
    for m in sets.values():
        assert m.sources and all(s.startswith("https://") for s in m.sources)
    assert sets["zalando"].rules["aspect"] == [1, 1.44] and sets["zalando"].rules["min_size"] == [762, 1100]
    assert sets["amazon"].rules["background"] == "white" and sets["amazon"].rules["fill"] == [0.85, 1.0]


def test_rules_file_with_an_unknown_rule_is_refused(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 1\nmarketplaces:\n  x:\n    rules: {colour: red}\n    sources: [https://e.x]\n"
                   "    render: {size: [10, 10], fill: 0.8, format: jpeg}\n")
    with pytest.raises(InputError, match="unknown rule 'colour'") as err:
        mk.load_rule_sets(bad)
    assert err.value.key == "marketplaces.x.rules" and str(bad) in str(err.value)


def test_check_rules_reports_each_rule():
    zal = mk.get_marketplace("Zalando")
    square = mk.check_rules(zal, width=1000, height=1000, fmt="jpeg", file_bytes=10**6, fill=0.85,
                            white_background=True)
    assert square["ok"] is False
    assert square["rules"]["aspect"]["ok"] is False and square["rules"]["min_size"]["ok"] is False
    assert square["rules"]["background"]["ok"] is True and square["rules"]["format"]["ok"] is True
    portrait = mk.check_rules(zal, width=1801, height=2600, fmt="jpeg", file_bytes=10**6, fill=0.85,
                              white_background=True)
    assert portrait["ok"] is True
    amazon = mk.check_rules(mk.get_marketplace("amazon"), width=2000, height=2000, fmt="png", file_bytes=10**6,
                            fill=0.5, white_background=True)
    assert amazon["ok"] is False and [k for k, v in amazon["rules"].items() if not v["ok"]] == ["fill"]


def _sku(root: Path, sku: str, rgb, spec: str) -> Path:
    d = root / sku
    d.mkdir(parents=True)
    save_image(d / "front.png", rgb)
    (d / "product.yaml").write_text(spec)
    return d


def test_unknown_marketplace_fails_that_sku_only(tmp_path, drawn_products):
    products, catalog = tmp_path / "p", tmp_path / "c"
    _sku(products, "tee-ok", drawn_products["tee"][0], "backgrounds: [white]\nmarketplaces: [amazon]\n")
    bad = _sku(products, "tee-bad", drawn_products["tee"][0], "backgrounds: [white]\nmarketplaces: [amazon, ebay]\n")
    goods, failures = discover_products(products)
    assert [p.sku for p in goods] == ["tee-ok"]
    [(sku, _folder, err)] = failures
    assert sku == "tee-bad" and err.key == "marketplaces.1" and Path(err.path) == bad / "product.yaml"
    assert "unknown marketplace 'ebay'" in str(err) and str(bad / "product.yaml") in str(err)
    assert process_sku(goods[0], catalog, classic_engine(), RenderOptions(canvas=1200)).status == "ok"


@pytest.fixture(scope="module")
def market_entry(tmp_path_factory, drawn_products):
    root = tmp_path_factory.mktemp("mk")
    d = _sku(root / "p", "tee", drawn_products["tee"][0],
             "backgrounds: [white]\nmarketplaces: [amazon, zalando, shopify, etsy]\n")
    r = process_sku(load_product(d), root / "c", classic_engine())
    assert r.status == "ok", r.error
    return root / "c" / "tee"


def test_one_output_per_marketplace_whose_rules_differ(market_entry):
    m = read_manifest(market_entry / "manifest.json")
    validate_manifest(m)
    by_file = {o["file"]: o for o in m["outputs"]}
    # Zalando's portrait 1:1.44 differs from the square main: its own main image and JPEG.
    zal = by_file["main-zalando.png"]
    assert (zal["width"], zal["height"]) == (1801, 2600) and zal["marketplace"] == "zalando"
    assert by_file["main-zalando.jpg"]["derived_from"] == "main-zalando.png"
    [verdict] = zal["marketplace_rules"]
    assert verdict["marketplace"] == "zalando" and verdict["file"] == "main-zalando.jpg" and verdict["ok"] is True
    assert {"aspect", "min_size", "background", "format"} <= set(verdict["rules"])
    assert all(v["ok"] for v in verdict["rules"].values())
    # Amazon's, Shopify's and Etsy's rules are met by the generic 2000x2000 main: it is shared, and says so.
    shared = {v["marketplace"]: v for v in by_file["main.png"]["marketplace_rules"]}
    assert set(shared) == {"amazon", "shopify", "etsy"} and all(v["ok"] for v in shared.values())
    assert shared["amazon"]["file"] == "main.jpg" and shared["amazon"]["rules"]["fill"]["ok"] is True
    assert not any(f.startswith(("main-amazon", "main-shopify", "main-etsy")) for f in by_file)
    assert m["quality"]["marketplace_outputs"] == {"zalando": "main-zalando.png"}


def test_marketplace_outputs_pass_verify(market_entry):
    results = {r["file"]: r for r in verify_entry(market_entry)}
    assert results["main-zalando.png"]["ok"] and results["main-zalando.png"]["white_background_ok"]


def test_no_marketplace_keeps_the_generic_outputs(tmp_path, drawn_products):
    d = _sku(tmp_path / "p", "tee", drawn_products["tee"][0], "backgrounds: [white, studio]\n")
    assert process_sku(load_product(d), tmp_path / "c", classic_engine(), RenderOptions(canvas=1200)).status == "ok"
    m = read_manifest(tmp_path / "c" / "tee" / "manifest.json")
    assert sorted(o["file"] for o in m["outputs"]) == ["lifestyle-studio-s0.png", "main.jpg", "main.png"]
    assert not any("marketplace_rules" in o or "marketplace" in o for o in m["outputs"])


@pytest.mark.slow
def test_unknown_marketplace_fails_that_sku_only_in_a_batch(prefect_harness, tmp_path, drawn_products):
    import json

    from flows.catalog_batch import catalog_batch

    products, catalog = tmp_path / "p", tmp_path / "c"
    _sku(products, "tee-ok", drawn_products["tee"][0], "backgrounds: [white]\nmarketplaces: [zalando]\n")
    _sku(products, "tee-bad", drawn_products["tee"][0], "backgrounds: [white]\nmarketplaces: [amazon, ebay]\n")
    result = catalog_batch(str(products), str(catalog), engine="classic")
    assert result["counts"] == {"ok": 1, "failed": 1, "skipped": 0} and result["failed"] == ["tee-bad"]
    report = {e["sku"]: e for e in json.loads(Path(result["report_path"]).read_text())["entries"]}
    error = report["tee-bad"]["error"]
    assert "product.yaml" in error and "marketplaces.1" in error and "'ebay'" in error
    assert "main-zalando.png" in report["tee-ok"]["outputs"]
    assert not (catalog / "tee-bad").exists()

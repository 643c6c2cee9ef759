"""A small real catalog for the review tests: two SKUs rendered by the classic engine at 256 px.

The tee's title carries markup and a script, to check that every page escapes catalog text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: The tee's product title: it must show as text and never run.
HOSTILE_TITLE = '<script>window.__vitrine_xss = 1;</script><img src=x onerror="window.__vitrine_xss = 2"> Tee & "co"'


def build_review_catalog(root: Path) -> Path:
    """Render ``root/products`` into ``root/catalog`` and return the catalog (about 2 s on a CPU)."""
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku
    from pipelines.engines.registry import get_engine
    from pipelines.imageio import save_image
    from pipelines.product import load_product
    from pipelines.samples import draw_tee, draw_tote

    products, catalog = root / "products", root / "catalog"
    specs = {
        "tee-navy": (draw_tee(256)[0], f"title: '{HOSTILE_TITLE}'\nbackgrounds: [white, studio]\nseeds: [0]\n"),
        "tote-canvas": (draw_tote(256)[0], "title: Canvas tote\nbackgrounds: [white]\n"),
    }
    engine = get_engine("classic")
    options = RenderOptions(canvas=256, lifestyle_size=(200, 256))
    for sku, (rgb, spec) in specs.items():
        d = products / sku
        d.mkdir(parents=True)
        save_image(d / "front.png", rgb)
        (d / "product.yaml").write_text(spec, encoding="utf-8")
        result = process_sku(load_product(d, root=products), catalog, engine, options)
        if result.status != "ok":
            raise RuntimeError(f"{sku}: {result.error}")
    return catalog


def copy_catalog(template: Path, dest: Path) -> Path:
    """A private copy of a catalog (tests change manifests)."""
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns(".locks"))
    return dest


def build_scale_catalog(template: Path, dest: Path, n: int, *, failed: int = 0) -> Path:
    """A catalog of ``n`` SKUs made fast from one rendered SKU of ``template`` (no rendering).

    Every SKU ``sku-00000``... is a copy of ``template/tee-navy`` (pictures hard-linked, the manifest
    rewritten with its own SKU). Some are varied so that filters have something to find: every 7th has a
    quality flag on its main output (needs attention), every 5th is for marketplace ``amazon``, every
    11th says it was rendered by ``grounded-sam``. ``failed`` more SKUs (``bad-00000``...) are listed as
    failed, with their error, in a batch report ``_reports/*.json``; they have no folder.
    """
    import json
    import os

    src = template / "tee-navy"
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    files = [p.relative_to(src) for p in src.rglob("*") if p.is_file() and p.name != "manifest.json"]
    dest.mkdir(parents=True)
    for i in range(n):
        sku = f"sku-{i:05d}"
        d = dest / sku
        for rel in files:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src / rel, d / rel)
        m = json.loads(json.dumps(manifest))
        m["sku"] = sku
        m["product"]["title"] = f"Product {i}"
        if i % 7 == 3:
            m["outputs"][0]["quality"]["flags"] = [  # the manifest's format (pipelines.quality.flags)
                {"check": "fill", "flag": "low-fill", "message": "fill 0.41 below the rule's 0.80"}]
        if i % 5 == 0:
            m["product"]["marketplaces"] = ["amazon"]
        if i % 11 == 0:
            m["engine"]["name"] = "grounded-sam"
        (d / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    if failed:
        entries = [{"sku": f"bad-{i:05d}", "status": "failed", "error": f"bad-{i:05d}/front.jpg: cannot read image",
                    "outputs": []} for i in range(failed)]
        entries += [{"sku": f"sku-{i:05d}", "status": "ok", "error": None, "outputs": ["main.png"]} for i in range(n)]
        report = {"report_version": 1, "run_id": "scale", "products_dir": str(dest.parent / "products"),
                  "catalog_dir": str(dest), "engine": None, "started_at": "2026-01-01T00:00:00+00:00",
                  "finished_at": "2026-01-01T00:01:00+00:00", "seconds": 60.0,
                  "counts": {"ok": n, "failed": failed, "skipped": 0}, "entries": entries, "contact_sheets": []}
        (dest / "_reports").mkdir()
        (dest / "_reports" / "20260101T000100Z-scale.json").write_text(json.dumps(report), encoding="utf-8")
    return dest

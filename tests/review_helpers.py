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
    from pipelines.catalog import RenderOptions, process_sku
    from pipelines.engine import get_engine
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

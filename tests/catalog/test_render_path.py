"""One render path: the manifest's records are built in `pipelines.catalog.manifest` for products, try-on SKUs
and edits alike, every output's pixels pass `check_guarantee` before they are written, and a SKU's kind
picks its render step."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipelines.catalog.edits as edits_module
import pipelines.catalog.manifest as manifest_module
import pipelines.catalog.product_render as product_module
import pipelines.catalog.tryon_render as tryon_module
from pipelines.catalog.edits import edit_output
from pipelines.catalog.guarantee import Guarantee, check_guarantee
from pipelines.catalog.manifest import (
    export_record,
    output_record,
    preservation_quality,
    read_manifest,
    validate_manifest,
    work_record,
)
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.product_render import ProductStep
from pipelines.catalog.render import RENDER_STEPS, choose_step, process_sku
from pipelines.catalog.tryon_render import TryOnStep
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.errors import VitrineError
from pipelines.imageio import save_image
from pipelines.product import load_product
from tests.helpers.edits import WarmerEditor

OPTIONS = RenderOptions(canvas=192, lifestyle_size=(144, 180))
HEAD = ["file", "sha256", "kind", "format", "lossy", "width", "height"]
INPUT_KEYS = ["file", "sha256", "source_size", "size", "source_mode", "exif_rotated", "icc_converted", "scale",
              "has_alpha", "normalized", "role"]
SUBJECT_KEYS = ["input", "kind", "source", "reason", "bbox", "alpha", "mask", "metrics"]
ROOT = Path(__file__).resolve().parents[2]


# -- the builders ---------------------------------------------------------------------------------------------
def test_output_record_puts_the_common_head_first_the_kind_s_fields_in_order_and_review_last():
    rec = output_record("a.png", "0" * 64, "tryon", (10, 20), seed=3, source_input="p.png", quality={"x": 1})
    assert list(rec) == [*HEAD, "seed", "source_input", "quality", "review"]
    assert rec["format"] == "png" and rec["lossy"] is False and (rec["width"], rec["height"]) == (10, 20)
    assert rec["review"] == {"status": "pending"}
    assert output_record("a.png", "0" * 64, "main", (1, 1))["review"] is not rec["review"]  # never shared


def test_export_record_keeps_the_sha256_where_it_is_known():
    known = export_record("main.jpg", "jpeg", (8, 8), "main.png", sha256="1" * 64, background="white")
    assert list(known) == [*HEAD, "derived_from", "background", "review"] and known["lossy"] is True
    later = export_record("main-x.png", "png", (8, 8), "main-x.png", background="white", marketplace="x")
    assert list(later) == ["file", *HEAD[2:], "derived_from", "background", "marketplace", "review"]
    assert later["lossy"] is False
    assert work_record("work/a.png", "alpha", "2" * 64) == {"file": "work/a.png", "kind": "alpha", "sha256": "2" * 64}


def test_preservation_quality_with_and_without_a_guarantee():
    assert preservation_quality({"pixels": 5, "identical_fraction": 1.0}, 7) == {
        "preserved_pixels": 5, "preserved_identical_fraction": 1.0, "seam_band_pixels": 7}
    assert preservation_quality(None, 0) == {"preserved_pixels": 0, "seam_band_pixels": 0}


# -- the guarantee --------------------------------------------------------------------------------------------
def _guarantee(rule: str) -> tuple[np.ndarray, Guarantee]:
    ref = np.full((8, 8, 3), 100, np.uint8)
    keep = np.zeros((8, 8), np.uint8)
    keep[2:6, 2:6] = 255
    band = np.zeros((8, 8), np.uint8)
    band[1, :] = 255
    return ref.copy(), Guarantee(rule, reference=ref, keep=keep, alpha=keep, band=band, composite=ref.copy())


@pytest.mark.parametrize("rule", ["placement", "garment-transform", "garment-rule"])
def test_check_guarantee_refuses_a_changed_kept_pixel_and_a_seam_outside_its_band(rule):
    final, g = _guarantee(rule)
    final[1, 3] = 0  # inside the band: allowed
    assert check_guarantee(final, g, where="p.png", file="o.png")["identical_fraction"] == 1.0
    changed = final.copy()
    changed[3, 3] = 0
    with pytest.raises(VitrineError, match="refusing to write"):
        check_guarantee(changed, g, where="p.png", file="o.png")
    outside = final.copy()
    outside[7, 7] = 0
    with pytest.raises(VitrineError, match="1 pixels outside the band"):
        check_guarantee(outside, g, where="p.png", file="o.png")
    with pytest.raises(ValueError, match="unknown guarantee rule"):
        Guarantee("nothing", g.reference, g.keep, g.alpha, g.band)


# -- one path for the three kinds -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def entries(tmp_path_factory, drawn_products, astronaut_rgb):
    """A product entry, a try-on entry and an edit of each, every output record built through a spy."""
    root = tmp_path_factory.mktemp("one-path")
    products, catalog = root / "p", root / "c"
    tee = drawn_products["tee"][0][::4, ::4]
    (products / "tee").mkdir(parents=True)
    save_image(products / "tee" / "front.png", tee)
    (products / "tee" / "product.yaml").write_text("backgrounds: [white, studio]\n", encoding="utf-8")
    (products / "look").mkdir(parents=True)
    person = np.asarray(Image.fromarray(astronaut_rgb).resize((192, 192), Image.Resampling.LANCZOS))
    save_image(products / "look" / "person.png", person)
    save_image(products / "look" / "tee.png", tee)
    (products / "look" / "product.yaml").write_text("garment_type: upper\n", encoding="utf-8")

    built: list[tuple[str, str]] = []

    def spy(*args, **kwargs):
        rec = manifest_module.output_record(*args, **kwargs)
        built.append((rec["kind"], rec["file"]))
        return rec

    mp = pytest.MonkeyPatch()
    for module in (product_module, tryon_module, edits_module):
        mp.setattr(module, "output_record", spy)
    try:
        engine = get_engine("classic")
        for sku in ("tee", "look"):
            result = process_sku(load_product(products / sku), catalog, engine, OPTIONS)
            assert result.status == "ok", result.error
        edit_output(catalog, "tee", "lifestyle-studio-s0.png", "warmer light", WarmerEditor())
        edit_output(catalog, "look", "tryon-tee.png", "warmer light", WarmerEditor())
    finally:
        mp.undo()
    return catalog, built


def test_every_output_of_the_three_kinds_is_built_by_the_one_builder(entries):
    catalog, built = entries
    pngs = {(o["kind"], o["file"]) for sku in ("tee", "look")
            for o in read_manifest(catalog / sku / "manifest.json")["outputs"] if o["kind"] != "export"}
    assert pngs == set(built)
    assert {kind for kind, _ in built} == {"main", "lifestyle", "tryon", "edit"}


def test_product_tryon_and_edit_records_share_one_shape_and_validate(entries):
    catalog, _ = entries
    tee = read_manifest(catalog / "tee" / "manifest.json")
    look = read_manifest(catalog / "look" / "manifest.json")
    for m in (tee, look):
        validate_manifest(m)
        assert all(list(i) == INPUT_KEYS for i in m["inputs"] if i["role"] != "spec")
        assert all(list(s)[:len(SUBJECT_KEYS)] == SUBJECT_KEYS for s in m["subjects"])
        assert all(list(w) == ["file", "kind", "sha256"] for w in m["work"])
        for o in m["outputs"]:
            assert list(o)[:2] == ["file", "sha256"] or o["kind"] == "export"
            assert {"kind", "format", "lossy", "width", "height", "review"} <= set(o)
            if o["kind"] != "export":
                assert list(o)[:len(HEAD)] == HEAD
                q = o["quality"]
                assert q["preserved_pixels"] >= 0 and q["seam_band_pixels"] >= 0
    by_kind = {o["kind"]: o for m in (tee, look) for o in m["outputs"]}
    product, tryon = by_kind["main"], by_kind["tryon"]
    edits = {o["derived_from"]: o for m in (tee, look) for o in m["outputs"] if o["kind"] == "edit"}
    for rec in (product, tryon, *edits.values()):  # the guarantee's masks and figures, whatever made the output
        assert {"product_mask", "preserve_mask", "seam_band"} <= set(rec)
        assert rec["quality"]["preserved_identical_fraction"] == 1.0
    assert "placement" in edits["lifestyle-studio-s0.png"] and "garment_transform" in edits["tryon-tee.png"]
    assert edits["tryon-tee.png"]["edit"]["garment"]["recomposited"] is True
    for sku in ("tee", "look"):
        results = verify_entry(catalog / sku)
        assert results and all(r["ok"] for r in results), results


def test_a_sku_s_kind_picks_its_render_step(tmp_path):
    assert [type(s) for s in RENDER_STEPS] == [TryOnStep, ProductStep]
    d = tmp_path / "x"
    d.mkdir()
    save_image(d / "person.png", np.full((16, 16, 3), 90, np.uint8))
    save_image(d / "tee.png", np.full((16, 16, 3), 200, np.uint8))
    assert isinstance(choose_step(load_product(d)), TryOnStep)
    (d / "person.png").unlink()
    assert isinstance(choose_step(load_product(d)), ProductStep)


@pytest.mark.parametrize("package", ["tryon", "edit"])
def test_the_pixel_packages_do_not_import_the_catalog(package):
    for path in sorted((ROOT / "pipelines" / package).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                  and c.value.startswith("pipelines.")]
        assert not [n for n in names if n.startswith("pipelines.catalog")], path

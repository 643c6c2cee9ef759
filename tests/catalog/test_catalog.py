"""A SKU end to end through the classic engine, without Prefect: outputs, manifest, guarantees."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import is_up_to_date, process_sku
from pipelines.catalog.store import render_lock
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.imageio import save_image, sha256_file
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.product import load_product
from pipelines.quality.checks import iou

TEE_SPEC = "title: Tee\ngarment_type: upper\nbackgrounds: [white, studio]\nseeds: [0]\n"


def _make_product(root: Path, sku: str, rgb: np.ndarray, spec: str = TEE_SPEC, name: str = "front.png") -> Path:
    d = root / sku
    d.mkdir(parents=True, exist_ok=True)
    save_image(d / name, rgb)
    (d / "product.yaml").write_text(spec)
    return d


@pytest.fixture(scope="module")
def engine():
    return get_engine("classic")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, drawn_products, engine):
    """One rendered tee SKU, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("cat")
    products, catalog = root / "products", root / "catalog"
    _make_product(products, "tee", drawn_products["tee"][0])
    result = process_sku(load_product(products / "tee", root=products), catalog, engine)
    return result, catalog / "tee", products


def test_sku_renders_ok_with_expected_outputs(rendered):
    result, sku_dir, _ = rendered
    assert result.status == "ok", result.error
    assert set(result.outputs) == {"main.png", "main.jpg", "lifestyle-studio-s0.png"}
    for name in result.outputs:
        assert (sku_dir / name).is_file()
    main = Image.open(sku_dir / "main.png")
    assert main.size == (2000, 2000) and main.mode == "RGB"
    assert Image.open(sku_dir / "lifestyle-studio-s0.png").size == (1600, 2000)
    assert Image.open(sku_dir / "main.jpg").format == "JPEG"


def test_manifest_is_complete_and_valid(rendered):
    _, sku_dir, products = rendered
    m = read_manifest(sku_dir / "manifest.json")
    validate_manifest(m)
    assert m["sku"] == "tee" and m["status"] == "ok" and m["engine"]["name"] == "classic"
    assert m["engine"]["reason"]
    assert m["inputs"][0]["sha256"] == sha256_file(products / "tee" / "front.png")
    assert {i["role"] for i in m["inputs"]} == {"main", "spec"}
    for rec in m["outputs"] + m["work"]:
        assert sha256_file(sku_dir / rec["file"]) == rec["sha256"], rec["file"]
    by_file = {o["file"]: o for o in m["outputs"]}
    for o in m["outputs"]:
        # the 512 px tee is enlarged ~4.8x into the 2000 px main image: flagged ``upscaled`` (quality flags)
        source = by_file.get(o.get("derived_from"), o)
        assert o["review"]["status"] == ("needs-attention" if source["quality"]["flags"] else "pending")
        if "placement" in o:
            for key in ("product_mask", "preserve_mask", "seam_band"):
                assert (sku_dir / o[key]).is_file()
    assert m["parameters"]["render"]["fill"] == 0.85
    assert m["timings"]["total"] > 0
    assert "numpy" in m["packages"] and "pillow" in m["packages"]
    assert all(model["licence"] for model in m["models"])


def test_main_image_passes_the_white_background_rule(rendered):
    _, sku_dir, _ = rendered
    m = read_manifest(sku_dir / "manifest.json")
    main = next(o for o in m["outputs"] if o["kind"] == "main")
    assert main["quality"]["white_background"]["ok"] is True
    assert 0.84 <= main["quality"]["fill"] <= 0.86
    img = np.asarray(Image.open(sku_dir / "main.png"))
    assert (img[0] == 255).all() and (img[-1] == 255).all() and (img[:, 0] == 255).all()


def test_product_pixels_are_bit_identical_after_the_whole_pipeline(rendered):
    _, sku_dir, _ = rendered
    results = verify_entry(sku_dir)
    assert len(results) == 2
    for r in results:
        assert r["pixels"] > 500_000  # the preserve mask covers the garment, not a sliver
        assert r["identical_fraction"] == 1.0 and r["max_abs_diff"] == 0


def test_preserve_mask_matches_the_drawn_garment(rendered, drawn_products):
    """The recorded product mask, mapped back through the placement, is the garment."""
    _, sku_dir, _ = rendered
    m = read_manifest(sku_dir / "manifest.json")
    subj = m["subjects"][0]
    mask = np.asarray(Image.open(sku_dir / subj["mask"]))
    assert iou(mask, drawn_products["tee"][1]) >= 0.98
    assert subj["kind"] == "product" and subj["source"] == "classic-cutout"


def test_tampered_output_is_detected(rendered, tmp_path):
    _, sku_dir, _ = rendered
    copy = tmp_path / "tee"
    shutil.copytree(sku_dir, copy)
    img = np.asarray(Image.open(copy / "main.png")).copy()
    keep = np.asarray(Image.open(copy / "work" / "main.preserve-mask.png")) > 0
    ys, xs = np.nonzero(keep)
    img[ys[len(ys) // 2], xs[len(xs) // 2]] ^= 1
    Image.fromarray(img).save(copy / "main.png")
    main = next(r for r in verify_entry(copy) if r["file"] == "main.png")
    assert main["identical"] == main["pixels"] - 1


def test_rerun_skips_unchanged_and_redoes_changed(tmp_path, drawn_products, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    d = _make_product(products, "tote", drawn_products["tote"][0], spec="backgrounds: [white]\n")
    first = process_sku(load_product(d, root=products), catalog, engine)
    assert first.status == "ok"
    mtime = (catalog / "tote" / "manifest.json").stat().st_mtime_ns
    second = process_sku(load_product(d, root=products), catalog, engine)
    assert second.status == "skipped" and second.reason == "unchanged"
    assert (catalog / "tote" / "manifest.json").stat().st_mtime_ns == mtime
    # A parameter change (another background) is a change.
    (d / "product.yaml").write_text("backgrounds: [white, texture]\n")
    third = process_sku(load_product(d, root=products), catalog, engine)
    assert third.status == "ok" and "lifestyle-texture-s0.png" in third.outputs
    # Different render options are a change too.
    fourth = process_sku(load_product(d, root=products), catalog, engine, RenderOptions(fill=0.8))
    assert fourth.status == "ok"


def test_broken_sku_fails_with_the_file_named_and_leaves_nothing(tmp_path, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    d = _make_product(products, "blank", np.full((300, 300, 3), 240, np.uint8))
    result = process_sku(load_product(d, root=products), catalog, engine)
    assert result.status == "failed"
    assert "front.png" in result.error and "no product found" in result.error
    assert not (catalog / "blank").exists()
    assert not any((catalog / ".staging").iterdir())


def test_crash_mid_render_leaves_no_partial_entry_and_keeps_the_old_one(tmp_path, drawn_products, engine,
                                                                      monkeypatch):
    products, catalog = tmp_path / "p", tmp_path / "c"
    d = _make_product(products, "dress", drawn_products["dress"][0], spec="backgrounds: [white]\n")
    assert process_sku(load_product(d, root=products), catalog, engine).status == "ok"
    before = sorted(p.name for p in (catalog / "dress").rglob("*"))
    old_manifest = (catalog / "dress" / "manifest.json").read_bytes()
    (d / "product.yaml").write_text("backgrounds: [white, studio]\n")

    import pipelines.catalog.workfiles as cat

    calls = {"n": 0}
    real = cat.save_image

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (injected)")
        return real(*a, **k)

    monkeypatch.setattr(cat, "save_image", flaky)
    result = process_sku(load_product(d, root=products), catalog, engine)
    assert result.status == "failed" and "disk full" in result.error
    assert sorted(p.name for p in (catalog / "dress").rglob("*")) == before
    assert (catalog / "dress" / "manifest.json").read_bytes() == old_manifest
    assert not any((catalog / ".staging").iterdir())


def test_a_locked_sku_is_left_to_the_run_holding_it(tmp_path, drawn_products, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    d = _make_product(products, "tee", drawn_products["tee"][0], spec="backgrounds: [white]\n")
    with render_lock(catalog, "tee"):  # another run rendering it (a reviewer's short sku_lock is waited for)
        result = process_sku(load_product(d, root=products), catalog, engine)
    assert result.status == "skipped" and "locked" in result.reason
    assert not (catalog / "tee").exists()


def test_mask_override_takes_precedence_and_is_recorded(tmp_path, drawn_products, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    rgb, truth = drawn_products["tee"]
    d = _make_product(products, "tee", rgb, spec="backgrounds: [white]\n")
    override = np.full(truth.shape, 128, np.uint8)  # grey: let the model decide...
    override[:, : truth.shape[1] // 2] = 0  # ...except: exclude the left half
    (d / "masks").mkdir()
    Image.fromarray(override).save(d / "masks" / "product.png")
    result = process_sku(load_product(d, root=products), catalog, engine)
    assert result.status == "ok", result.error
    m = read_manifest(catalog / "tee" / "manifest.json")
    subj = m["subjects"][0]
    assert subj["source"].endswith("+override") and subj["metrics"]["override"] == "masks/product.png"
    mask = np.asarray(Image.open(catalog / "tee" / subj["mask"]))
    assert not mask[:, : truth.shape[1] // 2].any()
    right = truth.copy()
    right[:, : truth.shape[1] // 2] = 0
    assert iou(mask, right) >= 0.97


def test_override_of_the_wrong_size_is_an_error_naming_it(tmp_path, drawn_products, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    d = _make_product(products, "tee", drawn_products["tee"][0], spec="backgrounds: [white]\n")
    (d / "masks").mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "masks" / "product.png")
    result = process_sku(load_product(d, root=products), catalog, engine)
    assert result.status == "failed" and "masks/product.png" in result.error and "10x10" in result.error


def test_transparent_png_uses_its_own_alpha(tmp_path, drawn_products, engine):
    products, catalog = tmp_path / "p", tmp_path / "c"
    rgb, truth = drawn_products["dress"]
    d = products / "cut"
    d.mkdir(parents=True)
    save_image(d / "front.png", rgb, alpha=truth)
    result = process_sku(load_product(d, root=products), catalog, engine)
    assert result.status == "ok", result.error
    m = read_manifest(catalog / "cut" / "manifest.json")
    assert m["subjects"][0]["source"] == "input-alpha"
    assert all(r["identical_fraction"] == 1.0 for r in verify_entry(catalog / "cut"))


def test_is_up_to_date_rejects_a_corrupt_manifest(rendered, tmp_path):
    _, sku_dir, _ = rendered
    copy = tmp_path / "tee"
    shutil.copytree(sku_dir, copy)
    h = json.loads((copy / "manifest.json").read_text())["content_hash"]
    assert is_up_to_date(copy, h)
    (copy / "manifest.json").write_text("{not json")
    assert not is_up_to_date(copy, h)


def test_reviews_of_unchanged_outputs_survive_a_re_render(tmp_path, drawn_products, engine):
    from pipelines.catalog.review import record_decision

    products, catalog = tmp_path / "p", tmp_path / "c"
    d = _make_product(products, "tee", drawn_products["tee"][0], spec="backgrounds: [white, studio]\n")
    assert process_sku(load_product(d, root=products), catalog, engine).status == "ok"
    record_decision(catalog, "tee", "main.png", "approve")
    record_decision(catalog, "tee", "lifestyle-studio-s0.png", "reject", note="backdrop too grey")

    # A new background: the two existing outputs come out byte-identical and keep their reviews.
    (d / "product.yaml").write_text("backgrounds: [white, studio, texture]\n")
    assert process_sku(load_product(d, root=products), catalog, engine).status == "ok"
    m = read_manifest(catalog / "tee" / "manifest.json")
    validate_manifest(m)
    status = {o["file"]: o["review"]["status"] for o in m["outputs"]}
    assert status["main.png"] == "approved" and status["main.jpg"] == "approved"
    assert status["lifestyle-studio-s0.png"] == "rejected"
    texture = next(o for o in m["outputs"] if o["file"] == "lifestyle-texture-s0.png")
    assert status["lifestyle-texture-s0.png"] == ("needs-attention" if texture["quality"]["flags"] else "pending")
    note = next(o for o in m["outputs"] if o["file"] == "lifestyle-studio-s0.png")["review"]["note"]
    assert note == "backdrop too grey"
    assert m["review"]["status"] == "rejected" and m["review"]["carried_over"] is True

    # Another main-image fill: main.png's pixels change, so its review starts over; the lifestyle
    # images (their own fill) are the same bytes and keep theirs.
    assert process_sku(load_product(d, root=products), catalog, engine, RenderOptions(fill=0.8)).status == "ok"
    m = read_manifest(catalog / "tee" / "manifest.json")
    status = {o["file"]: o["review"]["status"] for o in m["outputs"]}
    fresh = "needs-attention" if next(o for o in m["outputs"] if o["file"] == "main.png")["quality"]["flags"] else "pending"
    assert status["main.png"] == fresh and status["main.jpg"] == fresh  # the 512 px tee is flagged upscaled
    assert status["lifestyle-studio-s0.png"] == "rejected"

"""Try-on SKUs through the per-SKU pipeline (`pipelines.catalog.render.process_sku`): a product folder holding a
person photo (``person.*``) and garment photos, on the classic engine (warp) and the tiny ``flux`` engine
(FLUX.1 Fill / Kontext), with the licence guard, manifests and ``vitrine verify``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.verify import verify_entry
from pipelines.engines.registry import get_engine
from pipelines.imageio import save_image
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.product import load_product
from pipelines.catalog.tryon_render import tryon_roles
from pipelines.tryon.warp import GarmentTransform, apply_transform
from tests.helpers.tryon import fast_settings, tiny_flux_root

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")
OPTIONS = RenderOptions(canvas=256, lifestyle_size=(192, 240))


def make_look(root: Path, sku: str, person: np.ndarray, garment: np.ndarray, spec: str) -> Path:
    d = root / sku
    d.mkdir(parents=True, exist_ok=True)
    save_image(d / "person.png", person)
    save_image(d / "tee.png", garment)
    (d / "product.yaml").write_text(spec, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def products(tmp_path_factory, astronaut_rgb, drawn_products):
    root = tmp_path_factory.mktemp("tryon-products")
    person = np.asarray(Image.fromarray(astronaut_rgb).resize((256, 256), Image.Resampling.LANCZOS))
    tee = np.asarray(Image.fromarray(drawn_products["tee"][0]).resize((256, 256), Image.Resampling.LANCZOS))
    make_look(root, "look-classic", person, tee, "title: Navy tee\ngarment_type: upper\n")
    make_look(root, "look-auto", person, tee, "garment_type: upper\nseeds: [1, 2]\n")
    make_look(root, "look-commercial", person, tee, "garment_type: upper\ncommercial: true\n")
    make_look(root, "look-commercial-fill", person, tee,
              "garment_type: upper\ncommercial: true\ntryon:\n  method: fill\n")
    make_look(root, "look-shoes", person, tee, "garment_type: shoes\n")
    return root


@pytest.fixture(scope="module")
def classic_catalog(products, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("catalog-classic")
    result = process_sku(load_product(products / "look-classic"), catalog, get_engine("classic"), OPTIONS)
    assert result.status == "ok", result.error
    return catalog


@pytest.fixture(scope="module")
def flux_engine():
    from pipelines.engines.generative import flux_engine as build_flux_engine

    return build_flux_engine(model_root=tiny_flux_root(), settings=fast_settings())


@pytest.fixture(scope="module")
def flux_results(products, flux_engine, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("catalog-flux")
    results = {sku: process_sku(load_product(products / sku), catalog, flux_engine, OPTIONS)
               for sku in ("look-auto", "look-commercial", "look-commercial-fill")}
    return catalog, results


def test_a_person_photo_plus_garment_photos_is_a_tryon_sku(products, tmp_path):
    person, garments = tryon_roles(load_product(products / "look-classic"))
    assert person.name == "person.png" and [g.name for g in garments] == ["tee.png"]
    lone = tmp_path / "lone"
    lone.mkdir()
    save_image(lone / "person.jpg", np.full((32, 32, 3), 128, np.uint8))
    assert tryon_roles(load_product(lone)) is None  # a lone person photo is an ordinary SKU
    (lone / "product.yaml").write_text("tryon:\n  person: nobody.png\n", encoding="utf-8")
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="nobody.png") as err:
        tryon_roles(load_product(lone))
    assert err.value.key == "tryon.person" and err.value.path.endswith("product.yaml")


def test_classic_engine_makes_a_warp_tryon_that_verifies_from_its_files(classic_catalog):
    sku_dir = classic_catalog / "look-classic"
    m = read_manifest(sku_dir / "manifest.json")
    validate_manifest(m)
    roles = {i["file"]: i["role"] for i in m["inputs"]}
    assert roles == {"person.png": "person", "tee.png": "garment", "product.yaml": "spec"}
    (out,) = m["outputs"]
    assert out["file"] == "tryon-tee.png" and out["kind"] == "tryon"
    assert (out["width"], out["height"]) == (256, 256)
    assert out["tryon"]["method"] == "warp" and "no FLUX.1 Fill" in out["tryon"]["method_reason"]
    q = out["quality"]
    assert q["preserved_identical_fraction"] == 1.0 and q["preserved_pixels"] > 1000
    assert 0.5 < q["garment_fidelity"]["ssim"] <= 1.0 and q["garment_fidelity"]["delta_e00_mean"] < 5
    # from outside: the normalised garment photo through the recorded transform equals the output
    garment = np.asarray(Image.open(sku_dir / "work/input-tee.png").convert("RGB"))
    galpha = np.asarray(Image.open(sku_dir / "work/alpha-tee.png"))  # a body warp layers the sleeves by it
    placed = apply_transform(garment, GarmentTransform.from_json(out["garment_transform"]), alpha=galpha)
    img = np.asarray(Image.open(sku_dir / out["file"]).convert("RGB"))
    keep = np.asarray(Image.open(sku_dir / out["preserve_mask"])) > 0
    assert np.array_equal(img[keep], placed[keep])
    # and the person photo is untouched outside the try-on region
    person = np.asarray(Image.open(sku_dir / "work/input-person.png").convert("RGB"))
    region = np.asarray(Image.open(sku_dir / out["tryon_region"])) > 0
    assert np.array_equal(img[~region], person[~region])
    assert [r["ok"] for r in verify_entry(sku_dir)] == [True]
    assert m["subjects"][0]["worn"]["source"] == "pose-region"


def test_vitrine_verify_checks_tryon_entries(classic_catalog, tmp_path, capsys):
    import shutil

    from flows.cli import main

    assert main(["verify", str(classic_catalog)]) == 0
    broken = tmp_path / "broken"
    shutil.copytree(classic_catalog, broken)
    out = broken / "look-classic" / "tryon-tee.png"
    img = np.asarray(Image.open(out).convert("RGB")).copy()
    keep = np.asarray(Image.open(broken / "look-classic/work/tryon-tee.preserve-mask.png")) > 0
    img[keep] = 255 - img[keep]
    save_image(out, img)
    assert main(["verify", str(broken)]) == 1
    assert "CHANGED" in capsys.readouterr().out


def test_flux_engine_auto_uses_fill_per_seed_and_records_models_and_licences(flux_results):
    catalog, results = flux_results
    r = results["look-auto"]
    assert r.status == "ok", r.error
    assert r.outputs == ["tryon-tee-s1.png", "tryon-tee-s2.png"]
    m = read_manifest(catalog / "look-auto" / "manifest.json")
    outs = {o["file"]: o for o in m["outputs"]}
    assert [outs[f]["seed"] for f in r.outputs] == [1, 2]
    t = outs["tryon-tee-s1.png"]["tryon"]
    assert t["method"] == "fill" and t["method_reason"].startswith("auto: black-forest-labs/FLUX.1-Fill-dev found")
    (model,) = t["models"]
    assert model["id"] == "black-forest-labs/FLUX.1-Fill-dev" and model["licence"] == "FLUX.1-dev-Non-Commercial"
    assert model["commercial"] is False
    listed = {mm["id"]: mm for mm in m["models"]}
    assert listed["black-forest-labs/FLUX.1-Fill-dev"]["licence"] == "FLUX.1-dev-Non-Commercial"
    assert all("licence" in mm for mm in m["models"])
    q = outs["tryon-tee-s1.png"]["quality"]
    assert q["model_garment_fidelity"]["ssim"] is not None and q["garment_fidelity"]["ssim"] > 0.5
    assert all(v["ok"] for v in verify_entry(catalog / "look-auto"))
    a, b = (np.asarray(Image.open(catalog / "look-auto" / f)) for f in r.outputs)
    assert a.shape == b.shape == (256, 256, 3) and not np.array_equal(a, b)  # seeds differ


def test_commercial_sku_gets_warp_not_dev_models(flux_results):
    catalog, results = flux_results
    r = results["look-commercial"]
    assert r.status == "ok", r.error
    m = read_manifest(catalog / "look-commercial" / "manifest.json")
    (out,) = m["outputs"]
    assert out["tryon"]["method"] == "warp" and "non-commercial" in out["tryon"]["method_reason"]
    assert out["tryon"]["models"] == []  # no Fill even for the uncovered clothes
    assert out["tryon"]["method_details"]["uncovered_inpainting"].startswith(("opencv", "none"))


def test_commercial_sku_asking_for_fill_is_refused_naming_the_alternatives(flux_results):
    catalog, results = flux_results
    r = results["look-commercial-fill"]
    assert r.status == "failed"
    for text in ("commercial", "FLUX.1-Fill-dev", "FLUX.1-dev-Non-Commercial", "FLUX.1-schnell", "SDXL",
                 "product.yaml"):
        assert text in r.error
    assert not (catalog / "look-commercial-fill").exists()


def test_a_garment_type_that_cannot_be_worn_fails_naming_the_key(products, tmp_path):
    r = process_sku(load_product(products / "look-shoes"), tmp_path / "c", get_engine("classic"), OPTIONS)
    assert r.status == "failed" and "[garment_type]" in r.error and "cannot be tried on" in r.error


def test_manifest_parameters_record_the_method(classic_catalog):
    m = json.loads((classic_catalog / "look-classic" / "manifest.json").read_text())
    assert m["parameters"]["tryon"]["method"] == "warp"
    assert m["parameters"]["render"]["identity"] is None and m["parameters"]["render"]["commercial"] is False


def test_grounded_sam_engine_segments_what_the_person_wears(products, tmp_path):
    """With the grounded-sam engine (tiny random GroundingDINO + SAM here) the worn clothes come from the
    garment preset's text-prompted segmentation, not from the pose region."""
    from pipelines.dev_models.tiny import build_tiny_models

    models = tmp_path / "models"
    build_tiny_models(models, ["grounding-dino", "sam"])
    engine = get_engine("grounded-sam", model_root=models)
    real, calls = engine.segmenter.pipeline(), []

    def spy(image, phrases, **kw):
        out = real(image, phrases, **kw)
        calls.append((list(phrases), bool((out.mask > 0).any())))
        return out

    engine.segmenter.pipeline = lambda: spy
    r = process_sku(load_product(products / "look-classic"), tmp_path / "c", engine, OPTIONS)
    assert r.status == "ok", r.error
    m = read_manifest(tmp_path / "c" / "look-classic" / "manifest.json")
    worn_calls = [c for c in calls if "shirt" in c[0]]  # the "upper" preset: shirt, t-shirt, top...
    assert worn_calls
    assert m["subjects"][0]["worn"]["source"] == ("segmenter" if worn_calls[-1][1] else "pose-region")
    assert m["engine"]["name"] == "grounded-sam" and m["outputs"][0]["tryon"]["method"] == "warp"
    assert all(v["ok"] for v in verify_entry(tmp_path / "c" / "look-classic"))

"""Kontext edits on the tiny FLUX.1-Kontext-dev through Vitrine's loader: preferred resolutions restored to the
exact size, the garment rule, identity presets, and edits written as new versions of catalog outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog.verify import verify_entry
from pipelines.catalog.edits import EditConflictError, edit_output, editable_outputs
from pipelines.edit.identity import apply_batch_overrides, identity_dirs, load_identity, read_identity
from pipelines.edit.kontext import UPSCALE_LIMIT, EditParams, native_size, preferred_resolutions
from pipelines.edit.rules import classify_instruction, product_garment_words, recomposite_garment
from pipelines.errors import InputError
from pipelines.imageio import save_image, sha256_file
from pipelines.catalog.manifest import read_manifest, validate_manifest
from tests.helpers.tryon import tiny_kontext

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")
FAST = EditParams(steps=2)


@pytest.fixture(scope="module")
def editor():
    return tiny_kontext()


@pytest.fixture(scope="module")
def template_catalog(tmp_path_factory):
    from tests.helpers.review import build_review_catalog

    return build_review_catalog(tmp_path_factory.mktemp("edit"))


@pytest.fixture()
def catalog(template_catalog, tmp_path):
    return shutil.copytree(template_catalog, tmp_path / "catalog", ignore=shutil.ignore_patterns(".locks"))


def _img(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# -- Kontext: preferred resolutions and the exact size ------------------------------------------------------
def test_preferred_resolutions_at_1024_are_diffusers_list():
    from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

    assert preferred_resolutions(1024, 16) == [tuple(r) for r in PREFERRED_KONTEXT_RESOLUTIONS]
    assert all(w % 4 == 0 and h % 4 == 0 for w, h in preferred_resolutions(32, 4))


@pytest.mark.parametrize("size", [(160, 200), (300, 120), (97, 61), (64, 64)])
@pytest.mark.parametrize("fit", ["pad", "stretch"])
def test_edit_output_has_the_exact_input_size_and_aspect(editor, size, fit):
    ed, _ = editor
    w, h = size
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = ed(img, "make the backdrop warmer", seed=1, params=EditParams(steps=2, fit=fit, resolution="preferred"))
    assert out.image.shape == (h, w, 3) and out.image.dtype == np.uint8
    mw, mh = out.record["model_size"]
    assert (mw, mh) in preferred_resolutions(ed.native_side(), ed.multiple())  # Kontext ran at a preferred size
    assert out.model_output.shape[:2] == (mh, mw)
    # the nearest preferred aspect ratio was chosen
    best = min(preferred_resolutions(ed.native_side(), ed.multiple()), key=lambda r: abs(np.log(r[0] / r[1] * h / w)))
    assert (mw, mh) == best
    if fit == "pad":  # the content box keeps the input's aspect ratio
        x0, y0, x1, y1 = out.record["content_box"]
        assert abs((x1 - x0) / (y1 - y0) / (w / h) - 1) <= 1 / (x1 - x0) + 1 / (y1 - y0) + 1e-9


@pytest.mark.parametrize("size", [(160, 200), (300, 120), (97, 61)])
@pytest.mark.parametrize("fit", ["pad", "stretch"])
def test_native_resolution_edits_are_not_upscaled(editor, size, fit):
    """By default Kontext works at the image's own size (rounded up to its multiple): no generated pixel is
    enlarged to reach the output, where the preferred ~1 MP resolutions enlarge a catalog image ~1.7x."""
    ed, _ = editor
    w, h = size
    img = np.random.default_rng(2).integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = ed(img, "make the backdrop warmer", seed=1, params=EditParams(steps=2, fit=fit))
    mw, mh = out.record["model_size"]
    assert out.image.shape == (h, w, 3) and out.model_output.shape[:2] == (mh, mw)
    assert mw % ed.multiple() == 0 and mh % ed.multiple() == 0
    assert w <= mw < w + ed.multiple() and h <= mh < h + ed.multiple()
    assert out.record["resolution"] == "native" and out.record["upscale"] <= 1.0
    preferred = ed.plan((w, h), EditParams(resolution="preferred", fit=fit))
    assert preferred["upscale"] > UPSCALE_LIMIT  # the old path enlarged these (tiny model: native side 32)


def test_native_resolution_is_capped_by_area_and_records_the_upscale(editor):
    ed, _ = editor
    # a 1600x2000 catalog image at FLUX.1's multiple of 16: exactly native under the 4.2 MP default cap
    assert native_size((1600, 2000), 4.2e6, 16) == (1600, 2000)
    assert native_size((1601, 1999), 4.2e6, 16) == (1616, 2000)
    plan = ed.plan((1600, 2000), EditParams())
    assert plan["model_size"] == [1600, 2000] and plan["upscale"] == 1.0
    # over the cap: scaled down to it (aspect kept), and the enlargement back is recorded
    plan = ed.plan((3200, 2000), EditParams(max_megapixels=1.6))
    mw, mh = plan["model_size"]
    assert mw * mh <= 1.6e6 + 16 * (mw + mh) and plan["upscale"] == pytest.approx(2.0, rel=0.02)
    capped = ed.plan((160, 200), EditParams(work_side=64))  # work_side caps the area at work_side**2
    assert capped["model_size"][0] * capped["model_size"][1] <= 64 * 64 + ed.multiple() * 200
    with pytest.raises(InputError, match="resolution"):
        EditParams(resolution="huge")
    with pytest.raises(InputError, match="max_megapixels"):
        EditParams(max_megapixels=0)


def test_edits_are_deterministic_per_seed_and_take_a_reference(editor):
    ed, _ = editor
    img = np.random.default_rng(1).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    a = ed(img, "marble floor", seed=5, params=FAST)
    b = ed(img, "marble floor", seed=5, params=FAST)
    c = ed(img, "marble floor", seed=6, params=FAST)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    ref = ed(img, "marble floor", seed=5, params=FAST, reference=img[:40])
    assert ref.image.shape == img.shape and ref.record["context_size"][0] > 60
    with pytest.raises(InputError, match="instruction"):
        ed(img, "  ", params=FAST)
    with pytest.raises(InputError, match="fit"):
        EditParams(fit="crop")


# -- the garment rule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("instruction, garment, person", [
    ("replace the floor with white marble", False, False),
    ("evening light", False, False),
    ("make the model smile", False, True),
    ("change the shirt to red", True, False),
    ("make the T-Shirt sleeves longer", True, False),
    ("warm evening light, keep the dress unchanged", False, False),
    ("put the product on top of a wooden table", False, False),
    ("a beach background and lighter jeans", True, False),
])
def test_instruction_targets_garment_rule(instruction, garment, person):
    t = classify_instruction(instruction)
    assert (t.garment, t.person) == (garment, person)
    assert recomposite_garment("auto", t) is (not garment)
    assert recomposite_garment("keep", t) is True and recomposite_garment("release", t) is False


def test_product_words_count_as_garment_words():
    words = product_garment_words("Navy tee", "cotton crew-neck tee")
    assert words == ("tee",)
    assert classify_instruction("make the tee brighter", extra_garment_words=words).garment
    with pytest.raises(InputError, match="garment policy"):
        recomposite_garment("maybe", classify_instruction("x"))


# -- identity presets ----------------------------------------------------------------------------------------
def _preset(dirpath: Path, name="ana", body="seed: 1234\nprompt: woman in her 30s, freckles\n", face=True) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    if face:
        save_image(dirpath / "face.png", np.full((40, 32, 3), 200, np.uint8))
        body += "reference_face: face.png\n"
    (dirpath / f"{name}.yaml").write_text(body, encoding="utf-8")
    return dirpath / f"{name}.yaml"


def test_identity_presets_load_by_name_or_path_and_bad_ones_name_the_key(tmp_path):
    path = _preset(tmp_path / "products" / "_identities")
    by_name = load_identity("ana", identity_dirs(tmp_path / "products"))
    by_path = load_identity(path)
    assert by_name == by_path and by_name.seed == 1234 and by_name.reference_face.name == "face.png"
    assert by_name.to_json()["reference_face"]["sha256"] == sha256_file(tmp_path / "products/_identities/face.png")
    with pytest.raises(InputError, match="not found; looked in") as err:
        load_identity("bob", identity_dirs(tmp_path / "products"))
    assert err.value.key == "identity"
    bad = _preset(tmp_path / "x", "bad", "seed: -1\nprompt: a\n", face=False)
    with pytest.raises(InputError) as err:
        read_identity(bad)
    assert err.value.key == "seed" and err.value.path == str(bad)
    bad = _preset(tmp_path / "x", "bad2", "seed: 1\nprompt: a\nhair: red\n", face=False)
    with pytest.raises(InputError, match="unknown key") as err:
        read_identity(bad)
    assert err.value.key == "hair"
    bad = _preset(tmp_path / "x", "bad3", "seed: 1\nprompt: a\nreference_face: missing.png\n", face=False)
    with pytest.raises(InputError, match="missing.png") as err:
        read_identity(bad)
    assert err.value.key == "reference_face"


def test_identity_preset_gives_every_sku_of_a_run_the_same_seed_and_prompt(tmp_path, drawn_products):
    from pipelines.catalog.options import RenderOptions
    from pipelines.catalog.render import process_sku
    from pipelines.engines.registry import get_engine
    from pipelines.product import load_product

    preset = read_identity(_preset(tmp_path / "ids"))
    opts = RenderOptions(canvas=128, lifestyle_size=(96, 128), identity=preset.to_json())
    seen = []
    for sku, spec in (("tee", "seeds: [1, 2]\nbackgrounds: [white, studio]\n"),
                      ("dress", "seeds: [7]\nbackgrounds: [studio]\nprompts:\n  person: a man\n")):
        d = tmp_path / "p" / sku
        d.mkdir(parents=True)
        save_image(d / "front.png", drawn_products[sku][0][::4, ::4])
        (d / "product.yaml").write_text(spec, encoding="utf-8")
        product = load_product(d)
        applied = apply_batch_overrides(product, opts)
        assert applied.spec.seeds == [1234] and applied.spec.prompts.person == preset.prompt
        r = process_sku(product, tmp_path / "c", get_engine("classic"), opts)
        assert r.status == "ok", r.error
        m = read_manifest(tmp_path / "c" / sku / "manifest.json")
        seen.append((m["parameters"]["render"]["identity"], sorted({o["seed"] for o in m["outputs"] if "seed" in o})))
        assert "lifestyle-studio-s1234.png" in r.outputs
    assert seen[0] == seen[1] and seen[0][0]["seed"] == 1234 and seen[0][1] == [0, 1234]


# -- edits as new versions ---------------------------------------------------------------------------------
def test_edit_keeps_the_original_links_the_version_and_keeps_garment_pixels(editor, catalog):
    ed, model = editor
    sku_dir = catalog / "tee-navy"
    before = read_manifest(sku_dir / "manifest.json")
    parent = {o["file"]: o for o in before["outputs"]}["lifestyle-studio-s0.png"]
    orig_bytes = (sku_dir / "lifestyle-studio-s0.png").read_bytes()
    r = edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "replace the floor with white marble", ed,
                    model=model, params=FAST, seed=3)
    assert r.new_output == "lifestyle-studio-s0.edit-1.png"
    # the original file and its manifest entry are unchanged
    assert (sku_dir / "lifestyle-studio-s0.png").read_bytes() == orig_bytes
    after = read_manifest(sku_dir / "manifest.json")
    validate_manifest(after)
    outs = {o["file"]: o for o in after["outputs"]}
    assert outs["lifestyle-studio-s0.png"] == parent
    new = outs[r.new_output]
    assert new["kind"] == "edit" and new["derived_from"] == "lifestyle-studio-s0.png"
    e = new["edit"]
    assert e["parent"] == "lifestyle-studio-s0.png" and e["parent_sha256"] == parent["sha256"]
    assert e["instruction"] == "replace the floor with white marble" and e["seed"] == 3 and e["version"] == 1
    assert e["model"]["id"] == "black-forest-labs/FLUX.1-Kontext-dev" and e["model"]["licence"] == "FLUX.1-dev-Non-Commercial"
    assert e["params"]["steps"] == 2 and e["kontext"]["output_size"] == [parent["width"], parent["height"]]
    assert e["garment"]["recomposited"] is True and e["garment"]["targets_garment"] is False
    assert any(m["id"] == "black-forest-labs/FLUX.1-Kontext-dev" for m in after["models"])
    assert new["review"]["status"] == "pending" and after["review"]["counts"]["pending"] >= 3
    # size and aspect preserved; garment pixels bit-identical inside the eroded mask; something else changed
    img, par = _img(sku_dir / r.new_output), _img(sku_dir / "lifestyle-studio-s0.png")
    assert img.shape == par.shape == (parent["height"], parent["width"], 3)
    keep = np.asarray(Image.open(sku_dir / new["preserve_mask"])) > 0
    assert keep.sum() > 1000 and np.array_equal(img[keep], par[keep])
    assert not np.array_equal(img[~keep], par[~keep])
    assert new["sha256"] == sha256_file(sku_dir / r.new_output)
    # and it verifies from outside like the original (the placement is linked)
    assert {v["file"]: v["ok"] for v in verify_entry(sku_dir)}[r.new_output] is True


def test_editing_the_garment_releases_its_pixels_unless_kept(editor, catalog):
    ed, model = editor
    sku_dir = catalog / "tee-navy"
    r = edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "make the tee red", ed, model=model, params=FAST)
    rec = r.record
    assert rec["edit"]["garment"]["recomposited"] is False and rec["edit"]["garment"]["garment_words"] == ["tee"]
    assert "placement" not in rec and "preserve_mask" not in rec  # nothing claims preserved pixels now
    keep = np.asarray(Image.open(sku_dir / "work/lifestyle-studio-s0.preserve-mask.png")) > 0
    assert not np.array_equal(_img(sku_dir / r.new_output)[keep], _img(sku_dir / "lifestyle-studio-s0.png")[keep])
    kept = edit_output(catalog, "tee-navy", "lifestyle-studio-s0.png", "make the tee red", ed, model=model,
                       params=FAST, garment="keep")
    assert kept.record["edit"]["garment"]["recomposited"] is True and kept.new_output.endswith(".edit-2.png")
    assert np.array_equal(_img(sku_dir / kept.new_output)[keep], _img(sku_dir / "lifestyle-studio-s0.png")[keep])


def test_versions_chain_and_exports_follow(editor, catalog):
    ed, model = editor
    sku_dir = catalog / "tee-navy"
    first = edit_output(catalog, "tee-navy", "main.png", "soft shadow", ed, params=FAST)  # model record: default
    assert first.new_output == "main.edit-1.png" and first.exports == ["main.edit-1.jpg"]
    assert first.record["edit"]["model"]["licence"] == "FLUX.1-dev-Non-Commercial"
    second = edit_output(catalog, "tee-navy", first.new_output, "evening light", ed, model=model, params=FAST)
    assert second.new_output == "main.edit-2.png"
    m = read_manifest(sku_dir / "manifest.json")
    outs = {o["file"]: o for o in m["outputs"]}
    assert outs["main.edit-2.png"]["edit"]["parent"] == "main.edit-1.png" and outs["main.edit-2.png"]["edit"]["root"] == "main.png"
    assert outs["main.edit-1.jpg"]["kind"] == "export" and outs["main.edit-1.jpg"]["derived_from"] == "main.edit-1.png"
    assert Image.open(sku_dir / "main.edit-1.jpg").size == Image.open(sku_dir / "main.png").size
    assert "main.png" in outs and (sku_dir / "main.png").is_file()
    # by default an instruction run edits the newest version of lifestyle/try-on/edited outputs, not main.png
    assert set(editable_outputs(m)) == {"lifestyle-studio-s0.png", "main.edit-2.png"}


def test_edit_refuses_exports_unknown_outputs_and_stale_requests(editor, catalog):
    ed, model = editor
    with pytest.raises(InputError, match="export") as err:
        edit_output(catalog, "tee-navy", "main.jpg", "x", ed, params=FAST)
    assert err.value.key == "output"
    with pytest.raises(InputError, match="no output 'nope.png'"):
        edit_output(catalog, "tee-navy", "nope.png", "x", ed, params=FAST)
    with pytest.raises(InputError, match="no catalog entry"):
        edit_output(catalog, "ghost", "main.png", "x", ed, params=FAST)
    with pytest.raises(EditConflictError, match="changed since"):
        edit_output(catalog, "tee-navy", "main.png", "x", ed, params=FAST, expected_sha256="0" * 64)
    assert not list((catalog / "tee-navy").glob("*.edit-*"))


def test_identity_gives_every_sku_the_same_seed_and_reference(editor, catalog, tmp_path):
    class Spy:
        """Records what reaches Kontext, then runs the real tiny editor."""

        def __init__(self, inner):
            self.inner, self.model_id, self.calls = inner, inner.model_id, []

        def __call__(self, image, prompt, *, seed, params, reference=None):
            self.calls.append((seed, None if reference is None else reference.tobytes(), prompt))
            return self.inner(image, prompt, seed=seed, params=params, reference=reference)

    ed, model = editor
    spy = Spy(ed)
    preset = read_identity(_preset(tmp_path / "ids"))
    records = []
    for sku, output in (("tee-navy", "lifestyle-studio-s0.png"), ("tote-canvas", "main.png")):
        r = edit_output(catalog, sku, output, "make the model smile", spy, model=model, params=FAST, seed=99,
                        identity=preset)
        records.append(r.record["edit"])
    assert [c[0] for c in spy.calls] == [1234, 1234]  # the preset's seed wins over --seed
    assert spy.calls[0][1] is not None and spy.calls[0][1] == spy.calls[1][1]  # the same reference face
    assert all(preset.prompt in c[2] for c in spy.calls)
    assert records[0]["identity"] == records[1]["identity"] == preset.to_json()
    assert records[0]["seed"] == records[1]["seed"] == 1234


def test_manifest_written_atomically_under_the_sku_lock(editor, catalog):
    from filelock import FileLock

    ed, model = editor
    (catalog / ".locks").mkdir(exist_ok=True)
    lock = FileLock(str(catalog / ".locks" / "tee-navy.lock"))
    lock.acquire()
    try:
        with pytest.raises(EditConflictError, match="locked"):
            edit_output(catalog, "tee-navy", "main.png", "soft light", ed, model=model, params=FAST, lock_timeout=0.2)
    finally:
        lock.release()
    m = json.loads((catalog / "tee-navy" / "manifest.json").read_text())
    assert not any(o["kind"] == "edit" for o in m["outputs"])
    assert not list((catalog / "tee-navy").glob("*.edit-*.png"))

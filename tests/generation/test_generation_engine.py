"""The ``flux`` and ``sdxl`` engines end to end on tiny models: catalog entries, the garment guarantee,
manifests, one model load per process, licences, seeds, the out-of-memory path, ``auto`` and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.generation import SMALL, fast_settings, link_model_root, make_product, tiny_model_root
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.render import process_sku
from pipelines.catalog.verify import verify_entry
from pipelines.compositing.composite import Placement, render_layer
from pipelines.generation.loading import MODEL_CACHE
from pipelines.catalog.manifest import read_manifest, validate_manifest
from pipelines.product import load_product

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")

TEE = "title: Navy tee\ngarment_type: upper\nbackgrounds: [white, studio]\nseeds: [5]\n"
DRESS = "garment_type: dress\nbackgrounds: [texture]\nseeds: [1]\nprompts:\n  person: woman in her 30s\n"
TOTE = "garment_type: bag\nbackgrounds: [white, studio]\nseeds: [2]\n"
COMMERCIAL_TEE = "garment_type: upper\nbackgrounds: [studio]\ncommercial: true\n"
OPTIONS = RenderOptions(**SMALL)


@pytest.fixture(scope="module")
def root():
    return tiny_model_root()


@pytest.fixture(scope="module")
def products(tmp_path_factory, drawn_products):
    d = tmp_path_factory.mktemp("products")
    make_product(d, "tee", drawn_products["tee"][0], TEE)
    make_product(d, "dress", drawn_products["dress"][0], DRESS)
    make_product(d, "tote", drawn_products["tote"][0], TOTE)
    make_product(d, "tee-commercial", drawn_products["tee"][0], COMMERCIAL_TEE)
    return d


@pytest.fixture(scope="module")
def flux(root):
    from pipelines.engines.generative import flux_engine

    return flux_engine(model_root=root, settings=fast_settings())


@pytest.fixture(scope="module")
def flux_batch(flux, products, tmp_path_factory):
    """Three SKUs through one flux engine; the cache's load log before, after the first and at the end."""
    catalog = tmp_path_factory.mktemp("catalog-flux")
    logs, results = [], {}
    for sku in ("tee", "dress", "tote"):
        results[sku] = process_sku(load_product(products / sku, root=products), catalog, flux, OPTIONS)
        logs.append(dict(MODEL_CACHE.loads))
    return catalog, results, logs


def test_flux_batch_renders_every_sku(flux_batch):
    catalog, results, _ = flux_batch
    assert {s: r.status for s, r in results.items()} == {"tee": "ok", "dress": "ok", "tote": "ok"}, \
        {s: r.error for s, r in results.items()}
    assert set(results["tee"].outputs) == {"main.png", "main.jpg", "lifestyle-studio-s5.png"}
    assert Image.open(catalog / "tee" / "lifestyle-studio-s5.png").size == (192, 240)
    assert Image.open(catalog / "tee" / "main.png").size == (256, 256)


def test_garment_pixels_are_bit_identical_after_the_whole_pipeline(flux_batch):
    catalog, results, _ = flux_batch
    for sku in results:
        checks = verify_entry(catalog / sku)
        assert checks and all(c["identical_fraction"] == 1.0 and c["pixels"] > 500 for c in checks), checks


def test_seam_inpainting_changed_pixels_only_inside_the_band(flux_batch):
    catalog, _, _ = flux_batch
    sku_dir = catalog / "tee"
    m = read_manifest(sku_dir / "manifest.json")
    out = next(o for o in m["outputs"] if o["kind"] == "lifestyle")
    final = np.asarray(Image.open(sku_dir / out["file"]).convert("RGB"))
    band = np.asarray(Image.open(sku_dir / out["seam_band"])) > 0
    alpha = np.asarray(Image.open(sku_dir / out["product_mask"]))
    generated = np.asarray(Image.open(sku_dir / out["generation"]["work"]["generated"]).convert("RGB"))
    src = np.asarray(Image.open(sku_dir / m["inputs"][0]["normalized"]).convert("RGB"))
    fg = render_layer(src, Placement.from_json(out["placement"]))
    background = np.asarray(Image.fromarray(generated).resize(final.shape[1::-1], Image.Resampling.LANCZOS))
    from pipelines.compositing.composite import alpha_composite

    composite = alpha_composite(background, fg, alpha)  # re-made from the recorded intermediates
    changed = np.any(final != composite, axis=2)
    assert not changed[~band].any() and changed[band].any()


def test_manifest_records_generation_placement_masks_and_licences(flux_batch):
    catalog, _, _ = flux_batch
    m = read_manifest(catalog / "tee" / "manifest.json")
    validate_manifest(m)
    assert m["engine"]["name"] == "flux" and m["engine"]["settings"]["steps"] == 2
    out = next(o for o in m["outputs"] if o["kind"] == "lifestyle")
    g = out["generation"]
    assert g["mode"] == "on-model" and g["seed"] == 5 and out["seed"] == 5
    assert g["base"] == "black-forest-labs/FLUX.1-dev" and g["controlnets"] == ["Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"]
    assert g["seam_pipeline"] == "FluxFillPipeline" and g["generator_pipeline"] == "FluxControlNetInpaintPipeline"
    assert "Navy tee" in g["prompt"] and g["params"]["control_modes"]["openpose"] == 4
    assert g["controls"] == ["canny", "openpose"]
    for rel in g["work"].values():
        assert (catalog / "tee" / rel).is_file()
    assert {"placement", "product_mask", "preserve_mask", "seam_band"} <= set(out)
    # on-model: the garment sits where the template's torso is, not at the marketplace 78% fill
    assert out["placement"]["offset"][1] == round(0.195 * 240)
    models = {x["id"]: x for x in m["models"]}
    assert models["black-forest-labs/FLUX.1-dev"]["licence"] == "FLUX.1-dev-Non-Commercial"
    assert models["black-forest-labs/FLUX.1-dev"]["commercial"] is False and models["black-forest-labs/FLUX.1-dev"]["fingerprint"]
    main = next(o for o in m["outputs"] if o["kind"] == "main")
    assert "generation" not in main and main["quality"]["white_background"]["ok"]


def test_modes_follow_the_garment_type(flux_batch):
    catalog, _, _ = flux_batch
    dress = read_manifest(catalog / "dress" / "manifest.json")
    tote = read_manifest(catalog / "tote" / "manifest.json")
    g_dress = next(o for o in dress["outputs"] if o["kind"] == "lifestyle")["generation"]
    g_tote = next(o for o in tote["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g_dress["mode"] == "on-model" and "woman in her 30s" in g_dress["prompt"]
    assert g_tote["mode"] == "scene" and g_tote["controls"] == ["canny"]


def test_models_load_once_per_process_across_skus(flux_batch):
    _, _, logs = flux_batch
    assert logs[1] == logs[2]  # nothing loaded after the first generated SKU
    assert all(n == 1 for n in logs[-1].values())
    assert MODEL_CACHE.stats()["reloaded"] == []


def test_same_seed_same_pixels(flux, products, tmp_path):
    a = process_sku(load_product(products / "tee", root=products), tmp_path / "a", flux, OPTIONS)
    b = process_sku(load_product(products / "tee", root=products), tmp_path / "b", flux, OPTIONS)
    ma = read_manifest(Path(a.manifest))
    mb = read_manifest(Path(b.manifest))
    sha = {o["file"]: o["sha256"] for o in ma["outputs"]}
    assert sha == {o["file"]: o["sha256"] for o in mb["outputs"]}


def test_commercial_sku_uses_only_commercial_models(flux, products, tmp_path):
    r = process_sku(load_product(products / "tee-commercial", root=products), tmp_path, flux, OPTIONS)
    assert r.status == "ok", r.error
    m = read_manifest(Path(r.manifest))
    g = next(o for o in m["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g["model_set"] == "commercial" and g["base"] == "black-forest-labs/FLUX.1-schnell"
    assert g["controlnets"] == [] and g["seam_model"] == "black-forest-labs/FLUX.1-schnell"
    used = [x for x in m["models"] if "commercial" in x.get("model_sets", [])]
    assert used and all(x["commercial"] for x in used)
    assert verify_entry(tmp_path / "tee-commercial")[0]["identical_fraction"] == 1.0


def test_commercial_sku_without_a_commercial_model_fails_naming_the_key(root, products, tmp_path):
    from pipelines.engines.generative import flux_engine

    no_schnell = link_model_root(root, tmp_path / "models", without=("black-forest-labs/FLUX.1-schnell",))
    engine = flux_engine(model_root=no_schnell, settings=fast_settings())
    assert engine.generator.commercial_set is None
    r = process_sku(load_product(products / "tee-commercial", root=products), tmp_path / "cat", engine, OPTIONS)
    assert r.status == "failed"
    assert "product.yaml [commercial]" in r.error and "FLUX.1-dev-Non-Commercial" in r.error
    assert "stable-diffusion-xl" in r.error  # names a commercial alternative
    assert not (tmp_path / "cat" / "tee-commercial").exists()


def test_sdxl_engine_renders_and_preserves(root, products, tmp_path):
    from pipelines.engines.generative import sdxl_engine

    engine = sdxl_engine(model_root=root, settings=fast_settings())
    r = process_sku(load_product(products / "tee", root=products), tmp_path, engine, OPTIONS)
    assert r.status == "ok", r.error
    assert all(c["identical_fraction"] == 1.0 for c in verify_entry(tmp_path / "tee"))
    m = read_manifest(Path(r.manifest))
    validate_manifest(m)
    g = next(o for o in m["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g["generator_pipeline"] == "StableDiffusionXLControlNetInpaintPipeline"
    assert g["seam_pipeline"] == "StableDiffusionXLInpaintPipeline" and g["negative_prompt"]
    assert g["controlnets"] == ["xinsir/controlnet-openpose-sdxl-1.0", "xinsir/controlnet-canny-sdxl-1.0"]
    assert m["engine"]["commercial_models"]["base"] == "stabilityai/stable-diffusion-xl-base-1.0"


def test_few_step_lora_brings_its_scheduler_and_steps(root, products, tmp_path):
    from pipelines.engines.generative import sdxl_engine

    engine = sdxl_engine(model_root=root, settings=fast_settings(steps=None, loras=("ByteDance/SDXL-Lightning",)))
    params = engine.generator.scene_params()
    assert (params.steps, params.guidance) == (4, 0.0)
    r = process_sku(load_product(products / "tote", root=products), tmp_path, engine, OPTIONS)
    assert r.status == "ok", r.error
    scene = engine.generator.scene_pipeline()
    assert type(scene.generator.scheduler).__name__ == "EulerDiscreteScheduler"
    assert scene.generator.scheduler.config.timestep_spacing == "trailing"
    g = next(o for o in read_manifest(Path(r.manifest))["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g["loras"] == [["ByteDance/SDXL-Lightning", 1.0]] and g["params"]["steps"] == 4


def test_out_of_memory_fails_the_sku_with_a_clear_error(root, products, tmp_path, monkeypatch):
    import torch

    from pipelines.engines.generative import flux_engine

    engine = flux_engine(model_root=root, settings=fast_settings())
    scene = engine.generator.scene_pipeline()

    class OOMPipe:
        def __init__(self, pipe):
            self.pipe = pipe
            self.calls = 0

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def __call__(self, **kwargs):
            self.calls += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 24.00 GiB")

    oom = OOMPipe(scene.generator)
    monkeypatch.setattr(scene, "generator", oom)
    monkeypatch.setattr("pipelines.generation.scene._call_kwargs", lambda pipe, kw: kw)
    r = process_sku(load_product(products / "tee", root=products), tmp_path, engine, OPTIONS)
    assert r.status == "failed" and "out of GPU memory while generating the scene" in r.error
    assert oom.calls == 1  # batch of one, no CUDA device to offload to: fails at once
    assert not (tmp_path / "tee").exists()


def test_auto_picks_flux_when_its_models_are_found(root, tmp_path):
    from pipelines.engines.registry import get_engine

    engine = get_engine("auto", model_root=root)
    assert engine.name == "flux" and "FLUX.1-dev" in engine.describe()["reason"]
    sdxl_only = link_model_root(root, tmp_path, without=tuple(
        f"black-forest-labs/{n}" for n in ("FLUX.1-dev", "FLUX.1-schnell")))
    assert get_engine("auto", model_root=sdxl_only).name == "sdxl"


def test_explicit_engine_without_models_is_an_input_error(tmp_path):
    from pipelines.engines.registry import get_engine
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="no flux base model"):
        get_engine("flux", model_root=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["flux", "sdxl"])
def test_cli_run_writes_a_complete_verified_catalog(engine, root, tmp_path):
    """``vitrine samples`` + ``vitrine run --engine ENGINE --model-root TINY`` + ``vitrine verify``."""
    env = dict(os.environ, VITRINE_GEN_STEPS="2", VITRINE_GEN_SEAM_STEPS="2", VITRINE_GEN_DEVICE="cpu",
               VITRINE_GEN_WORK_SIDE="32")  # the tiny models' native side (see generation_helpers.FAST_ENV)
    products, catalog = tmp_path / "products", tmp_path / "catalog"
    cli = [sys.executable, "-m", "flows.cli"]
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([*cli, "samples", str(products)], check=True, cwd=repo, env=env, capture_output=True)
    run = subprocess.run([*cli, "run", str(products), "--engine", engine, "--model-root", str(root), "--catalog",
                          str(catalog), "--no-progress"], cwd=repo, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "5 ok, 0 failed" in run.stdout
    verify = subprocess.run([*cli, "verify", str(catalog)], cwd=repo, env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout
    for sku_dir in (d for d in catalog.iterdir() if (d / "manifest.json").is_file()):
        m = json.loads((sku_dir / "manifest.json").read_text())
        assert m["engine"]["name"] == engine
        assert any(o.get("generation") for o in m["outputs"])


def test_one_seam_step_at_sdxl_strength_is_refused_at_start_naming_the_setting(root):
    from pipelines.errors import InputError
    from pipelines.engines.generative import flux_engine, sdxl_engine

    with pytest.raises(InputError, match=r"int\(1 x strength 0.99\) = 0") as exc:
        sdxl_engine(model_root=root, settings=fast_settings(seam_steps=1))
    assert exc.value.key == "VITRINE_GEN_SEAM_STEPS" and "VITRINE_GEN_SEAM_STEPS >= 2" in str(exc.value)
    with pytest.raises(InputError, match="VITRINE_GEN_SEAM_STEPS >= 3") as exc:
        sdxl_engine(model_root=root, settings=fast_settings(seam_steps=2, seam_strength=0.4))  # int(2 x 0.4) = 0
    assert exc.value.key == "VITRINE_GEN_SEAM_STEPS"
    sdxl_engine(model_root=root, settings=fast_settings(seam_steps=2))  # int(2 x 0.99) = 1 step: fine
    flux_engine(model_root=root, settings=fast_settings(seam_steps=1))  # FLUX pipelines round up to one step


def test_dmd2_timesteps_reach_an_sdxl_controlnet_pipeline_and_are_recorded(root, products, tmp_path):
    """StableDiffusionXLControlNetInpaintPipeline takes no ``timesteps``: the scheduler is pinned to DMD2's."""
    import inspect

    from pipelines.engines.generative import sdxl_engine

    models = link_model_root(root, tmp_path / "models")
    (models / "tianweiy" / "DMD2").mkdir(parents=True)
    (models / "tianweiy" / "DMD2" / "dmd2_sdxl_4step_lora_fp16.safetensors").symlink_to(
        root / "ByteDance" / "SDXL-Lightning" / "sdxl_lightning_4step_lora.safetensors")  # same SDXL LoRA format
    engine = sdxl_engine(model_root=models, settings=fast_settings(steps=None, loras=("tianweiy/DMD2",)))
    scene = engine.generator.scene_pipeline()
    assert "timesteps" not in inspect.signature(scene.generator.__call__).parameters
    r = process_sku(load_product(products / "tote", root=products), tmp_path / "cat", engine, OPTIONS)
    assert r.status == "ok", r.error
    g = next(o for o in read_manifest(Path(r.manifest))["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g["params"]["timesteps"] == [999, 749, 499, 249]
    assert g["timesteps_used"] == [999, 749, 499, 249]  # what the scheduler ran, not only what was asked


def test_parallel_threads_import_pipeline_classes_without_a_race():
    """diffusers' lazy imports raced when try-on Fill and Kontext SKUs loaded in parallel threads."""
    code = """
import threading
from pipelines.generation.loading import _import_class
pairs = [("diffusers", "FluxFillPipeline"), ("diffusers", "FluxKontextPipeline"), ("transformers", "CLIPTextModel"),
         ("transformers", "T5EncoderModel"), ("diffusers", "FluxControlNetInpaintPipeline"),
         ("diffusers", "FluxInpaintPipeline")]
barrier, errors = threading.Barrier(len(pairs)), []
def work(lib, name):
    barrier.wait()
    try:
        _import_class(lib, name)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=p) for p in pairs]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(errors), errors[:1])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout


def test_sdxl_union_controlnet_is_picked_when_the_single_ones_are_missing(root, products, tmp_path):
    """xinsir/controlnet-union-sdxl-1.0 was registered but never used."""
    import torch
    from diffusers import ControlNetUnionModel

    from pipelines.engines.generative import sdxl_engine
    from pipelines.generation.modelset import resolve_model_set
    from pipelines.dev_models.tiny_generation import _sdxl_block_kwargs

    models = link_model_root(root, tmp_path / "models", without=("xinsir/controlnet-openpose-sdxl-1.0",
                                                                 "xinsir/controlnet-canny-sdxl-1.0"))
    torch.manual_seed(3)
    union = ControlNetUnionModel(in_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                 conditioning_embedding_out_channels=(16, 32), num_trans_channel=32, num_trans_head=2, num_proj_channel=32,
                                 **_sdxl_block_kwargs(64, 6))
    union.save_pretrained(models / "xinsir" / "controlnet-union-sdxl-1.0")
    ms = resolve_model_set("sdxl", models, fast_settings())
    assert [p.id for p in ms.controlnets] == ["xinsir/controlnet-union-sdxl-1.0"]
    assert ms.control_modes()["openpose"] == 0 and ms.control_modes()["canny"] == 3
    engine = sdxl_engine(model_root=models, settings=fast_settings())
    scene = engine.generator.scene_pipeline()
    assert type(scene.generator).__name__ == "StableDiffusionXLControlNetUnionInpaintPipeline"
    assert isinstance(scene.generator.controlnet, ControlNetUnionModel)
    r = process_sku(load_product(products / "dress", root=products), tmp_path / "cat", engine, OPTIONS)
    assert r.status == "ok", r.error
    g = next(o for o in read_manifest(Path(r.manifest))["outputs"] if o["kind"] == "lifestyle")["generation"]
    assert g["controlnets"] == ["xinsir/controlnet-union-sdxl-1.0"] and "openpose" in g["controls"]
    # both singles found: they are preferred (registration order)
    assert [p.id for p in resolve_model_set("sdxl", root, fast_settings()).controlnets] == [
        "xinsir/controlnet-openpose-sdxl-1.0", "xinsir/controlnet-canny-sdxl-1.0"]

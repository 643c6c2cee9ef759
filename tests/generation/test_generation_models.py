"""Vitrine's loader and the scene pipeline on tiny random FLUX/SDXL models (``vitrine dev tiny-models``):
layouts, the per-process cache, shared components, LoRA / GGUF / single-file / Kontext / Control load
paths, determinism, garment pixels and the seam band."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.generation import fast_settings, tiny_model_root
from pipelines.errors import InputError
from pipelines.generation.loading import MODEL_CACHE, LoadContext, load_denoiser, load_pipeline
from pipelines.models.profiles import get_profile, list_profiles
from pipelines.models.location import ModelNotFoundError, find, locate

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


@pytest.fixture(scope="module")
def root():
    return tiny_model_root()


@pytest.fixture(scope="module")
def ctx(root):
    return LoadContext(root, fast_settings())


def _garment(size=(96, 120)):
    """A garment layer on a canvas: an opaque rectangle with a soft edge, and its seam band."""
    from pipelines.compositing.composite import preserve_mask, seam_band

    w, h = size
    rng = np.random.default_rng(1)
    fg = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[30:90, 25:70] = 255
    alpha[29, 25:70] = alpha[90, 25:70] = 128
    fg[alpha > 0] = rng.integers(0, 256, (int((alpha > 0).sum()), 3), dtype=np.uint8)
    return fg, alpha, seam_band(alpha, 3, 4), preserve_mask(alpha, 3)


def _forward_kwargs():
    import torch

    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(1, 16, 16, generator=g), encoder_hidden_states=torch.randn(1, 8, 32, generator=g),
                pooled_projections=torch.randn(1, 32, generator=g), timestep=torch.tensor([0.5]),
                img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3), guidance=torch.tensor([3.5]), return_dict=False)


def test_tiny_models_are_written_in_the_real_layouts(root):
    written = [p for p in list_profiles() if find(p.id, root, required_files=p.required_files) is not None]
    names = {p.name for p in written}
    assert {FLUX_DEV, "black-forest-labs/FLUX.1-Fill-dev", "black-forest-labs/FLUX.1-Kontext-dev",
            "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro", "city96/FLUX.1-dev-gguf", SDXL,
            "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "xinsir/controlnet-openpose-sdxl-1.0",
            "ByteDance/SDXL-Lightning", "alimama-creative/FLUX.1-Turbo-Alpha"} <= names
    assert (root / FLUX_DEV / "flux1-dev.safetensors").is_file()
    assert (root / FLUX_DEV / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(root.rglob("*.bin")) and not list(root.rglob("*.pt"))  # no pickles anywhere


def test_missing_model_names_where_it_looked(tmp_path):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / FLUX_DEV)):
        locate(FLUX_DEV, tmp_path, required_files=("model_index.json",), use_hf_cache=False)


def test_pipelines_share_cached_components_and_reload_nothing(ctx):
    fill = load_pipeline("black-forest-labs/FLUX.1-Fill-dev", base=FLUX_DEV, ctx=ctx)
    base = load_pipeline(FLUX_DEV, ctx=ctx)
    before = set(MODEL_CACHE.keys())
    # Another test of this session may have loaded Kontext from this root already (the cache is per process).
    kontext_dir = str(locate("black-forest-labs/FLUX.1-Kontext-dev", ctx.model_root).path.resolve())
    kontext_cached = any(k.model_id == "black-forest-labs/FLUX.1-Kontext-dev" and k.part == "transformer"
                         and k.folder == kontext_dir for k in before)
    kontext = load_pipeline("black-forest-labs/FLUX.1-Kontext-dev", base=FLUX_DEV, ctx=ctx)
    again = load_pipeline(FLUX_DEV, ctx=ctx)
    new = [k for k in set(MODEL_CACHE.keys()) - before if k.dtype != "-"]  # models, not tokenizers/configs
    assert fill.text_encoder_2 is base.text_encoder_2 is kontext.text_encoder_2 and fill.vae is base.vae
    assert again.transformer is base.transformer and fill.transformer is not base.transformer
    expected = [] if kontext_cached else [("black-forest-labs/FLUX.1-Kontext-dev", "transformer")]
    assert [(k.model_id, k.part) for k in new] == expected
    assert MODEL_CACHE.stats()["reloaded"] == []
    assert type(fill).__name__ == "FluxFillPipeline" and type(kontext).__name__ == "FluxKontextPipeline"


def test_kontext_and_flux_control_run_through_the_loader(ctx):
    import torch
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    kontext = load_pipeline("black-forest-labs/FLUX.1-Kontext-dev", base=FLUX_DEV, ctx=ctx)
    out = kontext(image=img, prompt="make the shirt blue", height=32, width=32, max_area=32 * 32, _auto_resize=False,
                  num_inference_steps=2, guidance_scale=2.5, generator=torch.Generator().manual_seed(0),
                  output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()
    control = load_pipeline("black-forest-labs/FLUX.1-Canny-dev", base=FLUX_DEV, ctx=ctx)
    out = control(prompt="a dress", control_image=img, height=32, width=32, num_inference_steps=2,
                  guidance_scale=30.0, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 32, 32, 3)


def test_single_file_and_gguf_transformers_match_the_folder_weights(root):
    import torch

    dev = get_profile(FLUX_DEV)
    plain = load_denoiser(dev, LoadContext(root, fast_settings()))
    single = load_denoiser(dev, LoadContext(root, fast_settings(single_file=True)))
    gguf = load_denoiser(dev, LoadContext(root, fast_settings(gguf="city96/FLUX.1-dev-gguf")))
    assert single is not plain and gguf is not plain
    assert type(gguf.transformer_blocks[0].attn.to_q.weight).__name__ == "GGUFParameter"
    with torch.no_grad():
        a, b, c = (m(**_forward_kwargs())[0] for m in (plain, single, gguf))
    assert torch.equal(a, b)
    rel = float((a - c).abs().max() / a.abs().max())
    assert 0 < rel < 0.05  # Q8_0: close, not identical


def test_gguf_of_another_base_is_refused(root):
    schnell = get_profile("black-forest-labs/FLUX.1-schnell")
    with pytest.raises(InputError) as exc:
        load_denoiser(schnell, LoadContext(root, fast_settings(gguf="city96/FLUX.1-dev-gguf")))
    assert exc.value.key == "VITRINE_GEN_GGUF"


def test_lora_is_fused_with_its_scale(root):
    import torch

    dev = get_profile(FLUX_DEV)
    plain = load_denoiser(dev, LoadContext(root, fast_settings()))
    full = load_denoiser(dev, LoadContext(root, fast_settings(loras=("alimama-creative/FLUX.1-Turbo-Alpha",))))
    half = load_denoiser(dev, LoadContext(root, fast_settings(loras=("alimama-creative/FLUX.1-Turbo-Alpha@0.5",))))
    assert not any("lora" in n for n, _ in full.named_modules())  # fused, LoRA layers dropped
    with torch.no_grad():
        a, b, c = (m(**_forward_kwargs())[0] for m in (plain, full, half))
    d_full, d_half = float((a - b).abs().max()), float((a - c).abs().max())
    assert d_full > 1e-3 and 0 < d_half < d_full


def test_lora_of_another_family_is_refused(root):
    with pytest.raises(InputError) as exc:
        load_denoiser(get_profile(FLUX_DEV), LoadContext(root, fast_settings(loras=("ByteDance/SDXL-Lightning",))))
    assert exc.value.key == "VITRINE_GEN_LORAS"


def test_cpu_offload_on_a_cpu_is_refused_naming_the_setting(root):
    with pytest.raises(InputError) as exc:
        LoadContext(root, fast_settings(offload="model"))
    assert exc.value.key == "VITRINE_GEN_OFFLOAD"


def test_speedups_are_separate_cache_entries_and_keep_outputs(root, ctx):
    import torch

    from pipelines.generation.loading import apply_speedups

    dev = get_profile(FLUX_DEV)
    plain = load_denoiser(dev, ctx)
    fused = load_denoiser(dev, LoadContext(root, fast_settings(fuse_qkv=True)))
    assert fused is not plain and not plain.transformer_blocks[0].attn.fused_projections
    assert fused.transformer_blocks[0].attn.fused_projections
    assert apply_speedups(fused, fast_settings(fuse_qkv=True)) == ["fuse_qkv"]  # applied once, at load
    with torch.no_grad():
        a, b = plain(**_forward_kwargs())[0], fused(**_forward_kwargs())[0]
    assert float((a - b).abs().max()) < 1e-4
    cached = load_pipeline(FLUX_DEV, ctx=LoadContext(root, fast_settings(cache_threshold=0.2)))
    assert cached.transformer.is_cache_enabled and not plain.is_cache_enabled
    out = cached(prompt="a dress", height=32, width=32, num_inference_steps=4, guidance_scale=3.5,
                 generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


@pytest.fixture(scope="module")
def flux_scene(root):
    from pipelines.engines.generative import flux_engine

    engine = flux_engine(model_root=root, settings=fast_settings())
    return engine.generator.scene_pipeline(), engine.generator.scene_params()


@pytest.fixture(scope="module")
def sdxl_scene(root):
    from pipelines.engines.generative import sdxl_engine

    engine = sdxl_engine(model_root=root, settings=fast_settings())
    return engine.generator.scene_pipeline(), engine.generator.scene_params()


@pytest.mark.parametrize("which", ["flux_scene", "sdxl_scene"])
def test_scene_keeps_the_garment_touches_only_the_band_and_is_seeded(which, request):
    from pipelines.compositing.composite import check_preserved
    from pipelines.controls.templates import template_pose

    scene, params = request.getfixturevalue(which)
    fg, alpha, band, keep = _garment()
    pose = template_pose((96, 120))
    kw = dict(prompt="a fashion model wearing a shirt", params=params, pose=pose, negative_prompt="blurry")
    out = scene(fg, alpha, band, seed=7, **kw)
    assert out.final.shape == (120, 96, 3) and out.final.dtype == np.uint8
    assert out.generated.shape[2] == 3 and out.generated.shape[:2] == tuple(reversed(out.record["work_size"]))
    assert sorted(out.controls) == ["canny", "openpose"]
    assert check_preserved(out.final, fg, keep)["identical_fraction"] == 1.0
    changed = np.any(out.final != out.composite, axis=2)
    assert not changed[band == 0].any()  # the seam step changed nothing outside the band
    assert changed[band > 0].any()  # ...and did change the band
    again = scene(fg, alpha, band, seed=7, **kw)
    other = scene(fg, alpha, band, seed=8, **kw)
    assert np.array_equal(again.final, out.final)
    assert not np.array_equal(other.final, out.final)
    assert out.record["seed"] == 7 and out.record["params"]["steps"] == 2


def test_scene_without_pose_passes_a_black_pose_image_at_scale_zero(sdxl_scene):
    scene, params = sdxl_scene
    fg, alpha, band, _ = _garment()
    ws = (32, 32)
    controls = {"canny": np.zeros((32, 32, 3), np.uint8)}
    kwargs = scene.control_kwargs(controls, params)
    assert scene.control_order == ("openpose", "canny")
    assert kwargs["controlnet_conditioning_scale"] == [0.0, params.controlnet_scale["canny"]]
    assert np.asarray(kwargs["control_image"][0]).max() == 0 and kwargs["control_image"][0].size == ws
    out = scene(fg, alpha, band, prompt="a product", params=params, seed=1, shadow=True)
    assert sorted(out.controls) == ["canny"] and out.record["contact_shadow"] is True


def test_bad_scene_input_is_an_input_error(flux_scene):
    scene, params = flux_scene
    fg, alpha, band, _ = _garment()
    with pytest.raises(InputError):
        scene(fg.astype(np.float32), alpha, band, prompt="x", params=params)
    with pytest.raises(InputError):
        scene(fg, alpha[:-1], band, prompt="x", params=params)


def test_sdxl_refiner_pass_runs_and_keeps_the_garment(root):
    from pipelines.compositing.composite import check_preserved
    from pipelines.engines.generative import sdxl_engine

    engine = sdxl_engine(model_root=root, settings=fast_settings(refiner=True))
    assert engine.generator.model_set.refiner.id == "stabilityai/stable-diffusion-xl-refiner-1.0"
    scene = engine.generator.scene_pipeline()
    assert scene.refiner.text_encoder_2 is scene.generator.text_encoder_2  # shared with the base
    fg, alpha, band, keep = _garment()
    out = scene(fg, alpha, band, prompt="a shirt", params=engine.generator.scene_params(), seed=3)
    assert out.record["refiner"] is True
    assert check_preserved(out.final, fg, keep)["identical_fraction"] == 1.0


def test_a_distill_scheduler_can_replace_the_pipelines(ctx):
    import torch

    from pipelines.engines.generative import set_scheduler

    pipe = load_pipeline(SDXL, ctx=ctx)
    other = load_pipeline(SDXL, ctx=ctx)
    set_scheduler(pipe, get_profile("tianweiy/DMD2").scheduler)
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    assert type(other.scheduler).__name__ == "EulerDiscreteScheduler"  # each pipeline has its own
    out = pipe(prompt="a dress", height=32, width=32, num_inference_steps=4, guidance_scale=0.0,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 32, 32, 3)


def test_two_model_roots_with_the_same_repo_id_never_share_a_cached_model(root, tmp_path):
    """A notebook that switches model roots gets the second root's weights, not the first root's from the cache."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from pipelines.generation.loading import load_component

    other = tmp_path / "other"
    shutil.copytree(root / FLUX_DEV, other / FLUX_DEV, symlinks=True)
    vae = other / FLUX_DEV / "vae" / "diffusion_pytorch_model.safetensors"
    weights = load_file(vae)
    vae.unlink()  # the copy may share the file with the original root; write a new one
    save_file({k: v + 1.0 for k, v in weights.items()}, vae)
    profile = get_profile(FLUX_DEV)
    a = load_component(profile, "vae", LoadContext(root, fast_settings()))
    b = load_component(profile, "vae", LoadContext(other, fast_settings()))
    assert a is not b
    name, wa = next(iter(a.state_dict().items()))
    assert torch.allclose(b.state_dict()[name], wa + 1.0)
    assert load_component(profile, "vae", LoadContext(root, fast_settings())) is a  # still cached per root


def test_gguf_files_of_any_published_quantization_are_found_and_chosen(root, tmp_path):
    """city96 publishes flux1-dev-Q2_K ... Q8_0 / F16 / BF16 .gguf files: any of them is found; when several are
    there and none is the profile's Q8_0, VITRINE_GEN_GGUF_FILE chooses, checked when the engine starts."""
    from pipelines.engines.generative import flux_engine
    from pipelines.models.location import gguf_weight_file
    from tests.helpers.generation import link_model_root

    gid = "city96/FLUX.1-dev-gguf"
    models = link_model_root(root, tmp_path / "models", without=(gid,))
    folder = models / gid
    folder.mkdir(parents=True)
    q8 = locate(gid, root).path / "flux1-dev-Q8_0.gguf"
    (folder / "flux1-dev-Q4_K_S.gguf").symlink_to(q8)  # a Q8_0 body under another published name: loads the same
    gp = get_profile(gid)
    assert gguf_weight_file(gp, locate(gid, models).path).name == "flux1-dev-Q4_K_S.gguf"
    model = load_denoiser(get_profile(FLUX_DEV), LoadContext(models, fast_settings(gguf=gid)))
    assert type(model.transformer_blocks[0].attn.to_q.weight).__name__ == "GGUFParameter"

    (folder / "flux1-dev-Q5_K_M.gguf").symlink_to(q8)
    with pytest.raises(InputError, match=r"2 GGUF files \(flux1-dev-Q4_K_S.gguf, flux1-dev-Q5_K_M.gguf\)") as exc:
        flux_engine(model_root=models, settings=fast_settings(gguf=gid))  # refused at start, not mid-batch
    assert exc.value.key == "VITRINE_GEN_GGUF_FILE"
    chosen = fast_settings(gguf=gid, gguf_file="flux1-dev-Q5_K_M.gguf")
    assert gguf_weight_file(gp, folder, chosen.gguf_file).name == "flux1-dev-Q5_K_M.gguf"
    with pytest.raises(InputError, match="no GGUF file 'flux1-dev-F16.gguf'.*found: flux1-dev-Q4_K_S.gguf"):
        gguf_weight_file(gp, folder, "flux1-dev-F16.gguf")
    with pytest.raises(InputError, match="set gguf too") as exc:
        fast_settings(gguf_file="flux1-dev-Q5_K_M.gguf")
    assert exc.value.key == "VITRINE_GEN_GGUF_FILE"
    (folder / "flux1-dev-Q4_K_S.gguf").unlink()
    (folder / "flux1-dev-Q5_K_M.gguf").unlink()
    assert find(gid, models, required_files=gp.required_files) is None  # an empty folder is not found

"""The real-architecture tier (marker ``realarch``): the flux, sdxl, Kontext, try-on and grounded-sam paths end to
end on random models written from the published configs at real width and minimal depth, in the real repo
layouts (`pipelines.dev_models.realarch`, ``vitrine dev real-arch-models DIR``).

Part of ``make test`` (and so of CI); on its own: ``make test-realarch`` or
``python -m pytest -m realarch tests/generation/test_realarch.py``. The models are built once per
session into a temporary folder (about 12 GB, removed afterwards), or taken from ``$VITRINE_REALARCH_MODELS`` when it names a folder
``vitrine dev real-arch-models`` already wrote. Generation runs on the CPU in bfloat16 at a 128 px working side
with 1-2 steps; each test clears the model cache so one process stays under ~6 GB.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.generation import make_product

pytestmark = [pytest.mark.realarch, pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning"),
              pytest.mark.usefixtures("fresh_model_cache")]  # one family in memory at a time

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
FLUX_UNION = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"
FLUX_CANNY = "InstantX/FLUX.1-dev-Controlnet-Canny"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
TEE = "garment_type: upper\nbackgrounds: [studio]\nseeds: [5]\n"
#: CPU, bfloat16 weights as published, a 128 px working side, one step.
SETTINGS = dict(device="cpu", dtype="bfloat16", steps=1, seam_steps=2, work_side=128)


def _settings(**changes):
    from pipelines.generation.settings import GenerationSettings

    return GenerationSettings(**{**SETTINGS, **changes})


def _options():
    from pipelines.catalog.options import RenderOptions

    return RenderOptions(canvas=256, lifestyle_size=(192, 240))


#: Disk the session folder needs (the models take about 12 GB; hard links share FLUX's encoders and VAE).
NEEDED_FREE_BYTES = 16 * 10**9


@pytest.fixture(scope="session")
def real_root(tmp_path_factory):
    """Where the real-architecture models are: ``$VITRINE_REALARCH_MODELS``, or a session folder that is
    removed when the session ends (12 GB must not pile up in pytest's kept temp folders). Skips, saying
    why, when the disk has less than `NEEDED_FREE_BYTES` free."""
    given = os.environ.get("VITRINE_REALARCH_MODELS")
    if given:
        yield Path(given)
        return
    root = tmp_path_factory.mktemp("realarch-models")
    free = shutil.disk_usage(root).free
    if free < NEEDED_FREE_BYTES:
        pytest.skip(f"the real-architecture models need ~12 GB of disk, {free / 1e9:.1f} GB free under {root}; "
                    "build them elsewhere with `vitrine dev real-arch-models DIR` and set VITRINE_REALARCH_MODELS")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _family(root: Path, family: str) -> Path:
    """``root`` with ``family`` built (once: `build_real_arch_models` records what it finished)."""
    from pipelines.dev_models.realarch import build_real_arch_models, built_families

    if family not in built_families(root):
        build_real_arch_models(root, [family])
    return root


@pytest.fixture(scope="session")
def flux_root(real_root):
    return _family(real_root, "flux")


@pytest.fixture(scope="session")
def sdxl_root(real_root):
    return _family(real_root, "sdxl")


@pytest.fixture(scope="session")
def seg_root(real_root):
    return _family(real_root, "segmentation")




@pytest.fixture(scope="module")
def products(tmp_path_factory, drawn_products):
    d = tmp_path_factory.mktemp("products")
    make_product(d, "tee", drawn_products["tee"][0], TEE)
    return d


def _view(src: Path, dest: Path, without: tuple[str, ...] = ()) -> Path:
    """A model root linking the repos of ``src`` except ``without``."""
    for org in src.iterdir():
        if not org.is_dir():
            continue
        for repo in org.iterdir():
            rid = f"{org.name}/{repo.name}"
            if rid not in without and repo.is_dir():
                (dest / org.name).mkdir(parents=True, exist_ok=True)
                (dest / rid).symlink_to(repo, target_is_directory=True)
    return dest


def _render(engine, products: Path, catalog: Path):
    from pipelines.catalog.render import process_sku
    from pipelines.catalog.verify import verify_entry
    from pipelines.catalog.manifest import read_manifest
    from pipelines.product import load_product

    r = process_sku(load_product(products / "tee", root=products), catalog, engine, _options())
    assert r.status == "ok", r.error
    assert all(c["identical_fraction"] == 1.0 for c in verify_entry(catalog / "tee"))
    m = read_manifest(Path(r.manifest))
    return next(o for o in m["outputs"] if o["kind"] == "lifestyle")["generation"]


# ------------------------------------------------------------------------------------------------- layouts
def test_layouts_are_the_published_ones(flux_root, sdxl_root):
    import json

    dev = flux_root / FLUX_DEV
    te2 = dev / "text_encoder_2"
    index = json.loads((te2 / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2  # sharded, with its index
    cfg = json.loads((te2 / "config.json").read_text())
    assert (cfg["d_model"], cfg["vocab_size"], cfg["num_layers"]) == (4096, 32128, 1)
    vae = json.loads((dev / "vae" / "config.json").read_text())
    assert (vae["latent_channels"], vae["scaling_factor"], vae["shift_factor"]) == (16, 0.3611, 0.1159)
    assert {p.name for p in (dev / "tokenizer").iterdir()} >= {"vocab.json", "merges.txt"}
    assert (dev / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert json.loads((flux_root / FLUX_CANNY / "config.json").read_text()).get("num_mode") is None  # not union
    unet = sdxl_root / SDXL_BASE / "unet"
    assert {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"} <= {
        p.name for p in unet.iterdir()}
    inpaint = sdxl_root / "diffusers/stable-diffusion-xl-1.0-inpainting-0.1" / "unet"
    assert not (inpaint / "diffusion_pytorch_model.safetensors").exists()  # fp16 variant only


def test_tokenizers_load_with_the_real_ids(flux_root):
    from transformers import AutoTokenizer

    clip = AutoTokenizer.from_pretrained(flux_root / FLUX_DEV / "tokenizer")
    t5 = AutoTokenizer.from_pretrained(flux_root / FLUX_DEV / "tokenizer_2")
    ids = clip("a navy t-shirt")["input_ids"]
    assert (ids[0], ids[-1], len(clip)) == (49406, 49407, 49408)
    assert (t5.pad_token_id, t5.eos_token_id, len(t5)) == (0, 1, 32100)


# ---------------------------------------------------------------------------------------------------- FLUX
def test_flux_end_to_end_with_the_union_controlnet_and_fill(flux_root, products, tmp_path):
    from pipelines.engines.generative import flux_engine

    root = _view(flux_root, tmp_path / "models", without=(FLUX_CANNY,))
    engine = flux_engine(model_root=root, settings=_settings())
    g = _render(engine, products, tmp_path / "catalog")
    assert g["controlnets"] == [FLUX_UNION] and g["seam_model"] == FLUX_FILL
    assert g["generator_pipeline"] == "FluxControlNetInpaintPipeline"


def test_flux_with_only_a_non_union_controlnet(flux_root, products, tmp_path):
    from pipelines.engines.generative import flux_engine

    root = _view(flux_root, tmp_path / "models", without=(FLUX_UNION,))
    engine = flux_engine(model_root=root, settings=_settings())
    g = _render(engine, products, tmp_path / "catalog")
    assert g["controlnets"] == [FLUX_CANNY]


def test_kontext_edit(flux_root):
    from pipelines.catalog.edits import load_kontext_editor
    from pipelines.edit.kontext import EditParams

    editor, record = load_kontext_editor(flux_root, _settings())
    img = np.random.default_rng(0).integers(0, 255, (150, 120, 3), dtype=np.uint8)
    out = editor(img, "make the backdrop warmer", seed=1, params=EditParams(steps=1, work_side=128))
    assert out.image.shape == img.shape and out.image.dtype == np.uint8
    assert record["id"] == "black-forest-labs/FLUX.1-Kontext-dev"


def test_try_on_fill(flux_root):
    from pipelines.generation.loading import load_pipeline
    from pipelines.tryon.pipeline import TryOnParams, TryOnPipeline
    from pipelines.tryon.worn import worn_garment_mask
    from tests.helpers.tryon import garment_photo, synthetic_person

    fill = load_pipeline(FLUX_FILL, model_root=flux_root, settings=_settings(), base=FLUX_DEV)
    rgb, alpha, pose, _ = synthetic_person()
    grgb, gmask = garment_photo(160)
    worn, _ = worn_garment_mask(rgb, alpha, "upper", pose=pose)
    out = TryOnPipeline(fill=fill)(rgb, alpha, grgb, gmask, worn_mask=worn, pose=pose, method="fill", seed=3,
                                   params=TryOnParams(steps=1, work_side=128), garment_name="navy tee")
    assert out.final.shape == rgb.shape
    assert np.array_equal(out.final[out.region == 0], rgb[out.region == 0])


def _tensors(folder: Path) -> dict:
    """Every tensor of a (sharded) safetensors model folder."""
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _configs_only(dev: Path, repo: Path, link: tuple[str, ...]) -> None:
    """``repo`` as ``hf download FLUX.1-dev --include "*.json"`` leaves it, plus links to ``dev``'s ``link`` parts."""
    repo.mkdir(parents=True)
    shutil.copy(dev / "model_index.json", repo / "model_index.json")
    for part in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        if part not in link:
            (repo / part).mkdir()
            shutil.copy(dev / part / "config.json", repo / part / "config.json")
    for part in ("scheduler", *link):
        (repo / part).symlink_to(dev / part, target_is_directory=True)


def test_flux_dev_single_file_at_real_width_and_in_the_comfyui_layout(flux_root, tmp_path):
    """The 3072-wide FLUX.1-dev transformer in BFL's original keys, through our loader (`locate_model` -> the
    config folder -> diffusers' ``from_single_file`` converter): (a) beside a diffusers folder without the
    transformer, every converted tensor equal to the original; (b) in ComfyUI's layout (``diffusion_models/``,
    ``clip/clip_l``, ``clip/t5xxl``, ``vae/ae``, the repo's configs and tokenizers only), one step runs."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from pipelines.generation.loading import MODEL_CACHE, LoadContext, load_denoiser, load_pipeline
    from pipelines.models.profiles import get_profile
    from pipelines.models.single_file import SINGLE_FILE_SOURCE, locate_model, read_marker
    from tests.helpers.single_file import clip_to_comfy, flux_to_original, t5_to_comfy, vae_to_bfl

    dev, profile = flux_root / FLUX_DEV, get_profile(FLUX_DEV)
    want = _tensors(dev / "transformer")
    a = tmp_path / "a"
    _configs_only(dev, a / FLUX_DEV, link=("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"))
    (a / "unet").mkdir()
    save_file(flux_to_original(want), str(a / "unet" / "flux1-dev.safetensors"))
    assert locate_model(profile, a).source == SINGLE_FILE_SOURCE
    got = load_denoiser(profile, LoadContext(a, _settings())).state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    with safe_open(str(a / "unet" / "flux1-dev.safetensors"), "pt") as f:  # BFL's layout, tensor by tensor
        q, k, v = f.get_tensor("double_blocks.0.img_attn.qkv.weight").chunk(3)
        assert all(torch.equal(got[f"transformer_blocks.0.attn.to_{n}.weight"], t) for n, t in zip("qkv", (q, k, v)))
        parts = f.get_tensor("single_blocks.0.linear1.weight").split([3072, 3072, 3072, 4 * 3072])
        for name, t in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts, strict=True):
            assert torch.equal(got[f"single_transformer_blocks.0.{name}.weight"], t)
        shift, scale = f.get_tensor("final_layer.adaLN_modulation.1.weight").chunk(2)
        assert torch.equal(got["norm_out.linear.weight"], torch.cat([scale, shift]))  # diffusers: scale first
    del got
    MODEL_CACHE.clear()

    b = tmp_path / "b"
    _configs_only(dev, b / FLUX_DEV, link=("tokenizer", "tokenizer_2"))
    (b / "diffusion_models").mkdir(parents=True)  # the same file (the prefixed keys are tested on tiny files)
    (b / "diffusion_models" / "flux1-dev.safetensors").symlink_to(a / "unet" / "flux1-dev.safetensors")
    t5, vae = _tensors(dev / "text_encoder_2"), _tensors(dev / "vae")
    for rel, sd in (("clip/clip_l.safetensors", clip_to_comfy(_tensors(dev / "text_encoder"))),
                    ("clip/t5xxl_fp16.safetensors", t5_to_comfy(t5)), ("vae/ae.safetensors", vae_to_bfl(vae, 4))):
        (b / rel).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: t.contiguous() for k, t in sd.items()}, str(b / rel))
    marker = read_marker(locate_model(profile, b).path)
    assert set(marker["part_files"]) == {"text_encoder", "text_encoder_2", "vae"}
    pipe = load_pipeline(FLUX_DEV, model_root=b, settings=_settings())
    assert torch.equal(pipe.transformer.single_transformer_blocks[0].proj_mlp.weight,
                       want["single_transformer_blocks.0.proj_mlp.weight"])
    del want
    assert torch.equal(pipe.text_encoder_2.shared.weight, t5["shared.weight"])
    assert torch.equal(pipe.text_encoder_2.encoder.block[0].layer[1].DenseReluDense.wi_1.weight,
                       t5["encoder.block.0.layer.1.DenseReluDense.wi_1.weight"])
    assert torch.equal(pipe.vae.decoder.mid_block.attentions[0].to_q.weight,
                       vae["decoder.mid_block.attentions.0.to_q.weight"])
    assert torch.equal(pipe.text_encoder.embeddings.token_embedding.weight,
                       _tensors(dev / "text_encoder")["embeddings.token_embedding.weight"])
    out = pipe("a navy t-shirt", num_inference_steps=1, height=128, width=128, guidance_scale=3.5,
               max_sequence_length=64, output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 128, 128, 3) and np.isfinite(out).all() and out.std() > 0


def _flux_inputs(side: int = 128, text_tokens: int = 64) -> dict:
    """Random inputs of one FLUX.1-dev transformer call at a ``side`` px image (packed 2x2 latents: (side/16)^2
    tokens of 64 channels), ``text_tokens`` T5 tokens (4096) and CLIP's pooled 768; bfloat16."""
    import torch

    g, n = torch.Generator().manual_seed(0), (side // 16) ** 2
    bf = dict(dtype=torch.bfloat16)
    return dict(hidden_states=torch.randn(1, n, 64, generator=g).to(**bf),
                encoder_hidden_states=torch.randn(1, text_tokens, 4096, generator=g).to(**bf),
                pooled_projections=torch.randn(1, 768, generator=g).to(**bf), timestep=torch.tensor([0.5], **bf),
                img_ids=torch.zeros(n, 3), txt_ids=torch.zeros(text_tokens, 3), guidance=torch.tensor([3.5], **bf),
                return_dict=False)


def test_flux_dev_gguf_in_bfl_keys_as_city96_publishes_it(flux_root, tmp_path):
    """city96/FLUX.1-dev-gguf's ``flux1-dev-Q8_0.gguf`` as published: the 3072-wide transformer in BFL's original
    keys, Q8_0 with city96's F32/F16 exceptions (`tests.helpers.single_file.write_flux_gguf`), beside the diffusers
    FLUX.1-dev folder. Through our loader (``gguf=`` -> `_load_gguf` -> diffusers' converter) every weight is the
    GGUF round trip of the original (quantized ones kept as ``GGUFParameter``; the fused ``qkv`` / ``linear1``
    split and ``norm_out``'s shift/scale swapped), the memory plan counts the file's quantized bytes, and one
    transformer call at the 128 px working side stays within Q8_0's error of the bfloat16 model."""
    import gguf
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    from pipelines.generation.loading import LoadContext, load_denoiser
    from pipelines.generation.memplan import gguf_size, plan_models
    from pipelines.generation.modelset import resolve_model_set
    from pipelines.models.profiles import get_profile
    from tests.helpers.single_file import flux_to_original, write_flux_gguf

    q = gguf.GGMLQuantizationType
    dev, gp = flux_root / FLUX_DEV, get_profile("city96/FLUX.1-dev-gguf")
    root = tmp_path / "models"
    (root / FLUX_DEV).parent.mkdir(parents=True)
    (root / FLUX_DEV).symlink_to(dev, target_is_directory=True)  # the diffusers folder: configs, encoders, VAE
    path = root / gp.id / gp.weight_name
    original = flux_to_original(_tensors(dev / "transformer"))
    written = write_flux_gguf(original, path)
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(path)).tensors}
    assert types == {k: t for k, (t, _) in written.items()}
    assert (types["double_blocks.0.img_attn.qkv.weight"], types["single_blocks.0.linear1.weight"],
            types["img_in.weight"], types["txt_in.weight"], types["final_layer.adaLN_modulation.1.weight"],
            types["double_blocks.0.img_attn.qkv.bias"]) == (q.Q8_0, q.Q8_0, q.F32, q.F16, q.F16, q.F32)

    size = gguf_size(path)  # the memory plan's size: the quantized bytes of every tensor, as written
    assert size.stored_bytes == sum(n for _, n in written.values()) < path.stat().st_size
    assert size.params == sum(t.numel() for t in original.values())
    settings = _settings(gguf=gp.id)
    planned = {m.id: m for m in plan_models(resolve_model_set("flux", root, settings), settings=settings,
                                            device="cpu")}
    assert planned[f"{FLUX_DEV}/transformer"].bytes == size.stored_bytes
    assert planned[f"{FLUX_DEV}/transformer"].quantized == "gguf"

    model = load_denoiser(get_profile(FLUX_DEV), LoadContext(root, settings))
    params = dict(model.named_parameters())
    quantized = {k for k, p in params.items() if isinstance(p, GGUFParameter)}
    assert "transformer_blocks.0.attn.to_q.weight" in quantized and "x_embedder.weight" not in quantized
    assert len(quantized) == sum(t == q.Q8_0 for t in types.values()) + 2 * 2 + 3  # qkv x2 -> 3 each, linear1 -> 4

    def round_trip(x, t=q.Q8_0):
        return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(x.float().numpy(), t), t))

    def check(got, want):  # got: a loaded parameter, want: the float32 round trip of its original
        if isinstance(got, GGUFParameter):  # dequantized in float16 by diffusers: within its rounding
            torch.testing.assert_close(dequantize_gguf_tensor(got).float(), want, rtol=2**-10, atol=1e-8)
        else:  # F32 / F16 tensors are cast to the compute dtype
            assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))

    qkv = original["double_blocks.0.img_attn.qkv.weight"]
    assert not torch.equal(round_trip(qkv), qkv.float())  # quantized, not stored exactly
    blocks = qkv.float().reshape(-1, 32)  # Q8_0's error: half a step of amax / 127 (plus d's f16 rounding)
    err = (round_trip(qkv).reshape(-1, 32) - blocks).abs()
    assert bool((err <= blocks.abs().amax(1, keepdim=True) / 127 * 0.6).all())
    for name, part in zip("qkv", round_trip(qkv).chunk(3), strict=True):
        check(params[f"transformer_blocks.0.attn.to_{name}.weight"], part)
    split = round_trip(original["single_blocks.0.linear1.weight"]).split([3072, 3072, 3072, 4 * 3072])
    for name, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), split, strict=True):
        check(params[f"single_transformer_blocks.0.{name}.weight"], part)
    shift, scale = round_trip(original["final_layer.adaLN_modulation.1.weight"], q.F16).chunk(2)
    check(params["norm_out.linear.weight"], torch.cat([scale, shift]))  # diffusers: scale first
    check(params["x_embedder.weight"], original["img_in.weight"].float())  # F32: exact
    # every tensor: the loaded model, dequantized and mapped back to BFL's keys, is the file's round trip
    back = flux_to_original({k: dequantize_gguf_tensor(p) for k, p in params.items()})  # float16 / bfloat16
    assert set(back) == set(original)
    for k in list(back):  # one tensor at a time in float32
        t, want = back.pop(k).float(), round_trip(original[k], types[k])
        if types[k] == q.Q8_0:
            torch.testing.assert_close(t, want, rtol=2**-10, atol=1e-8)
        else:
            assert torch.equal(t, want.to(torch.bfloat16).float()), k
    del back, original

    plain = load_denoiser(get_profile(FLUX_DEV), LoadContext(root, _settings()))
    assert plain is not model and not isinstance(plain.transformer_blocks[0].attn.to_q.weight, GGUFParameter)
    with torch.no_grad():
        a, b = (m(**_flux_inputs())[0].float() for m in (plain, model))
    assert a.shape == b.shape == (1, 64, 64) and torch.isfinite(b).all()
    rel = float((a - b).abs().max() / a.abs().max())
    assert 0 < rel < 0.05  # Q8_0: close, not identical
    path.unlink()


# ---------------------------------------------------------------------------------------------------- SDXL
def test_sdxl_end_to_end_reads_the_fp16_variants(sdxl_root, products, tmp_path):
    import torch

    from pipelines.engines.generative import sdxl_engine

    engine = sdxl_engine(model_root=sdxl_root, settings=_settings())
    g = _render(engine, products, tmp_path / "catalog")
    assert g["controlnets"] == ["diffusers/controlnet-canny-sdxl-1.0"]
    assert engine.generator.scene_pipeline().generator.unet.dtype == torch.bfloat16


def test_sdxl_from_an_fp16_only_download(sdxl_root, products, tmp_path):
    from pipelines.engines.generative import sdxl_engine
    from pipelines.dev_models.realarch import fp16_only_copy

    root = _view(sdxl_root, tmp_path / "models", without=(SDXL_BASE,))
    fp16_only_copy(sdxl_root / SDXL_BASE, root / SDXL_BASE)
    assert not list((root / SDXL_BASE).rglob("diffusion_pytorch_model.safetensors"))
    engine = sdxl_engine(model_root=root, settings=_settings(dtype="float32"))  # fp16 files, float32 compute
    _render(engine, products, tmp_path / "catalog")


def test_sdxl_with_one_seam_step_runs_or_is_refused_at_start(sdxl_root, products, tmp_path):
    """SDXL's seam runs at strength 0.99: one step is int(1 * 0.99) = 0 steps in diffusers. Either it runs, or
    the setting is refused before anything is generated, naming it."""
    from pipelines.catalog.render import process_sku
    from pipelines.errors import InputError
    from pipelines.engines.generative import sdxl_engine
    from pipelines.product import load_product

    try:
        engine = sdxl_engine(model_root=sdxl_root, settings=_settings(seam_steps=1))
        r = process_sku(load_product(products / "tee", root=products), tmp_path / "catalog", engine, _options())
    except InputError as exc:
        assert "SEAM_STEPS" in str(exc).upper() or "seam_steps" in str(exc)
        return
    assert r.status == "ok" or "SEAM_STEPS" in (r.error or "").upper(), r.error


def test_hf_cache_snapshot_is_found_offline(sdxl_root, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from pipelines.models.location import locate
    from pipelines.dev_models.realarch import hf_cache_snapshot

    snap = hf_cache_snapshot(sdxl_root / SDXL_BASE, tmp_path / "hub", SDXL_BASE)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loc = locate(SDXL_BASE, tmp_path / "empty-root", required_files=("model_index.json",))
    assert loc.source == "hf-cache" and loc.path == snap


# ------------------------------------------------------------------------------------------- grounded-sam
def test_grounded_sam_at_full_size(seg_root):
    from pipelines.segmentation.grounded_sam import GroundedSam

    pipe = GroundedSam.from_models(seg_root, detector="IDEA-Research/grounding-dino-tiny",
                                   sam="facebook/sam-vit-base", device="cpu")
    assert pipe.detector.model.config.num_queries == 900
    assert pipe.mask_predictor.model.config.vision_config.hidden_size == 768
    image = np.random.default_rng(0).integers(0, 255, (200, 160, 3), dtype=np.uint8)
    out = pipe(image, "shirt. person", box_threshold=0.0, text_threshold=0.0)
    assert out.mask.shape == (200, 160) and set(np.unique(out.mask)) <= {0, 255}
    assert out.detections and all(0 <= d.box[0] < d.box[2] <= 160 for d in out.detections)


"""Single-file checkpoints (A1111 SDXL, BFL/ComfyUI FLUX transformer) in original keys: found by name and by
their safetensors header, loaded offline through diffusers' converters with a local config folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.generation import fast_settings
from tests.helpers.single_file import flux_to_original, write_sdxl_checkpoint
from pipelines.errors import InputError
from pipelines.models.single_file import (SINGLE_FILE_SOURCE, SingleFileIncompleteError, find_single_file,
                                          locate_model, read_marker, scan_single_files)
from pipelines.models.profiles import get_profile

pytestmark = [pytest.mark.usefixtures("fresh_model_cache"),
              pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")]

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SCHNELL = "black-forest-labs/FLUX.1-schnell"


def _drop_weights(folder: Path) -> None:
    for p in list(folder.rglob("*.safetensors")):
        p.unlink()


@pytest.fixture(scope="module")
def sdxl_root(tmp_path_factory):
    """``checkpoints/sd_xl_base_1.0.safetensors`` (LDM keys) + the repo's configs and tokenizers, no weights."""
    from diffusers import StableDiffusionXLPipeline

    from pipelines.dev_models.tiny_generation import sdxl_shared, sdxl_unet

    root = tmp_path_factory.mktemp("sf-sdxl")
    pipe = StableDiffusionXLPipeline(**sdxl_shared(), unet=sdxl_unet(), image_encoder=None, feature_extractor=None)
    pipe.save_pretrained(root / SDXL, safe_serialization=True)
    _drop_weights(root / SDXL)  # hf download REPO --include "*.json" "*.txt"
    write_sdxl_checkpoint(pipe, root / "checkpoints" / "sd_xl_base_1.0.safetensors")
    return root, pipe


def test_sdxl_checkpoint_found_by_name_and_by_header(sdxl_root, tmp_path):
    from pipelines.models.inventory import model_inventory

    root, _ = sdxl_root
    sf = find_single_file(SDXL, root, repo_folder=root / SDXL)
    assert sf is not None and sf.kind == "sdxl-checkpoint" and sf.matched == "name"
    assert [s.model_id for s in scan_single_files(root)] == [SDXL]
    row = next(r for r in model_inventory(root) if r["id"] == SDXL)
    assert row["source"] == SINGLE_FILE_SOURCE and row["found"].endswith("sd_xl_base_1.0.safetensors")
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(sf.path, other / "checkpoints" / "my-finetune-xl.safetensors")
    by_header = find_single_file(SDXL, other)
    assert by_header is not None and by_header.matched == "header"
    assert find_single_file(SCHNELL, other) is None


def test_sdxl_checkpoint_loads_the_written_weights_and_runs(sdxl_root):
    import torch

    from pipelines.generation.loading import MODEL_CACHE, load_pipeline
    from pipelines.generation.modelset import resolve_model_set

    root, ref = sdxl_root
    ms = resolve_model_set("sdxl", root, fast_settings())
    marker = read_marker(ms.paths[ms.base.name])
    assert marker["name"] == "sd_xl_base_1.0.safetensors" and len(marker["header_sha256"]) == 64
    pipe = load_pipeline(SDXL, model_root=root, settings=fast_settings())
    pairs = [(pipe.unet.conv_in.weight, ref.unet.conv_in.weight),
             (pipe.unet.down_blocks[1].attentions[0].proj_in.weight, ref.unet.down_blocks[1].attentions[0].proj_in.weight),
             (pipe.unet.up_blocks[0].upsamplers[0].conv.weight, ref.unet.up_blocks[0].upsamplers[0].conv.weight),
             (pipe.vae.decoder.up_blocks[0].resnets[0].conv1.weight, ref.vae.decoder.up_blocks[0].resnets[0].conv1.weight),
             (pipe.vae.encoder.mid_block.attentions[0].to_q.weight, ref.vae.encoder.mid_block.attentions[0].to_q.weight)]
    for mine, want in pairs:
        assert torch.equal(mine.detach().float(), want.detach().float())
    for name in ("text_encoder", "text_encoder_2"):
        mine, want = getattr(pipe, name).state_dict(), getattr(ref, name).state_dict()
        for k in want:
            if "position_ids" not in k:
                assert torch.equal(mine[k].float(), want[k].float()), (name, k)
    for a, b in zip(pipe.unet.state_dict().values(), ref.unet.state_dict().values(), strict=True):
        assert torch.equal(a.float(), b.float())
    assert any(k.part == "unet" and k.variant == "single-file:sd_xl_base_1.0.safetensors" for k in MODEL_CACHE.keys())
    out = pipe("a shirt", num_inference_steps=1, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3)


def test_sdxl_checkpoint_without_tokenizers_names_them(sdxl_root, tmp_path):
    from pipelines.generation.modelset import probe_model_set

    root, _ = sdxl_root
    bare = tmp_path / "bare"
    shutil.copytree(root / SDXL, bare / SDXL)
    for part in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(bare / SDXL / part)
    (bare / "checkpoints").mkdir()
    (bare / "checkpoints" / "sd_xl_base_1.0.safetensors").symlink_to(root / "checkpoints" / "sd_xl_base_1.0.safetensors")
    with pytest.raises(SingleFileIncompleteError, match="vocab.json, merges.txt") as err:
        locate_model(get_profile(SDXL), bare)
    assert "tokenizer_2" in str(err.value) and "hf download" in str(err.value)
    ms, reason = probe_model_set("sdxl", bare)
    assert ms is None and "tokenizer" in reason
    only_file = tmp_path / "only"
    (only_file / "checkpoints").mkdir(parents=True)
    (only_file / "checkpoints" / "sd_xl_base_1.0.safetensors").symlink_to(root / "checkpoints" / "sd_xl_base_1.0.safetensors")
    with pytest.raises(SingleFileIncompleteError, match="not the published architecture"):
        locate_model(get_profile(SDXL), only_file)  # tiny widths: the published configs do not fit


@pytest.fixture(scope="module")
def flux_root(tmp_path_factory):
    """A FLUX.1-schnell diffusers folder without its transformer weights + ``unet/flux1-schnell.safetensors``."""
    from diffusers import FluxPipeline

    from pipelines.dev_models.tiny_generation import flux_shared, flux_transformer

    root = tmp_path_factory.mktemp("sf-flux")
    transformer = flux_transformer(guidance_embeds=False)
    pipe = FluxPipeline(**flux_shared(), transformer=transformer)
    pipe.save_pretrained(root / SCHNELL, safe_serialization=True)
    _drop_weights(root / SCHNELL / "transformer")
    from safetensors.torch import save_file

    (root / "unet").mkdir()
    save_file(flux_to_original(transformer.state_dict()), str(root / "unet" / "flux1-schnell.safetensors"))
    return root, pipe


def test_flux_transformer_found_and_shared_parts_linked(flux_root, tmp_path):
    import torch

    from pipelines.generation.loading import LoadContext, load_component, load_denoiser

    root, ref = flux_root
    loc = locate_model(get_profile(SCHNELL), root)
    assert loc.source == SINGLE_FILE_SOURCE
    marker = read_marker(loc.path)
    assert marker["kind"] == "flux-transformer" and marker["parts"] == {"transformer": ""}
    assert set(marker["components"]) == {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"}
    ctx = LoadContext(root, fast_settings())
    vae = load_component(get_profile(SCHNELL), "vae", ctx)
    assert torch.equal(vae.decoder.conv_in.weight, ref.vae.decoder.conv_in.weight)
    # diffusers' FLUX converter hard-codes the 3072-wide FLUX.1 blocks: a tiny file is refused clearly
    with pytest.raises(InputError, match="single-file checkpoint"):
        load_denoiser(get_profile(SCHNELL), ctx)
    # by header: no guidance embedding = schnell, ComfyUI's model.diffusion_model. prefix accepted
    from safetensors.torch import save_file

    from pipelines.dev_models.tiny_generation import flux_transformer

    other = tmp_path / "other"
    (other / "diffusion_models").mkdir(parents=True)
    wide_in = flux_transformer(in_channels=64, guidance_embeds=False)  # FLUX.1's 64 packed latent channels
    save_file(flux_to_original(wide_in.state_dict(), prefix="model.diffusion_model."),
              str(other / "diffusion_models" / "my-flux.safetensors"))
    sf = find_single_file(SCHNELL, other)
    assert sf is not None and sf.matched == "header" and sf.parts == {"transformer": "model.diffusion_model."}
    assert find_single_file("black-forest-labs/FLUX.1-dev", other) is None
    with pytest.raises(SingleFileIncompleteError, match="not the published architecture"):
        locate_model(get_profile(SCHNELL), other)


def test_flux_transformer_without_text_encoders_names_them(flux_root, tmp_path):
    root, _ = flux_root
    bare = tmp_path / "bare"
    shutil.copytree(root / SCHNELL, bare / SCHNELL)
    _drop_weights(bare / SCHNELL)
    (bare / "unet").mkdir()
    (bare / "unet" / "flux1-schnell.safetensors").symlink_to(root / "unet" / "flux1-schnell.safetensors")
    with pytest.raises(SingleFileIncompleteError) as err:
        locate_model(get_profile(SCHNELL), bare)
    msg = str(err.value)
    assert "CLIP-L" in msg and "T5-XXL" in msg and "VAE" in msg and "--include" in msg


def test_engine_model_record_names_the_single_file(sdxl_root):
    from pipelines.engines.generative import SceneGenerator

    root, _ = sdxl_root
    gen = SceneGenerator("sdxl", root, settings=fast_settings())
    rec = next(m for m in gen.models() if m["id"] == SDXL)
    assert rec["source"].endswith("sd_xl_base_1.0.safetensors")
    assert rec["single_file"]["name"] == "sd_xl_base_1.0.safetensors" and len(rec["single_file"]["header_sha256"]) == 64
    assert rec["single_file"]["configs"] == str(root / SDXL)
    assert len(gen.fingerprints()[SDXL]) == 64


# ------------------------------------------------------------------------- ComfyUI's clip/ and vae/ part files
def _gated_t5(tokenizer):
    """FLUX's T5-XXL is T5 v1.1 (gated ``wi_0``/``wi_1``), as ComfyUI's t5xxl files are: a tiny one."""
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(7)
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()


@pytest.fixture(scope="module")
def comfy_root(tmp_path_factory):
    """ComfyUI's layout: ``unet/flux1-schnell.safetensors`` (BFL keys), ``clip/clip_l.safetensors``,
    ``clip/t5xxl_fp16.safetensors``, ``vae/ae.safetensors``, and the schnell repo's configs and tokenizers only
    (``hf download REPO --include "*.json" "*.txt" "tokenizer*/*"``)."""
    import torch
    from diffusers import FluxPipeline
    from safetensors.torch import save_file

    from pipelines.dev_models.tiny_generation import flux_shared, flux_transformer
    from tests.helpers.single_file import write_comfy_parts

    root = tmp_path_factory.mktemp("sf-comfy")
    shared = flux_shared()
    shared["text_encoder_2"] = _gated_t5(shared["tokenizer_2"])
    shared["text_encoder_2"].to(torch.float16)  # as t5xxl_fp16.safetensors holds it: exact in float32
    transformer = flux_transformer(guidance_embeds=False)
    pipe = FluxPipeline(**shared, transformer=transformer)
    pipe.save_pretrained(root / SCHNELL, safe_serialization=True)
    _drop_weights(root / SCHNELL)
    (root / "unet").mkdir()
    save_file(flux_to_original(transformer.state_dict()), str(root / "unet" / "flux1-schnell.safetensors"))
    write_comfy_parts(root, clip=pipe.text_encoder, t5=pipe.text_encoder_2, vae=pipe.vae)
    return root, pipe


def _equal_state(mine, want, skip=("position_ids",)) -> None:
    import torch

    mine, want = mine.state_dict(), want.state_dict()
    for k, v in want.items():
        if not any(s in k for s in skip):
            assert torch.equal(mine[k].float(), v.float()), k


def _comfy_copy(src: Path, dest: Path, *, clip: bool = True, t5: bool = True, vae: bool = True) -> Path:
    """A model root linking ``src``'s transformer file and the chosen ComfyUI part files."""
    for sub, name, keep in (("unet", "flux1-schnell.safetensors", True), ("clip", "clip_l.safetensors", clip),
                            ("clip", "t5xxl_fp16.safetensors", t5), ("vae", "ae.safetensors", vae)):
        if keep:
            (dest / sub).mkdir(parents=True, exist_ok=True)
            (dest / sub / name).symlink_to(src / sub / name)
    return dest


def _link_repo(src: Path, dest: Path) -> None:
    (dest / SCHNELL).parent.mkdir(parents=True, exist_ok=True)
    (dest / SCHNELL).symlink_to(src / SCHNELL, target_is_directory=True)


def test_comfyui_text_encoder_and_vae_files_are_loaded(comfy_root):
    from pipelines.generation.loading import LoadContext, load_component
    from pipelines.generation.memplan import plan_models
    from pipelines.generation.modelset import resolve_model_set

    root, ref = comfy_root
    loc = locate_model(get_profile(SCHNELL), root)
    marker = read_marker(loc.path)
    assert loc.source == SINGLE_FILE_SOURCE
    assert {p: f["name"] for p, f in marker["part_files"].items()} == {
        "text_encoder": "clip_l.safetensors", "text_encoder_2": "t5xxl_fp16.safetensors", "vae": "ae.safetensors"}
    assert marker["components"]["tokenizer"] == str(root / SCHNELL / "tokenizer")
    assert marker["components"]["vae"] == str(root / "vae" / "ae.safetensors")
    ctx = LoadContext(root, fast_settings())
    profile = get_profile(SCHNELL)
    _equal_state(load_component(profile, "text_encoder", ctx), ref.text_encoder)
    t5 = load_component(profile, "text_encoder_2", ctx)
    _equal_state(t5, ref.text_encoder_2)
    assert t5.encoder.embed_tokens.weight.data_ptr() == t5.shared.weight.data_ptr()  # tied, as in the repo
    _equal_state(load_component(profile, "vae", ctx), ref.vae)  # BFL names -> diffusers, 1x1-conv attention too
    assert load_component(profile, "tokenizer_2", ctx)("a shirt").input_ids == ref.tokenizer_2("a shirt").input_ids
    # the plan sizes the parts from the files they are in (the transformer file has 0 guidance tensors)
    ms = resolve_model_set("flux", root, fast_settings())
    sizes = {m.id: m for m in plan_models(ms, settings=fast_settings(), device="cpu")}
    n_vae = sum(p.numel() for p in ref.vae.parameters())
    assert sizes[f"{SCHNELL}/vae"].bytes == n_vae * 4
    n_te = sum(p.numel() for p in ref.text_encoder.parameters())
    hidden = ref.text_encoder.config.hidden_size
    assert sizes[f"{SCHNELL}/text_encoder"].bytes == (n_te + hidden * hidden + 1) * 4  # + ComfyUI's projection
    assert sizes[f"{SCHNELL}/transformer"].bytes == sum(p.numel() for p in ref.transformer.parameters()) * 4


def test_comfyui_t5_in_fp8_is_upcast_and_scaled_fp8_is_refused(comfy_root, tmp_path):
    import torch

    from pipelines.generation.loading import LoadContext, load_component
    from tests.helpers.single_file import write_comfy_parts

    root, ref = comfy_root
    fp8 = _comfy_copy(root, tmp_path / "fp8", t5=False)
    write_comfy_parts(fp8, t5=ref.text_encoder_2, t5_name="t5xxl_fp8_e4m3fn.safetensors", t5_dtype=torch.float8_e4m3fn)
    _link_repo(root, fp8)
    t5 = load_component(get_profile(SCHNELL), "text_encoder_2", LoadContext(fp8, fast_settings()))
    want = ref.text_encoder_2.encoder.block[1].layer[1].DenseReluDense.wi_0.weight
    got = t5.encoder.block[1].layer[1].DenseReluDense.wi_0.weight
    assert got.dtype == torch.float32 and torch.equal(got, want.to(torch.float8_e4m3fn).float())
    assert not torch.equal(got, want.float())  # really the fp8 file
    scaled = _comfy_copy(root, tmp_path / "scaled", t5=False)
    write_comfy_parts(scaled, t5=ref.text_encoder_2, t5_name="t5xxl_fp8_e4m3fn_scaled.safetensors",
                      t5_dtype=torch.float8_e4m3fn, scaled=True)
    _link_repo(root, scaled)
    with pytest.raises(SingleFileIncompleteError, match="scaled fp8") as err:
        locate_model(get_profile(SCHNELL), scaled)
    assert "t5xxl_fp8_e4m3fn_scaled.safetensors" in str(err.value) and "CLIP-L" not in str(err.value)


def test_comfyui_layout_without_tokenizers_names_them(comfy_root, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from pipelines.dev_models.realarch import save_clip_tokenizer
    from pipelines.generation.loading import LoadContext, load_component

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    root, ref = comfy_root
    bare = _comfy_copy(root, tmp_path / "bare")
    shutil.copytree(root / SCHNELL, bare / SCHNELL)
    for part in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(bare / SCHNELL / part)
    with pytest.raises(SingleFileIncompleteError) as err:
        locate_model(get_profile(SCHNELL), bare)
    msg = str(err.value)
    assert "the CLIP tokenizer (tokenizer" in msg and "the T5 tokenizer (tokenizer_2)" in msg
    assert "hf download" in msg and "'tokenizer*/*'" in msg and "~10 GB" not in msg
    assert "CLIP-L" not in msg and "T5-XXL" not in msg and "VAE (vae)" not in msg  # the part files were found
    # CLIP's BPE files and google/t5-v1_1-xxl's tokenizer, where the donors' folders are
    save_clip_tokenizer(ref.tokenizer, bare / "openai" / "clip-vit-large-patch14")  # vocab.json + merges.txt
    ref.tokenizer_2.save_pretrained(bare / "google" / "t5-v1_1-xxl")
    loc = locate_model(get_profile(SCHNELL), bare)
    assert read_marker(loc.path)["components"]["tokenizer_2"] == str(bare / "google" / "t5-v1_1-xxl")
    ctx = LoadContext(bare, fast_settings())
    for part, want in (("tokenizer", ref.tokenizer), ("tokenizer_2", ref.tokenizer_2)):
        assert load_component(get_profile(SCHNELL), part, ctx)("a navy shirt").input_ids == \
            want("a navy shirt").input_ids
    # a part file that does not fit the config it would be read with is named, with what differs
    (bare / SCHNELL / "text_encoder" / "config.json").unlink()  # -> the published CLIP-L config (768 wide)
    with pytest.raises(SingleFileIncompleteError, match="clip_l.safetensors") as err:
        locate_model(get_profile(SCHNELL), bare)
    assert "not the published CLIP-L" in str(err.value) and "[49408, 768]" in str(err.value)


# ------------------------------------------------------------------------------- the memory plan of single files
def _plans(a: Path, b: Path, engine: str) -> list:
    from pipelines.generation.memplan import plan_for_engine
    from pipelines.generation.settings import GenerationSettings

    settings = GenerationSettings(work_side=1024)
    return [plan_for_engine(engine, r, gpu_memory_gb=24, settings=settings) for r in (a, b)]


def test_memory_plan_of_a_comfyui_flux_dev_is_the_diffusers_folders(tmp_path):
    from pipelines.generation import memplan
    from tests.helpers.memory_plan import flux_models, write_flux_root
    from tests.helpers.single_file import write_flux_single_file_headers

    dev = "black-forest-labs/FLUX.1-dev"
    a, b = write_flux_root(tmp_path / "a"), write_flux_root(tmp_path / "b")
    for part in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        shutil.rmtree(b / dev / part)
    for other in ("FLUX.1-Fill-dev", "FLUX.1-Kontext-dev"):
        shutil.rmtree(b / "black-forest-labs" / other / "text_encoder_2")  # so T5 comes from ComfyUI's file
    for rel in ("tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer_2/tokenizer.json"):
        (b / dev / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / dev / rel).write_text("{}")
    write_flux_single_file_headers(b, flux_models())
    loc = locate_model(get_profile(dev), b)
    assert set(read_marker(loc.path)["part_files"]) == {"text_encoder", "text_encoder_2", "vae"}
    pa, pb = _plans(a, b, "flux")
    ma, mb = {m.id: m for m in pa.models}, {m.id: m for m in pb.models}
    assert set(ma) == set(mb)
    projection = 768 * 768 + 1  # ComfyUI's clip_l also holds text_projection and logit_scale (not loaded)
    for mid, m in ma.items():
        slack = projection * 2 if mid.endswith("/text_encoder") else 0
        assert 0 <= mb[mid].bytes - m.bytes <= slack, mid
        assert mb[mid].placement == m.placement, mid
    assert ma[f"{dev}/transformer"].bytes > 20e9 and mb[f"{dev}/transformer"].source == "safetensors header"
    assert (pb.level, pb.fits) == (pa.level, pa.fits) and pa.level != "resident"  # 24 GB: offloaded the same way
    # the only difference: layer-by-layer offload keeps the largest tensors on the GPU, and the file's largest is
    # the fused single-block linear1 (q, k, v and the MLP in one) where the loaded model's is proj_out
    fused, split = 3072 * (3 * 3072 + 4 * 3072), 3072 * (3072 + 4 * 3072)
    assert 0 <= pb.peak_gb - pa.peak_gb <= memplan.SEQUENTIAL_TENSORS * (fused - split) * 2 / 1e9 + 0.01


def test_memory_plan_of_an_sdxl_checkpoint_is_the_diffusers_folders(tmp_path):
    from tests.helpers.memory_plan import sdxl_models, write_sdxl_root
    from tests.helpers.single_file import write_sdxl_checkpoint_headers

    a, b = write_sdxl_root(tmp_path / "a"), write_sdxl_root(tmp_path / "b")
    for part in ("unet", "text_encoder", "text_encoder_2", "vae"):
        shutil.rmtree(b / SDXL / part)
    for rel in ("tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"):
        (b / SDXL / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / SDXL / rel).write_text("{}")
    write_sdxl_checkpoint_headers(b / "checkpoints" / "sd_xl_base_1.0.safetensors", sdxl_models())
    assert locate_model(get_profile(SDXL), b).source == SINGLE_FILE_SOURCE
    pa, pb = _plans(a, b, "sdxl")
    ma, mb = {m.id: m for m in pa.models}, {m.id: m for m in pb.models}
    assert set(ma) == set(mb) and {f"{SDXL}/{p}" for p in ("unet", "vae", "text_encoder", "text_encoder_2")} <= set(ma)
    for mid, m in ma.items():  # the same tensors, renamed (q/k/v fused, 1x1 convs): the same bytes
        assert (mb[mid].bytes, mb[mid].placement) == (m.bytes, m.placement), mid
    assert (pb.level, pb.peak_gb) == (pa.level, pa.peak_gb)

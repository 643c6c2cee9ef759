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

"""Tiny random FLUX.1 and SDXL models in the real repo layouts (``vitrine dev tiny-models DIR``).

Written under ``DIR/<org>/<name>/`` where the real snapshots go, so Vitrine's loader
(`pipelines.generation.loading`) runs on them unchanged:

- ``flux``: ``black-forest-labs/FLUX.1-dev`` (+ its single file ``flux1-dev.safetensors``),
  ``FLUX.1-schnell``, ``FLUX.1-Fill-dev``, ``FLUX.1-Kontext-dev``, ``FLUX.1-Canny-dev`` (FLUX Control),
  ``Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro``, a LoRA made with peft at
  ``alimama-creative/FLUX.1-Turbo-Alpha`` and a GGUF (Q8_0) transformer written with the ``gguf`` package
  at ``city96/FLUX.1-dev-gguf/flux1-dev-Q8_0.gguf``;
- ``sdxl``: ``stabilityai/stable-diffusion-xl-base-1.0``, ``-refiner-1.0``,
  ``diffusers/stable-diffusion-xl-1.0-inpainting-0.1``, ``xinsir/controlnet-{openpose,canny}-sdxl-1.0`` and a
  peft LoRA at ``ByteDance/SDXL-Lightning/sdxl_lightning_4step_lora.safetensors``.

Configs follow diffusers' own fast tests (one transformer layer, hidden size 32). The FLUX models share
one tiny VAE (4 latent channels, scale factor 2) and text encoders, as the real FLUX.1 repos do. Their
native resolution (the VAE's ``sample_size``) is 32 px, so an engine run on them generates at about
32x32 px (28x36 for a 4:5 output). The tiny single file and GGUF hold diffusers key names: diffusers'
converter from the original FLUX layout hard-codes the full-size hidden size (3072), so a tiny file in
the original layout cannot be converted; the real files load through the same call (the real-architecture
tier writes BFL-key single files and city96-style BFL-key GGUF files at real width).

Tokenizers are trained locally with ``tokenizers`` (CLIP byte-level BPE, T5 Unigram). Builders are
seeded: the same call writes the same weights. Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

from pipelines.models.generation_models import (
    FLUX_DEV,
    FLUX_FILL,
    FLUX_KONTEXT,
    FLUX_SCHNELL,
    SDXL_BASE,
    SDXL_INPAINT,
    SDXL_REFINER,
)

logger = logging.getLogger(__name__)
# diffusers' FLUX ControlNet module imports a deprecated alias of its own; not actionable here.
warnings.filterwarnings("ignore", message=".*FluxPosEmbed.*", category=FutureWarning)

SEED = 0
FLUX_CANNY = "black-forest-labs/FLUX.1-Canny-dev"
FLUX_UNION = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"
FLUX_LORA = ("alimama-creative/FLUX.1-Turbo-Alpha", "diffusion_pytorch_model.safetensors")
FLUX_GGUF = ("city96/FLUX.1-dev-gguf", "flux1-dev-Q8_0.gguf")
SDXL_OPENPOSE = "xinsir/controlnet-openpose-sdxl-1.0"
SDXL_CANNY = "xinsir/controlnet-canny-sdxl-1.0"
SDXL_LORA = ("ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors")

#: Text the tiny tokenizers are trained on (prompts of this project).
CORPUS = [
    "a fashion model wearing a navy t-shirt, full body, professional e-commerce photo, sharp focus",
    "a woman wearing a red dress in a bright photo studio with a seamless light grey backdrop",
    "a man in a blue shirt and jeans, studio lighting, soft diffused light, natural relaxed pose",
    "a canvas tote bag in front of a softly textured neutral plaster wall, natural window light",
    "product photography, soft contact shadow, high quality, detailed fabric texture, 4k",
    "lowres, blurry, deformed hands, extra limbs, text, watermark, logo, jacket, hoodie, skirt, shoes",
    "the quick brown fox jumps over the lazy dog 0123456789 ?!,.;:'\"()[]{}-_/\\",
] * 10


# ------------------------------------------------------------------------------------------- tokenizers
def make_clip_tokenizer(vocab_size: int = 600, model_max_length: int = 77):
    """A CLIP-style byte-level BPE tokenizer (``</w>`` word ends) as a transformers ``CLIPTokenizer``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tok = Tokenizer(models.BPE(unk_token=eos, end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[bos, eos],
                                                        initial_alphabet=alphabet, end_of_word_suffix="</w>",
                                                        show_progress=False))
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for ch in sorted(alphabet):  # every byte also as a word end, so no input maps to unk
        for piece in (ch, ch + "</w>"):
            vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def make_t5_tokenizer(vocab_size: int = 300, model_max_length: int = 512):
    """A T5-style Unigram tokenizer (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2) as a transformers ``T5Tokenizer``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=vocab_size,
                                                            special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    vocab = [tuple(x) for x in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


# ---------------------------------------------------------------------------------------- text encoders
def _seeded():
    import torch

    torch.manual_seed(SEED)


def clip_text_encoder(tokenizer, *, with_projection: bool = False):
    """A 2-layer CLIP text encoder (hidden 32, projection 32) for ``tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5,
                         max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    _seeded()
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def t5_text_encoder(tokenizer):
    """A 2-layer T5 encoder (d_model 32) for ``tokenizer``."""
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                   eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    _seeded()
    return T5EncoderModel(cfg).eval()


# ------------------------------------------------------------------------------------------------ FLUX
FLUX_LATENT_CHANNELS = 4  # the real FLUX VAE has 16; packed 2x2 the transformer sees 4x that


def flux_transformer(*, in_channels: int = 4 * FLUX_LATENT_CHANNELS, out_channels: int | None = None,
                     guidance_embeds: bool = True, seed: int = SEED):
    from diffusers import FluxTransformer2DModel

    import torch

    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=in_channels, out_channels=out_channels, num_layers=1,
                                  num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                  joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds,
                                  axes_dims_rope=[4, 4, 8]).eval()


def flux_vae():
    """A 2-block VAE (scale factor 2, 4 latent channels, native size 32 px) with FLUX's shift/scale."""
    from diffusers import AutoencoderKL

    _seeded()
    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, latent_channels=FLUX_LATENT_CHANNELS, norm_num_groups=2,
                         use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                         scaling_factor=1.5035).eval()


def flux_shared() -> dict:
    """The components every tiny FLUX.1 repo shares: tokenizers, text encoders, VAE, scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    tok, tok2 = make_clip_tokenizer(), make_t5_tokenizer()
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
        tokenizer=tok, text_encoder=clip_text_encoder(tok), tokenizer_2=tok2, text_encoder_2=t5_text_encoder(tok2),
        vae=flux_vae(),
    )


def _save_pipeline(pipe, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    pipe.save_pretrained(folder, safe_serialization=True)


def write_flux_controlnet(folder: Path) -> None:
    """A union FluxControlNetModel (10 modes, guidance embeds), config.json + safetensors at the root."""
    from diffusers import FluxControlNetModel

    import torch

    torch.manual_seed(SEED + 1)
    cn = FluxControlNetModel(patch_size=1, in_channels=4 * FLUX_LATENT_CHANNELS, num_layers=1, num_single_layers=1,
                             attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                             pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True, num_mode=10)
    if folder.exists():
        shutil.rmtree(folder)
    cn.save_pretrained(folder, safe_serialization=True)


def _randomise_lora(model, seed: int) -> None:
    """peft initialises lora_B to zero (a no-op adapter); give both matrices small random values."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _random_lora_state(model, seed: int) -> dict:
    """A rank-4 peft LoRA on ``model``'s attention projections with random weights: its state dict."""
    import copy

    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model = copy.deepcopy(model)
    model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                 init_lora_weights=False))
    _randomise_lora(model, seed)
    return get_peft_model_state_dict(model)


def write_flux_lora(transformer, folder: Path, weight_name: str) -> None:
    """A rank-4 LoRA on the attention projections of ``transformer``, made with peft, diffusers format."""
    from diffusers import FluxPipeline

    folder.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(folder, transformer_lora_layers=_random_lora_state(transformer, SEED + 7),
                                   weight_name=weight_name, safe_serialization=True)


def write_gguf(transformer, path: Path) -> None:
    """The transformer's weights as a GGUF file: 2-D weights whose rows are a multiple of 32 in Q8_0, the
    rest in F32 (as llama.cpp-style converters keep small tensors unquantized). Diffusers keys (a tiny model
    cannot be converted from BFL's); the published files' BFL keys and F32/F16 exceptions are written at real
    width by the tests' ``write_flux_gguf``."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch="flux")
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, tensor in transformer.state_dict().items():
        data = tensor.detach().float().cpu().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build_flux(dest: Path) -> list[str]:
    """Write the tiny FLUX.1 family under ``dest`` (see the module docstring); returns the repo ids."""
    from diffusers import FluxControlPipeline, FluxFillPipeline, FluxKontextPipeline, FluxPipeline
    from safetensors.torch import save_file

    dest = Path(dest)
    shared = flux_shared()
    dev = FluxPipeline(**shared, transformer=flux_transformer(guidance_embeds=True), image_encoder=None,
                       feature_extractor=None)
    _save_pipeline(dev, dest / FLUX_DEV)
    state = {k: v.contiguous() for k, v in dev.transformer.state_dict().items()}
    save_file(state, dest / FLUX_DEV / "flux1-dev.safetensors")
    schnell = FluxPipeline(**shared, transformer=flux_transformer(guidance_embeds=False, seed=SEED + 2),
                           image_encoder=None, feature_extractor=None)
    _save_pipeline(schnell, dest / FLUX_SCHNELL)
    save_file({k: v.contiguous() for k, v in schnell.transformer.state_dict().items()},
              dest / FLUX_SCHNELL / "flux1-schnell.safetensors")
    # Fill: packed latents + packed masked-image latents + the packed 2x2 (scale factor²) mask
    fill_in = 4 * FLUX_LATENT_CHANNELS * 2 + 4 * 2 * 2
    _save_pipeline(FluxFillPipeline(**shared, transformer=flux_transformer(
        in_channels=fill_in, out_channels=4 * FLUX_LATENT_CHANNELS, seed=SEED + 3)), dest / FLUX_FILL)
    _save_pipeline(FluxKontextPipeline(**shared, transformer=flux_transformer(seed=SEED + 4), image_encoder=None,
                                       feature_extractor=None), dest / FLUX_KONTEXT)
    _save_pipeline(FluxControlPipeline(**shared, transformer=flux_transformer(
        in_channels=8 * FLUX_LATENT_CHANNELS, out_channels=4 * FLUX_LATENT_CHANNELS, seed=SEED + 5)), dest / FLUX_CANNY)
    write_flux_controlnet(dest / FLUX_UNION)
    write_flux_lora(dev.transformer, dest / FLUX_LORA[0], FLUX_LORA[1])
    write_gguf(dev.transformer, dest / FLUX_GGUF[0] / FLUX_GGUF[1])
    return [FLUX_DEV, FLUX_SCHNELL, FLUX_FILL, FLUX_KONTEXT, FLUX_CANNY, FLUX_UNION, FLUX_LORA[0], FLUX_GGUF[0]]


# ------------------------------------------------------------------------------------------------ SDXL
def _sdxl_block_kwargs(cross_attention_dim: int, time_ids: int) -> dict:
    return dict(block_out_channels=(32, 64), layers_per_block=2, attention_head_dim=(2, 4),
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                transformer_layers_per_block=(1, 2), cross_attention_dim=cross_attention_dim,
                projection_class_embeddings_input_dim=time_ids * 8 + 32)


def sdxl_unet(in_channels: int = 4, *, refiner: bool = False, seed: int = SEED):
    """A 2-level SDXL-style UNet; ``refiner`` = one text encoder (32) and 5 time ids (aesthetic score)."""
    from diffusers import UNet2DConditionModel

    import torch

    torch.manual_seed(seed)
    kw = _sdxl_block_kwargs(32 if refiner else 64, 5 if refiner else 6)
    return UNet2DConditionModel(sample_size=32, in_channels=in_channels, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **kw).eval()


def sdxl_controlnet(seed: int):
    from diffusers import ControlNetModel

    import torch

    torch.manual_seed(seed)
    return ControlNetModel(in_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                           conditioning_embedding_out_channels=(16, 32), **_sdxl_block_kwargs(64, 6)).eval()


def sdxl_shared() -> dict:
    """Tokenizers, text encoders (CLIP + CLIP with projection), a 2-block VAE (native 32 px) and scheduler."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler

    tok = make_clip_tokenizer()
    _seeded()
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=32).eval()
    return dict(vae=vae, tokenizer=tok, text_encoder=clip_text_encoder(tok), tokenizer_2=tok,
                text_encoder_2=clip_text_encoder(tok, with_projection=True),
                scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                                 beta_schedule="scaled_linear", timestep_spacing="leading"))


def write_sdxl_lora(unet, folder: Path, weight_name: str) -> None:
    """A rank-4 peft LoRA on the UNet's attention projections, in the diffusers SDXL LoRA format."""
    from diffusers import StableDiffusionXLPipeline

    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=_random_lora_state(unet, SEED + 8),
                                                weight_name=weight_name, safe_serialization=True)


def build_sdxl(dest: Path) -> list[str]:
    """Write the tiny SDXL family under ``dest`` (see the module docstring); returns the repo ids."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    dest = Path(dest)
    shared = sdxl_shared()
    base = StableDiffusionXLPipeline(**shared, unet=sdxl_unet(), image_encoder=None, feature_extractor=None)
    _save_pipeline(base, dest / SDXL_BASE)
    _save_pipeline(StableDiffusionXLInpaintPipeline(**shared, unet=sdxl_unet(9, seed=SEED + 3), image_encoder=None,
                                                    feature_extractor=None, requires_aesthetics_score=False),
                   dest / SDXL_INPAINT)
    refiner_parts = {k: v for k, v in shared.items() if k not in ("tokenizer", "text_encoder")}
    _save_pipeline(StableDiffusionXLImg2ImgPipeline(**refiner_parts, tokenizer=None, text_encoder=None,
                                                    unet=sdxl_unet(refiner=True, seed=SEED + 4), image_encoder=None,
                                                    feature_extractor=None, requires_aesthetics_score=True),
                   dest / SDXL_REFINER)
    for repo, seed in ((SDXL_OPENPOSE, SEED + 5), (SDXL_CANNY, SEED + 6)):
        if (dest / repo).exists():
            shutil.rmtree(dest / repo)
        sdxl_controlnet(seed).save_pretrained(dest / repo, safe_serialization=True)
    write_sdxl_lora(base.unet, dest / SDXL_LORA[0], SDXL_LORA[1])
    return [SDXL_BASE, SDXL_INPAINT, SDXL_REFINER, SDXL_OPENPOSE, SDXL_CANNY, SDXL_LORA[0]]

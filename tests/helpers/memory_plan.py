"""Header-only weight files with the real tensor shapes of FLUX.1 and SDXL, for memory-plan tests.

The models are built on PyTorch's ``meta`` device from the published configs (no memory, no weights),
and each file written holds only the safetensors header: 8-byte length + JSON with every tensor's dtype,
shape and offsets — the part the planner reads. The files are a few hundred KB; their ``data_offsets``
describe the real sizes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

DTYPE_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
ITEM = {"F32": 4, "BF16": 2, "F16": 2}


def write_header_only(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str) -> int:
    """Write the safetensors header of ``shapes`` at ``dtype`` (``F32``/``BF16``/``F16``); returns the data bytes."""
    header, off = {}, 0
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n * ITEM[dtype]]}
        off += n * ITEM[dtype]
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return off


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters()}  # tied weights once, as the repos store them


def write_model(folder: Path, model, dtype: str, *, shards: int = 1, variant_too: str | None = None) -> int:
    """``diffusion_pytorch_model.safetensors`` (or ``model-0000i-of-0000n``) headers of ``model`` under ``folder``."""
    shapes = _shapes(model)
    names = list(shapes)
    total = 0
    stem = "model" if shards > 1 or "transformers" in type(model).__module__ else "diffusion_pytorch_model"
    for i in range(shards):
        part = {n: shapes[n] for n in names[i::shards]}
        fname = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors" if shards > 1 else f"{stem}.safetensors"
        total += write_header_only(folder / fname, part, dtype)
        if variant_too:
            write_header_only(folder / fname.replace(".safetensors", f".{variant_too}.safetensors"), part,
                              DTYPE_NAMES["float16"])
    (folder / "config.json").write_text("{}")
    return total


def flux_models():
    import torch
    from diffusers import AutoencoderKL, FluxControlNetModel, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    with torch.device("meta"):
        common = dict(patch_size=1, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                      joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
        dev = FluxTransformer2DModel(in_channels=64, **common)
        fill = FluxTransformer2DModel(in_channels=384, out_channels=64, **common)
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu"))
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, projection_dim=768,
                                            max_position_embeddings=77, hidden_act="quick_gelu"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False)
        # Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro config.json: 5 double and 10 single blocks, 10 modes
        union = FluxControlNetModel(in_channels=64, num_layers=5, num_single_layers=10, attention_head_dim=128,
                                    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                                    guidance_embeds=True, axes_dims_rope=(16, 56, 56), num_mode=10)
    return dict(dev=dev, fill=fill, t5=t5, clip=clip, vae=vae, union=union)


def sdxl_models():
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet_cfg = dict(sample_size=128, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
                    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
                    addition_embed_type="text_time", addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=2816)
    with torch.device("meta"):
        unet = UNet2DConditionModel(in_channels=4, **unet_cfg)
        inpaint = UNet2DConditionModel(in_channels=9, **unet_cfg)
        te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                          num_attention_heads=12, hidden_act="quick_gelu"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
                                                         num_hidden_layers=32, num_attention_heads=20, projection_dim=1280,
                                                         hidden_act="gelu"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2)
        cn = ControlNetModel(in_channels=4, conditioning_channels=3, block_out_channels=(320, 640, 1280),
                             layers_per_block=2, down_block_types=unet_cfg["down_block_types"],
                             attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                             cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                             addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
    return dict(unet=unet, inpaint=inpaint, te=te, te2=te2, vae=vae, cn=cn)


def _index(folder: Path, cls: str, parts: dict[str, tuple[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls, **{k: list(v) for k, v in parts.items()}}))


FLUX_PARTS = {"text_encoder": ("transformers", "CLIPTextModel"), "text_encoder_2": ("transformers", "T5EncoderModel"),
              "tokenizer": ("transformers", "CLIPTokenizer"), "tokenizer_2": ("transformers", "T5TokenizerFast"),
              "vae": ("diffusers", "AutoencoderKL"), "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler"),
              "transformer": ("diffusers", "FluxTransformer2DModel")}
SDXL_PARTS = {"text_encoder": ("transformers", "CLIPTextModel"),
              "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
              "tokenizer": ("transformers", "CLIPTokenizer"), "tokenizer_2": ("transformers", "CLIPTokenizer"),
              "vae": ("diffusers", "AutoencoderKL"), "scheduler": ("diffusers", "EulerDiscreteScheduler"),
              "unet": ("diffusers", "UNet2DConditionModel")}


def write_flux_root(root: Path, *, kontext: bool = True, controlnet: bool = True) -> Path:
    """FLUX.1-dev, Fill-dev, Kontext-dev and the Shakker union ControlNet as header-only bf16 repos."""
    m = flux_models()
    dev = root / "black-forest-labs" / "FLUX.1-dev"
    _index(dev, "FluxPipeline", FLUX_PARTS)
    write_model(dev / "transformer", m["dev"], "BF16", shards=3)
    write_model(dev / "text_encoder_2", m["t5"], "BF16", shards=2)
    write_model(dev / "text_encoder", m["clip"], "BF16")
    write_model(dev / "vae", m["vae"], "BF16")
    for name, cls, tr in (("FLUX.1-Fill-dev", "FluxFillPipeline", m["fill"]),
                          ("FLUX.1-Kontext-dev", "FluxKontextPipeline", m["dev"]))[: 2 if kontext else 1]:
        folder = root / "black-forest-labs" / name
        _index(folder, cls, FLUX_PARTS)
        write_model(folder / "transformer", tr, "BF16", shards=3)
        write_model(folder / "text_encoder_2", m["t5"], "BF16", shards=2)  # present but shared with the base
    if controlnet:
        write_model(root / "Shakker-Labs" / "FLUX.1-dev-ControlNet-Union-Pro", m["union"], "BF16")
    return root


def write_sdxl_root(root: Path) -> Path:
    """SDXL base (fp32 files + fp16 variants, as the repo ships), the inpainting model and two xinsir ControlNets."""
    m = sdxl_models()
    base = root / "stabilityai" / "stable-diffusion-xl-base-1.0"
    _index(base, "StableDiffusionXLPipeline", SDXL_PARTS)
    write_model(base / "unet", m["unet"], "F32", variant_too="fp16")
    write_model(base / "text_encoder", m["te"], "F32", variant_too="fp16")
    write_model(base / "text_encoder_2", m["te2"], "F32", variant_too="fp16")
    write_model(base / "vae", m["vae"], "F32", variant_too="fp16")
    inp = root / "diffusers" / "stable-diffusion-xl-1.0-inpainting-0.1"
    _index(inp, "StableDiffusionXLInpaintPipeline", SDXL_PARTS)
    write_model(inp / "unet", m["inpaint"], "F16")
    for name in ("controlnet-openpose-sdxl-1.0", "controlnet-canny-sdxl-1.0"):
        write_model(root / "xinsir" / name, m["cn"], "F16")
    return root

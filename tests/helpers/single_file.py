"""Writing random models as ORIGINAL-KEY single files (A1111 SDXL checkpoint, BFL FLUX transformer, ComfyUI's
clip_l / t5xxl / ae part files), with our own key mapping from the diffusers names to the original ones (the inverse
of what diffusers' converters read); and header-only versions of them at the real shapes for memory-plan tests."""

from __future__ import annotations

from pathlib import Path

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet(rest: list[str], table=_RESNET) -> str:
    return ".".join([table.get(rest[0], rest[0]), *rest[1:]])


def unet_to_ldm(sd: dict, config) -> dict:
    """A diffusers SDXL UNet state dict in the LDM ``model.diffusion_model.*`` names."""
    n = config["layers_per_block"]
    attn_up = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for k, v in sd.items():
        top = next((d for d in _UNET_TOP if k.startswith(d + ".")), None)
        p = k.split(".")
        if top is not None:
            name = _UNET_TOP[top] + k[len(top):]
        elif p[0] == "down_blocks" and p[2] == "downsamplers":
            name = f"input_blocks.{1 + int(p[1]) * (n + 1) + n}.0.op.{p[-1]}"
        elif p[0] == "down_blocks":
            idx = 1 + int(p[1]) * (n + 1) + int(p[3])
            name = f"input_blocks.{idx}.0.{_resnet(p[4:])}" if p[2] == "resnets" else f"input_blocks.{idx}.1.{'.'.join(p[4:])}"
        elif p[0] == "mid_block":
            name = (f"middle_block.{2 * int(p[2])}.{_resnet(p[3:])}" if p[1] == "resnets"
                    else f"middle_block.1.{'.'.join(p[3:])}")
        elif p[0] == "up_blocks" and p[2] == "upsamplers":
            b = int(p[1])
            name = f"output_blocks.{b * (n + 1) + n}.{2 if attn_up[b] else 1}.conv.{p[-1]}"
        elif p[0] == "up_blocks":
            idx = int(p[1]) * (n + 1) + int(p[3])
            name = f"output_blocks.{idx}.0.{_resnet(p[4:])}" if p[2] == "resnets" else f"output_blocks.{idx}.1.{'.'.join(p[4:])}"
        else:
            raise KeyError(k)
        out["model.diffusion_model." + name] = v
    return out


_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def vae_to_ldm(sd: dict, n_blocks: int) -> dict:
    """A diffusers AutoencoderKL state dict in the LDM ``first_stage_model.*`` names (attention as 1x1 convs)."""
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] in ("encoder", "decoder") and p[1] in ("down_blocks", "up_blocks"):
            i = int(p[2]) if p[1] == "down_blocks" else n_blocks - 1 - int(p[2])
            level = "down" if p[1] == "down_blocks" else "up"
            if p[3] in ("downsamplers", "upsamplers"):
                name = f"{p[0]}.{level}.{i}.{'downsample' if level == 'down' else 'upsample'}.conv.{p[-1]}"
            else:
                name = f"{p[0]}.{level}.{i}.block.{p[4]}.{_resnet(p[5:], _VAE_RESNET)}"
        elif p[0] in ("encoder", "decoder") and p[1] == "mid_block":
            if p[2] == "resnets":
                name = f"{p[0]}.mid.block_{int(p[3]) + 1}.{_resnet(p[4:], _VAE_RESNET)}"
            else:
                name = f"{p[0]}.mid.attn_1.{_VAE_ATTN[p[4]]}.{p[-1]}"
                if v.ndim == 2:
                    v = v[:, :, None, None]
        elif p[0] in ("encoder", "decoder") and p[1] == "conv_norm_out":
            name = f"{p[0]}.norm_out.{p[-1]}"
        else:
            name = k
        out["first_stage_model." + name] = v
    return out


def clip_to_ldm(sd: dict, prefix: str = "conditioner.embedders.0.transformer.") -> dict:
    """CLIP-L as A1111 SDXL keeps it: the transformers names under ``prefix`` (always with ``text_model.``)."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()
            if not k.endswith("position_ids")}


def open_clip_to_ldm(sd: dict, prefix: str = "conditioner.embedders.1.model.") -> dict:
    """A CLIPTextModelWithProjection state dict in OpenCLIP's names (q/k/v fused into ``in_proj``)."""
    import torch

    sd = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}
    simple = {"embeddings.token_embedding.weight": "token_embedding.weight",
              "embeddings.position_embedding.weight": "positional_embedding",
              "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    out = {prefix + "text_projection": sd["text_projection.weight"].T.contiguous()}
    for k, v in sd.items():
        if k in simple:
            out[prefix + simple[k]] = v
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([sd[src + f"self_attn.{q}_proj.{kind}"] for q in "qkv"])
            out[dst + f"attn.out_proj.{kind}"] = sd[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = sd[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = sd[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = sd[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = sd[src + f"mlp.fc2.{kind}"]
    return out


def write_sdxl_checkpoint(pipe, path: Path) -> None:
    """An A1111-layout SDXL checkpoint of a diffusers SDXL pipeline's UNet, VAE and both text encoders."""
    from safetensors.torch import save_file

    sd = {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
          **vae_to_ldm(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels)),
          **clip_to_ldm(pipe.text_encoder.state_dict()), **open_clip_to_ldm(pipe.text_encoder_2.state_dict())}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def flux_to_original(sd: dict, prefix: str = "") -> dict:
    """A diffusers FluxTransformer2DModel state dict in BFL's original names (q/k/v fused, scale/shift swapped)."""
    import torch

    top = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear",
           "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
           "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
           "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
           "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
           "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
           "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer"}
    out = {}
    for d, o in top.items():
        for kind in ("weight", "bias"):
            if f"{d}.{kind}" in sd:
                out[f"{o}.{kind}"] = sd[f"{d}.{kind}"]
    for kind in ("weight", "bias"):
        shift_scale = sd[f"norm_out.linear.{kind}"].chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift_scale[1], shift_scale[0]])
    doubles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")})
    for i in doubles:
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for kind in ("weight", "bias"):
            out[d + f"img_mod.lin.{kind}"] = sd[s + f"norm1.linear.{kind}"]
            out[d + f"txt_mod.lin.{kind}"] = sd[s + f"norm1_context.linear.{kind}"]
            out[d + f"img_attn.qkv.{kind}"] = torch.cat([sd[s + f"attn.to_{q}.{kind}"] for q in "qkv"])
            out[d + f"txt_attn.qkv.{kind}"] = torch.cat([sd[s + f"attn.add_{q}_proj.{kind}"] for q in "qkv"])
            out[d + f"img_attn.proj.{kind}"] = sd[s + f"attn.to_out.0.{kind}"]
            out[d + f"txt_attn.proj.{kind}"] = sd[s + f"attn.to_add_out.{kind}"]
            out[d + f"img_mlp.0.{kind}"] = sd[s + f"ff.net.0.proj.{kind}"]
            out[d + f"img_mlp.2.{kind}"] = sd[s + f"ff.net.2.{kind}"]
            out[d + f"txt_mlp.0.{kind}"] = sd[s + f"ff_context.net.0.proj.{kind}"]
            out[d + f"txt_mlp.2.{kind}"] = sd[s + f"ff_context.net.2.{kind}"]
        out[d + "img_attn.norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "img_attn.norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
        out[d + "txt_attn.norm.query_norm.scale"] = sd[s + "attn.norm_added_q.weight"]
        out[d + "txt_attn.norm.key_norm.scale"] = sd[s + "attn.norm_added_k.weight"]
    singles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks.")})
    for i in singles:
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for kind in ("weight", "bias"):
            out[d + f"modulation.lin.{kind}"] = sd[s + f"norm.linear.{kind}"]
            out[d + f"linear1.{kind}"] = torch.cat([sd[s + f"attn.to_{q}.{kind}"] for q in "qkv"] + [sd[s + f"proj_mlp.{kind}"]])
            out[d + f"linear2.{kind}"] = sd[s + f"proj_out.{kind}"]
        out[d + "norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
    return {prefix + k: v.contiguous() for k, v in out.items()}


# ------------------------------------------------------------------------------------ ComfyUI's part files
def vae_to_bfl(sd: dict, n_blocks: int) -> dict:
    """A diffusers AutoencoderKL state dict as BFL's ``ae.safetensors`` holds it (ComfyUI's ``models/vae/``): the
    LDM names without a prefix (``encoder.down.0.block.0.conv1.weight``, attention as 1x1 convs)."""
    return {k.removeprefix("first_stage_model."): v for k, v in vae_to_ldm(sd, n_blocks).items()}


def clip_to_comfy(sd: dict) -> dict:
    """CLIP-L as ComfyUI's ``clip_l.safetensors`` holds it: the transformers names with ``text_model.`` (transformers
    5 saves them without it and reads both) plus the ``text_projection.weight`` and ``logit_scale`` ComfyUI's CLIP
    module carries (CLIPTextModel ignores them)."""
    import torch

    out = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()
           if not k.endswith("position_ids")}
    hidden = out["text_model.final_layer_norm.weight"].shape[0]
    out["text_projection.weight"] = torch.eye(hidden, dtype=out["text_model.final_layer_norm.weight"].dtype)
    out["logit_scale"] = torch.tensor(4.6052)
    return out


def t5_to_comfy(sd: dict) -> dict:
    """The T5 encoder as ComfyUI's ``t5xxl_*.safetensors`` holds it: the transformers names, the embedding once
    (``shared.weight``; no ``encoder.embed_tokens.weight``)."""
    return {k: v for k, v in sd.items() if k != "encoder.embed_tokens.weight"}


def write_comfy_parts(root: Path, *, clip=None, t5=None, vae=None, t5_name: str = "t5xxl_fp16.safetensors",
                      t5_dtype=None, scaled: bool = False) -> dict[str, Path]:
    """``clip/clip_l.safetensors``, ``clip/<t5_name>`` (cast to ``t5_dtype``; ``scaled``: with the ``scaled_fp8``
    marker tensor of ComfyUI's ``*_scaled`` files) and ``vae/ae.safetensors`` of the given models under ``root``."""
    import torch
    from safetensors.torch import save_file

    out = {}
    for part, sd_of in (("text_encoder", clip), ("text_encoder_2", t5), ("vae", vae)):
        if sd_of is None:
            continue
        if part == "text_encoder":
            sd, path = clip_to_comfy(clip.state_dict()), root / "clip" / "clip_l.safetensors"
        elif part == "text_encoder_2":
            sd, path = t5_to_comfy(t5.state_dict()), root / "clip" / t5_name
            if t5_dtype is not None:
                sd = {k: v.to(t5_dtype) for k, v in sd.items()}
            if scaled:
                sd["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
        else:
            sd, path = vae_to_bfl(vae.state_dict(), len(vae.config.block_out_channels)), root / "vae" / "ae.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        out[part] = path
    return out


# ------------------------------------------------------------------------------------- header-only files
def _header_shapes(sd: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def write_flux_single_file_headers(root: Path, models: dict, *, prefix: str = "model.diffusion_model.") -> None:
    """ComfyUI's FLUX.1-dev layout as header-only bf16 files (`tests.helpers.memory_plan.write_header_only`) of the
    real-shape meta ``models`` (`tests.helpers.memory_plan.flux_models`): ``diffusion_models/flux1-dev.safetensors``
    (BFL keys under ``prefix``), ``clip/clip_l.safetensors``, ``clip/t5xxl_fp16.safetensors``, ``vae/ae.safetensors``."""
    from tests.helpers.memory_plan import _shapes, write_header_only

    write_header_only(root / "diffusion_models" / "flux1-dev.safetensors",
                      _header_shapes(flux_to_original(dict(models["dev"].named_parameters()), prefix=prefix)), "BF16")
    clip = _header_shapes(clip_to_comfy({k: v for k, v in models["clip"].named_parameters()}))
    write_header_only(root / "clip" / "clip_l.safetensors", clip, "F16")
    write_header_only(root / "clip" / "t5xxl_fp16.safetensors", _shapes(models["t5"]), "F16")
    vae = models["vae"]
    write_header_only(root / "vae" / "ae.safetensors",
                      _header_shapes(vae_to_bfl(dict(vae.named_parameters()), len(vae.config.block_out_channels))),
                      "F32")


def write_sdxl_checkpoint_headers(path: Path, models: dict) -> None:
    """``sd_xl_base_1.0.safetensors`` (A1111 layout) as a header-only fp16 file of the real-shape meta ``models``
    (`tests.helpers.memory_plan.sdxl_models`)."""
    from tests.helpers.memory_plan import write_header_only

    unet, vae = models["unet"], models["vae"]
    sd = {**unet_to_ldm(dict(unet.named_parameters()), unet.config),
          **vae_to_ldm(dict(vae.named_parameters()), len(vae.config.block_out_channels)),
          **clip_to_ldm(dict(models["te"].named_parameters())),
          **open_clip_to_ldm(dict(models["te2"].named_parameters()))}
    write_header_only(path, _header_shapes(sd), "F16")


# ------------------------------------------------------------------------------------------- GGUF files
#: city96's FLUX recipe (ComfyUI-GGUF ``tools/convert.py`` + the ``tools/lcpp.patch`` llama-quantize rules):
#: tensors kept in F32 / F16 whatever the quantization (first match wins; 1-D tensors and tensors of at most
#: 1024 elements are F32 too).
FLUX_GGUF_F32 = ("img_in.", "time_in.in_layer.", "vector_in.in_layer.", "guidance_in.in_layer.", "final_layer.linear.")
FLUX_GGUF_F16 = ("txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.")


def flux_gguf_type(name: str, shape: tuple[int, ...], qtype=None):
    """The GGML type city96's converter gives the BFL-key FLUX tensor ``name`` of ``shape`` in a ``qtype`` file
    (default Q8_0): F32 for 1-D tensors, tensors of <= 1024 elements and `FLUX_GGUF_F32`; F16 for `FLUX_GGUF_F16`
    and for rows that are not a whole number of ``qtype`` blocks (llama-quantize's fallback); ``qtype`` otherwise."""
    import math

    import gguf

    q = gguf.GGMLQuantizationType
    qtype = q.Q8_0 if qtype is None else qtype
    if len(shape) == 1 or math.prod(shape) <= 1024 or any(s in name for s in FLUX_GGUF_F32):
        return q.F32
    if any(s in name for s in FLUX_GGUF_F16) or shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
        return q.F16
    return qtype


def write_flux_gguf(sd: dict, path: Path, qtype=None) -> dict[str, tuple]:
    """A FLUX transformer in BFL's original keys (`flux_to_original`) as city96's ``FLUX.1-dev-gguf`` files hold it:
    arch ``flux``, each tensor in `flux_gguf_type` (default Q8_0) quantized with ``gguf.quants.quantize`` from its
    float32 value (bf16 -> f32 is exact). Returns ``{name: (GGMLQuantizationType, stored bytes)}``."""
    import gguf

    qtype = gguf.GGMLQuantizationType.Q8_0 if qtype is None else qtype
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch="flux")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    written = {}
    for name, tensor in sd.items():
        t = flux_gguf_type(name, tuple(tensor.shape), qtype)
        data = gguf.quants.quantize(tensor.detach().float().cpu().numpy(), t)
        writer.add_tensor(name, data, raw_dtype=t)
        written[name] = (t, int(data.nbytes))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written

"""The embedded "published configs" (`pipelines.models.published_configs`, used by `single_file` and by the
real-architecture builder `pipelines.dev_models.realarch`) against a table of the published values.

The table below was assembled from the public sources named in `SOURCES` (GitHub files, copies of the
Hugging Face repo files, the reference implementations), not from the embedded dicts: each entry names its
source. Every key of every embedded dict is either pinned here or listed in `UNVERIFIED` with the reason, so
a key added to an embedded config without a source fails `test_every_embedded_key_is_pinned_or_explained`.
docs/generation.md ("Where the embedded configs come from") has the same table in prose.
"""

from __future__ import annotations

import pytest

from pipelines.models import published_configs as pc
from pipelines.models.generation_models import FLUX_UNION_MODES

SOURCES = {
    "bfl": "github.com/black-forest-labs/flux src/flux/util.py (configs: FluxParams, AutoEncoderParams of "
           "flux-dev, flux-schnell, flux-dev-fill, flux-dev-kontext) and src/flux/sampling.py (get_lin_function "
           "256->0.5, 4096->1.15; cli.py shift=(name != 'flux-schnell')), snapshot 802fb47",
    "dev-tf": "huggingface.co/city96/FLUX.1-dev-gguf/blob/refs%2Fpr%2F34/config.json, "
              "huggingface.co/userdiffuser/GGUF_Test/blob/main/config.json: 378-byte copies of FLUX.1-dev "
              "transformer/config.json (_name_or_path ../checkpoints/flux-dev/transformer, diffusers 0.30.0.dev0)",
    "dev-vae": "a `cat vae/config.json` of FLUX.1-dev in a public GitHub note (search index file 45823727351, "
               "_name_or_path ../checkpoints/flux-dev) and github.com/edkamesh/FluX-optimized vae/config.json "
               "(FLUX.1-schnell snapshot 741f7c3 re-saved)",
    "schnell": "github.com/edkamesh/FluX-optimized: FLUX.1-schnell re-saved by diffusers 0.31 / transformers "
               "4.46 (transformer, scheduler, text_encoder, text_encoder_2, model_index)",
    "dev-sched": "github.com/ostris/ai-toolkit toolkit/sampler.py `flux_config` (a copy of FLUX.1-dev "
                 "scheduler/scheduler_config.json, diffusers 0.30.0.dev0)",
    "fill": "huggingface.co/models123/FLUX.1-Fill/blob/main/transformer/config.json (duplicate of "
            "FLUX.1-Fill-dev, diffusers 0.32.0.dev0)",
    "canny-cn": "huggingface.co/InstantX/FLUX.1-dev-Controlnet-Canny/tree/main: diffusion_pytorch_model "
                "3.58 GB bf16 = 1.79e9 parameters = exactly 5 double + 0 single blocks (config.json 365 B at "
                "revision f825b2b = the 5/0 config serialised)",
    "union-cn": "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro model card (modes canny 0, tile 1, depth 2, blur 3, "
                "pose 4, gray 5, low quality 6; 'a Pro version of FLUX.1-dev-Controlnet-Union'); file 6.6 GB bf16 "
                "(huggingface.co/licyk/flux_controlnet tree) = 3.30e9 parameters = 5 double + 10 single blocks; "
                "the InstantX Union config (two GitHub copies) has num_layers 5, num_single_layers 10, num_mode 10",
    "sdxl-index": "huggingface.co/remg1997/xl-1.0/blob/main/model_index.json and common-canvas/CommonCanvas-XL-NC "
                  "(both 'Duplicate from stabilityai/stable-diffusion-xl-base-1.0', 609 B)",
    "sdxl-derived": "github.com/PRITHIVSAKTHIUR/AI-Art-Generator-SDXL (an SDXL-base derived diffusers repo, "
                    "re-saved by diffusers 0.22 / transformers 4.34): unet, vae, scheduler, text_encoder, "
                    "text_encoder_2, tokenizer, tokenizer_2 configs",
    "sgm": "github.com/Stability-AI/generative-models configs/inference/sd_xl_base.yaml (scale_factor 0.13025, "
           "adm_in_channels 2816, model_channels 320, channel_mult [1,2,4], transformer_depth [1,2,10], "
           "context_dim 2048, num_head_channels 64, use_linear_in_transformer, z_channels 4, ConcatTimestepEmbedderND "
           "outdim 256)",
    "comfy-bigg": "github.com/comfyanonymous/ComfyUI comfy/clip_config_bigg.json (OpenCLIP bigG text tower)",
    "sdxl-inpaint": "huggingface.co/diffusers/stable-diffusion-xl-1.0-inpainting-0.1/blame/refs%2Fpr%2F5/"
                    "model_index.json; the unet: a GitHub copy `SDXL_Unet_Inpaint_Base_config` "
                    "(# diffusers--stable-diffusion-xl-1.0-inpainting-0.1, in_channels 9)",
    "sdxl-canny": "huggingface.co/jbeomlee93/output_lr1e-6_datav3_size1024_step1000 config.json (re-save of "
                  "diffusers/controlnet-canny-sdxl-1.0, diffusers 0.24.0.dev0); briaai/ControlNet-Canny config.json",
    "gdino": "huggingface.co/IDEA-Research/grounding-dino-tiny blame/main/config.json, "
             "blame/25b0b43/config.json (full Swin-T backbone) and blame/main/preprocessor_config.json",
    "sam": "github.com/facebookresearch/segment-anything segment_anything/build_sam.py (build_sam_vit_b); "
           "huggingface.co/Xenova/sam-vit-base preprocessor_config.json (= facebook/sam-vit-huge's); "
           "huggingface.co/uisikdag/finetunedsam config.json (from facebook/sam-vit-base: no size overrides)",
}

_FLUX_TF = {  # FLUX.1 [dev] transformer (dev-tf; the numbers also in bfl: 24 heads x 128 = 3072, depth 19 / 38)
    "_class_name": "FluxTransformer2DModel", "_diffusers_version": "0.30.0.dev0", "attention_head_dim": 128,
    "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
    "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
}
_FLUX_SCHED = {  # dev-sched; base/max from bfl's get_lin_function defaults
    "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
    "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
    "use_dynamic_shifting": True,
}
_SDXL_PARTS = {
    "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
_SDXL_UNET = {  # sdxl-derived unet/config.json (keys added by diffusers >= 0.20 left out: attention_type, dropout)
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280], "center_input_sample": False, "class_embed_type": None,
    "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048,
    "cross_attention_norm": None, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": None, "num_class_embeds": None,
    "only_cross_attention": False, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "resnet_time_scale_shift": "default",
    "sample_size": 128, "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": None,
    "use_linear_projection": True,
}
_CLIP_COMMON = {"attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
                "initializer_factor": 1.0, "initializer_range": 0.02, "layer_norm_eps": 1e-05,
                "max_position_embeddings": 77, "model_type": "clip_text_model", "pad_token_id": 1,
                "vocab_size": 49408}
_CLIP_TOKENIZER = {  # sdxl-derived tokenizer/tokenizer_config.json (AddedToken entries by their content)
    "add_prefix_space": False, "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True,
    "do_lower_case": True, "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": 77,
    "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
}

#: embedded name -> (published values, sources)
PUBLISHED: dict[str, tuple[dict, tuple[str, ...]]] = {
    "FLUX_DEV_TRANSFORMER": (_FLUX_TF, ("dev-tf", "bfl")),
    "FLUX_SCHNELL_TRANSFORMER": ({k: v for k, v in _FLUX_TF.items() if k != "_diffusers_version"}
                                 | {"guidance_embeds": False}, ("schnell", "bfl")),
    "FLUX_FILL_TRANSFORMER": ({**_FLUX_TF, "_diffusers_version": "0.32.0.dev0", "axes_dims_rope": [16, 56, 56],
                               "in_channels": 384, "out_channels": 64}, ("fill", "bfl")),
    "FLUX_KONTEXT_TRANSFORMER": ({k: v for k, v in _FLUX_TF.items() if k != "_diffusers_version"}, ("bfl",)),
    "FLUX_VAE": ({
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 16,
        "latents_mean": None, "latents_std": None, "layers_per_block": 2, "mid_block_add_attention": True,
        "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.3611,
        "shift_factor": 0.1159, "up_block_types": ["UpDecoderBlock2D"] * 4, "use_post_quant_conv": False,
        "use_quant_conv": False}, ("dev-vae", "bfl")),
    "FLUX_SCHEDULER": (_FLUX_SCHED, ("dev-sched", "bfl")),
    "FLUX_SCHNELL_SCHEDULER": ({**_FLUX_SCHED, "shift": 1.0, "use_dynamic_shifting": False}, ("schnell", "bfl")),
    "CLIP_L": ({**_CLIP_COMMON, "architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 768,
                "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                "projection_dim": 768}, ("schnell", "sdxl-derived")),
    "T5_XXL": ({
        "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240, "d_kv": 64, "d_model": 4096,
        "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
        "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 24,
        "num_heads": 64, "num_layers": 24, "output_past": True, "pad_token_id": 0,
        "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
        "use_cache": True, "vocab_size": 32128}, ("schnell",)),
    "FLUX_MODEL_INDEX": ({
        "_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
        ("schnell",)),
    "FLUX_CANNY_CONTROLNET": ({
        "_class_name": "FluxControlNetModel", "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
        "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
        "num_layers": 5, "num_single_layers": 0, "patch_size": 1, "pooled_projection_dim": 768}, ("canny-cn",)),
    "FLUX_UNION_CONTROLNET": ({
        "_class_name": "FluxControlNetModel", "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
        "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
        "num_layers": 5, "num_mode": 10, "num_single_layers": 10, "patch_size": 1, "pooled_projection_dim": 768},
        ("union-cn",)),
    "SDXL_UNET": (_SDXL_UNET, ("sdxl-derived", "sgm")),
    "SDXL_INPAINT_UNET": ({**_SDXL_UNET, "in_channels": 9}, ("sdxl-inpaint",)),
    "SDXL_VAE": ({
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 4,
        "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024,
        "scaling_factor": 0.13025, "up_block_types": ["UpDecoderBlock2D"] * 4}, ("sdxl-derived", "sgm")),
    "CLIP_BIGG": ({**_CLIP_COMMON, "architectures": ["CLIPTextModelWithProjection"], "hidden_act": "gelu",
                   "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
                   "projection_dim": 1280}, ("sdxl-derived", "comfy-bigg")),
    "SDXL_SCHEDULER": ({
        "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
        "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
        "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False},
        ("sdxl-derived",)),
    "SDXL_MODEL_INDEX": ({"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0",
                          "force_zeros_for_empty_prompt": True, "add_watermarker": None, **_SDXL_PARTS},
                         ("sdxl-index",)),
    "SDXL_INPAINT_MODEL_INDEX": ({"_class_name": "StableDiffusionXLInpaintPipeline",
                                  "_diffusers_version": "0.21.0.dev0", "force_zeros_for_empty_prompt": True,
                                  "requires_aesthetics_score": False, **_SDXL_PARTS}, ("sdxl-inpaint",)),
    "SDXL_CANNY_CONTROLNET": ({
        "_class_name": "ControlNetModel", "act_fn": "silu", "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280], "class_embed_type": None, "conditioning_channels": 3,
        "conditioning_embedding_out_channels": [16, 32, 96, 256], "controlnet_conditioning_channel_order": "rgb",
        "cross_attention_dim": 2048, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "flip_sin_to_cos": True,
        "freq_shift": 0, "global_pool_conditions": False, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": None,
        "num_class_embeds": None, "only_cross_attention": False, "projection_class_embeddings_input_dim": 2816,
        "resnet_time_scale_shift": "default", "transformer_layers_per_block": [1, 2, 10], "upcast_attention": None,
        "use_linear_projection": True}, ("sdxl-canny",)),
    "SDXL_TOKENIZER_CONFIG": (_CLIP_TOKENIZER, ("sdxl-derived",)),
    "SDXL_TOKENIZER_2_CONFIG": ({**_CLIP_TOKENIZER, "pad_token": "!"}, ("sdxl-derived",)),
    "FLUX_CLIP_TOKENIZER_CONFIG": ({}, ()),  # every key unverified (below)
}

#: embedded name -> {key: why it could not be checked against a published file}
UNVERIFIED = {
    "FLUX_SCHNELL_TRANSFORMER": {"_diffusers_version": "only a diffusers-0.31 re-save of FLUX.1-schnell was found "
                                                       "(a version stamp; no effect)"},
    "FLUX_KONTEXT_TRANSFORMER": {"_diffusers_version": "no copy of FLUX.1-Kontext-dev transformer/config.json was "
                                                       "found (the values that matter are bfl's flux-dev-kontext)"},
    "FLUX_MODEL_INDEX": {"_diffusers_version": "only re-saves of FLUX.1 model_index.json were found (a stamp)"},
    "FLUX_CLIP_TOKENIZER_CONFIG": {k: "no copy of FLUX.1-dev tokenizer/tokenizer_config.json was found; the values are "
                                      "CLIP-L's tokenizer config, the one SDXL's `tokenizer` publishes (verified)"
                                   for k in pc.FLUX_CLIP_TOKENIZER_CONFIG},
}


def _embedded(name: str) -> dict:
    return getattr(pc, name)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_embedded_config_equals_the_published_values(name):
    published, sources = PUBLISHED[name]
    assert all(s in SOURCES for s in sources)
    embedded = _embedded(name)
    wrong = {k: (embedded.get(k, "<missing>"), v) for k, v in published.items() if embedded.get(k, "<missing>") != v}
    assert not wrong, f"{name} differs from {', '.join(sources)} (embedded, published): {wrong}"


def test_every_embedded_key_is_pinned_or_explained():
    names = [n for n in dir(pc) if n.isupper() and not n.startswith("_") and isinstance(getattr(pc, n), dict)
             and n != "BASE_CONFIGS"]
    assert set(names) == set(PUBLISHED), "an embedded config has no row in the published table"
    unexplained = {n: sorted(set(_embedded(n)) - set(PUBLISHED[n][0]) - set(UNVERIFIED.get(n, {}))) for n in names}
    assert not any(unexplained.values()), unexplained


def test_derived_sizes_agree_with_each_other():
    """Cross-checks that hold in the real checkpoints whatever a single file says."""
    unet, bigg, clip_l = pc.SDXL_UNET, pc.CLIP_BIGG, pc.CLIP_L
    # SDXL add-embedding: pooled bigG (projection_dim) + 6 size/crop numbers x addition_time_embed_dim (sgm: 256 each)
    assert unet["projection_class_embeddings_input_dim"] == bigg["projection_dim"] + 6 * unet["addition_time_embed_dim"]
    # SDXL cross-attention: CLIP-L hidden (768) + bigG penultimate hidden (1280), concatenated
    assert unet["cross_attention_dim"] == clip_l["hidden_size"] + bigg["hidden_size"]
    # SDXL heads: attention_head_dim is the head count per block = channels / 64 (sgm num_head_channels 64)
    assert [c // 64 for c in unet["block_out_channels"]] == unet["attention_head_dim"]
    # FLUX: pooled CLIP-L feeds pooled_projection_dim, T5 d_model feeds joint_attention_dim
    tf = pc.FLUX_DEV_TRANSFORMER
    assert (tf["pooled_projection_dim"], tf["joint_attention_dim"]) == (clip_l["projection_dim"], pc.T5_XXL["d_model"])
    # FLUX packing: 16 latent channels x 2x2 patches = 64; Fill adds masked latents (64) + 8x8-packed mask (256)
    assert tf["in_channels"] == pc.FLUX_VAE["latent_channels"] * 4
    assert pc.FLUX_FILL_TRANSFORMER["in_channels"] == 64 + 64 + 8 * 8 * 4
    # rope axes split the 128-dim head
    assert sum(pc.FLUX_CANNY_CONTROLNET["axes_dims_rope"]) == tf["attention_head_dim"]


def test_union_modes_fit_the_union_controlnet():
    """The Union-Pro card's modes 0..6 (canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6)."""
    assert FLUX_UNION_MODES == {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "openpose": 4, "gray": 5, "lq": 6}
    assert max(FLUX_UNION_MODES.values()) < pc.FLUX_UNION_CONTROLNET["num_mode"]
    assert "num_mode" not in pc.FLUX_CANNY_CONTROLNET


def test_base_configs_write_the_published_dicts():
    """`single_file` lays these out; each must be the dict pinned above (not a stale copy)."""
    by_id = {id(_embedded(n)): n for n in PUBLISHED}
    for files in pc.BASE_CONFIGS.values():
        assert all(id(cfg) in by_id for cfg in files.values()), files.keys()


def test_segmentation_defaults_are_the_published_checkpoints():
    """realarch builds GroundingDINO-tiny and SAM ViT-B from transformers' defaults: they must be those configs."""
    from transformers import GroundingDinoConfig, GroundingDinoImageProcessor, SamConfig, SamImageProcessor

    g = GroundingDinoConfig()  # gdino config.json
    assert (g.d_model, g.encoder_layers, g.decoder_layers, g.encoder_ffn_dim, g.decoder_ffn_dim) == (256, 6, 6, 2048, 2048)
    assert (g.encoder_attention_heads, g.decoder_attention_heads, g.encoder_n_points, g.decoder_n_points) == (8, 8, 4, 4)
    assert (g.num_queries, g.max_text_len, g.num_feature_levels, g.query_dim) == (900, 256, 4, 4)
    assert (g.positional_embedding_temperature, g.fusion_droppath, g.dropout) == (20, 0.1, 0.1)
    b = g.backbone_config  # Swin-T (gdino blame/25b0b43)
    assert (b.model_type, list(b.depths), list(b.num_heads), b.embed_dim, b.window_size) == (
        "swin", [2, 2, 6, 2], [3, 6, 12, 24], 96, 7)
    assert (list(b.out_features), list(b.out_indices)) == (["stage2", "stage3", "stage4"], [2, 3, 4])
    t = g.text_config  # bert-base-uncased
    assert (t.model_type, t.vocab_size, t.hidden_size, t.num_hidden_layers) == ("bert", 30522, 768, 12)
    gp = GroundingDinoImageProcessor()  # gdino preprocessor_config.json
    assert (gp.size["shortest_edge"], gp.size["longest_edge"]) == (800, 1333)
    assert (list(gp.image_mean), list(gp.image_std)) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert (gp.resample, gp.rescale_factor, gp.do_pad) == (2, 1 / 255, True)

    v = SamConfig().vision_config  # sam build_sam_vit_b
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, list(v.global_attn_indexes)) == (
        768, 12, 12, [2, 5, 8, 11])
    assert (v.image_size, v.patch_size, v.window_size, v.output_channels, v.mlp_dim) == (1024, 16, 14, 256, 3072)
    sp = SamImageProcessor()  # sam preprocessor_config.json
    assert (sp.size["longest_edge"], sp.pad_size["height"], sp.pad_size["width"]) == (1024, 1024, 1024)
    assert (list(sp.image_mean), list(sp.image_std)) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert (sp.resample, sp.rescale_factor, sp.do_convert_rgb) == (2, 1 / 255, True)

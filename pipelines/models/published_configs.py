"""The published configs of the FLUX.1 and SDXL checkpoints Vitrine knows, at their **full** published values
(each cites the repo file it was written from; nothing is downloaded).

Used by `pipelines.models.single_file` to lay out a diffusers config folder for a single-file checkpoint
(``flux1-dev.safetensors``, ``sd_xl_base_1.0.safetensors``) so diffusers' ``from_single_file`` never needs the
hub, and by `pipelines.dev_models.realarch` (real width, reduced depth) for random real-architecture models.
"""

from __future__ import annotations
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/transformer/config.json
FLUX_DEV_TRANSFORMER = {
    "_class_name": "FluxTransformer2DModel", "_diffusers_version": "0.30.0.dev0", "attention_head_dim": 128,
    "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
    "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
}
#: huggingface.co/black-forest-labs/FLUX.1-Fill-dev/blob/main/transformer/config.json (latents 64 + masked
#: image latents 64 + the 8x8-packed mask 256 = 384 input channels); unlike dev's it was saved by diffusers
#: 0.32 and so lists ``axes_dims_rope`` (the default) and ``out_channels`` 64
FLUX_FILL_TRANSFORMER = {**FLUX_DEV_TRANSFORMER, "_diffusers_version": "0.32.0.dev0", "axes_dims_rope": [16, 56, 56],
                         "in_channels": 384, "out_channels": 64}
#: huggingface.co/black-forest-labs/FLUX.1-Kontext-dev/blob/main/transformer/config.json
FLUX_KONTEXT_TRANSFORMER = dict(FLUX_DEV_TRANSFORMER)
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/vae/config.json
FLUX_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 16,
    "latents_mean": None, "latents_std": None, "layers_per_block": 2, "mid_block_add_attention": True,
    "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.3611,
    "shift_factor": 0.1159, "up_block_types": ["UpDecoderBlock2D"] * 4, "use_post_quant_conv": False,
    "use_quant_conv": False,
}
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/scheduler/scheduler_config.json
FLUX_SCHEDULER = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
    "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
    "use_dynamic_shifting": True,
}
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/text_encoder/config.json (openai/clip-vit-large-patch14)
CLIP_L = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
    "projection_dim": 768, "vocab_size": 49408,
}
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/text_encoder_2/config.json (google/t5-v1_1-xxl encoder)
T5_XXL = {
    "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240, "d_kv": 64, "d_model": 4096, "decoder_start_token_id": 0,
    "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0, "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06,
    "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24, "output_past": True,
    "pad_token_id": 0, "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False, "use_cache": True, "vocab_size": 32128,
}
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/model_index.json (Fill: FluxFillPipeline; Kontext:
#: FluxKontextPipeline)
FLUX_MODEL_INDEX = {
    "_class_name": "FluxPipeline", "_diffusers_version": "0.30.0.dev0",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
#: huggingface.co/InstantX/FLUX.1-dev-Controlnet-Canny/blob/main/config.json (no num_mode: not a union model;
#: 5 double blocks and **no** single blocks: its 3.58 GB bf16 file is exactly that, 1.79e9 parameters)
FLUX_CANNY_CONTROLNET = {
    "_class_name": "FluxControlNetModel", "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
    "num_layers": 5, "num_single_layers": 0, "patch_size": 1, "pooled_projection_dim": 768,
}
#: huggingface.co/Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro/blob/main/config.json (the InstantX Union
#: architecture: 5 double + 10 single blocks, 10 mode rows; its 6.6 GB bf16 file is 3.30e9 parameters)
FLUX_UNION_CONTROLNET = {**FLUX_CANNY_CONTROLNET, "num_layers": 5, "num_single_layers": 10, "num_mode": 10}

#: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/unet/config.json
SDXL_UNET = {
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
#: huggingface.co/diffusers/stable-diffusion-xl-1.0-inpainting-0.1/blob/main/unet/config.json (9 input channels)
SDXL_INPAINT_UNET = {**SDXL_UNET, "in_channels": 9}
#: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/vae/config.json
SDXL_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
#: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/text_encoder_2/config.json (OpenCLIP bigG)
CLIP_BIGG = {
    "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1280, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 5120, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 20, "num_hidden_layers": 32, "pad_token_id": 1,
    "projection_dim": 1280, "vocab_size": 49408,
}
#: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/scheduler/scheduler_config.json
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}
#: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/model_index.json
_SDXL_COMPONENTS = {
    "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
#: (``add_watermarker`` null: the pipeline decides by whether invisible-watermark is installed)
SDXL_MODEL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True, "add_watermarker": None, **_SDXL_COMPONENTS,
}
#: huggingface.co/diffusers/stable-diffusion-xl-1.0-inpainting-0.1/blob/main/model_index.json (no add_watermarker)
SDXL_INPAINT_MODEL_INDEX = {
    "_class_name": "StableDiffusionXLInpaintPipeline", "_diffusers_version": "0.21.0.dev0",
    "force_zeros_for_empty_prompt": True, "requires_aesthetics_score": False, **_SDXL_COMPONENTS,
}
#: huggingface.co/diffusers/controlnet-canny-sdxl-1.0/blob/main/config.json
SDXL_CANNY_CONTROLNET = {
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
    "use_linear_projection": True,
}

#: huggingface.co/black-forest-labs/FLUX.1-schnell/blob/main/transformer/config.json (no guidance embedding)
FLUX_SCHNELL_TRANSFORMER = {**FLUX_DEV_TRANSFORMER, "guidance_embeds": False}
#: huggingface.co/black-forest-labs/FLUX.1-schnell/blob/main/scheduler/scheduler_config.json
FLUX_SCHNELL_SCHEDULER = {**FLUX_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": False}
#: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/tokenizer/tokenizer_config.json (tokenizer_2:
#: the same with ``pad_token`` "!"); the vocabulary (vocab.json + merges.txt) is CLIP's and is not embedded here.
SDXL_TOKENIZER_CONFIG = {
    "add_prefix_space": False, "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True,
    "do_lower_case": True, "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": 77,
    "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
}
SDXL_TOKENIZER_2_CONFIG = {**SDXL_TOKENIZER_CONFIG, "pad_token": "!"}
#: huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/tokenizer/tokenizer_config.json (CLIP-L's tokenizer: the
#: values of SDXL's ``tokenizer``); written beside CLIP's BPE files when a FLUX.1 single file has no tokenizer folder.
FLUX_CLIP_TOKENIZER_CONFIG = dict(SDXL_TOKENIZER_CONFIG)

FLUX_DEV_ID = "black-forest-labs/FLUX.1-dev"
FLUX_SCHNELL_ID = "black-forest-labs/FLUX.1-schnell"
SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"
#: The full published configs of each base model's components (a diffusers folder's ``model_index.json`` and
#: ``<part>/config.json`` / ``scheduler/scheduler_config.json``), as `pipelines.models.single_file` writes them.
BASE_CONFIGS = {
    FLUX_DEV_ID: {"model_index.json": FLUX_MODEL_INDEX, "transformer/config.json": FLUX_DEV_TRANSFORMER,
                  "scheduler/scheduler_config.json": FLUX_SCHEDULER},
    FLUX_SCHNELL_ID: {"model_index.json": FLUX_MODEL_INDEX, "transformer/config.json": FLUX_SCHNELL_TRANSFORMER,
                      "scheduler/scheduler_config.json": FLUX_SCHNELL_SCHEDULER},
    SDXL_BASE_ID: {"model_index.json": SDXL_MODEL_INDEX, "unet/config.json": SDXL_UNET, "vae/config.json": SDXL_VAE,
                   "text_encoder/config.json": CLIP_L, "text_encoder_2/config.json": CLIP_BIGG,
                   "scheduler/scheduler_config.json": SDXL_SCHEDULER,
                   "tokenizer/tokenizer_config.json": SDXL_TOKENIZER_CONFIG,
                   "tokenizer_2/tokenizer_config.json": SDXL_TOKENIZER_2_CONFIG},
}

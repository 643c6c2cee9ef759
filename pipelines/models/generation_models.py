"""The FLUX.1 and SDXL models the generative engines know, with their licences.

Registered on import (this module is imported by `pipelines.models.profiles` and `pipelines.models.known`). Within a
family and role, the first registered profile is the one an engine prefers when several are found.

Licences, as published with the weights (check the model card before a commercial batch; Vitrine
refuses a non-commercial model for a SKU whose ``product.yaml`` says ``commercial: true``):

- FLUX.1 [schnell] and its GGUF: Apache-2.0 (commercial use allowed).
- FLUX.1 [dev], Fill-dev, Kontext-dev, Canny/Depth-dev and every ControlNet/LoRA/GGUF derived from
  FLUX.1 [dev]: the FLUX.1 [dev] Non-Commercial License.
- SDXL base, refiner and the diffusers SDXL inpainting model: CreativeML OpenRAIL++-M (commercial use
  allowed, with use restrictions); xinsir SDXL ControlNets: Apache-2.0; SDXL-Lightning: OpenRAIL++;
  DMD2: CC BY-NC 4.0 (non-commercial).
- Qwen-Image (Qwen/Qwen-Image, a 20B MMDiT with a Qwen2.5-VL text encoder) and the Qwen-Image-Lightning
  LoRAs (lightx2v): Apache-2.0 (commercial use allowed). Loaded with diffusers' ``QwenImagePipeline``
  through `pipelines.generation.loading.load_pipeline`; no engine generates with it yet.
"""

from __future__ import annotations

import math

from pipelines.models.profile_spec import ModelProfile, register_profile

FLUX_DEV_LICENCE = "FLUX.1-dev-Non-Commercial"
OPENRAIL = "CreativeML-OpenRAIL++-M"

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
FLUX_KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"

#: Text encoders, tokenizers and VAE: identical across the FLUX.1 [dev] family repos.
FLUX_SHARED = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae")
SDXL_SHARED = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae")
FLUX_BASES = (FLUX_DEV, FLUX_SCHNELL)
#: The mode indices of the FLUX union ControlNets (InstantX and Shakker-Labs Union-Pro model cards).
FLUX_UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "openpose": 4, "gray": 5, "lq": 6}
#: The mode indices of xinsir/controlnet-union-sdxl-1.0 (its model card).
SDXL_UNION_MODES = {"openpose": 0, "depth": 1, "hed": 2, "canny": 3, "normal": 4, "segment": 5, "tile": 6}

COMMERCIAL_FLUX_ALTERNATIVES = (FLUX_SCHNELL, SDXL_BASE)

# -- FLUX.1 bases ------------------------------------------------------------------------------------------
register_profile(ModelProfile(
    id=FLUX_DEV, family="flux", role="base", licence=FLUX_DEV_LICENCE, commercial=False,
    pipeline="FluxPipeline", single_file="flux1-dev.safetensors", steps=28, guidance=3.5,
    max_sequence_length=512, alternatives=COMMERCIAL_FLUX_ALTERNATIVES,
    description="FLUX.1 [dev] text-to-image (12B), guidance-distilled",
))
register_profile(ModelProfile(
    id=FLUX_SCHNELL, family="flux", role="base", licence="Apache-2.0", commercial=True,
    pipeline="FluxPipeline", single_file="flux1-schnell.safetensors", steps=4, guidance=0.0,
    max_sequence_length=256, description="FLUX.1 [schnell] text-to-image, 1-4 steps, commercial use allowed",
))
register_profile(ModelProfile(
    id=FLUX_FILL, family="flux", role="fill", licence=FLUX_DEV_LICENCE, commercial=False,
    pipeline="FluxFillPipeline", steps=28, guidance=30.0, strength=1.0, max_sequence_length=512,
    shares=FLUX_SHARED, base_models=FLUX_BASES, alternatives=(SDXL_INPAINT, FLUX_SCHNELL),
    description="FLUX.1 Fill [dev]: inpainting/outpainting (used for the seam band only)",
))
register_profile(ModelProfile(
    id=FLUX_KONTEXT, family="flux", role="kontext", licence=FLUX_DEV_LICENCE, commercial=False,
    pipeline="FluxKontextPipeline", steps=28, guidance=2.5, max_sequence_length=512,
    shares=FLUX_SHARED, base_models=FLUX_BASES,
    description="FLUX.1 Kontext [dev]: instruction-based image editing",
))
register_profile(ModelProfile(
    id="black-forest-labs/FLUX.1-Canny-dev", family="flux", role="control", licence=FLUX_DEV_LICENCE,
    commercial=False, pipeline="FluxControlPipeline", steps=50, guidance=30.0, max_sequence_length=512,
    controls=("canny",), shares=FLUX_SHARED, base_models=FLUX_BASES, alternatives=("xinsir/controlnet-canny-sdxl-1.0",),
    description="FLUX.1 Canny [dev]: structural conditioning on Canny edges (FLUX Control)",
))
register_profile(ModelProfile(
    id="black-forest-labs/FLUX.1-Depth-dev", family="flux", role="control", licence=FLUX_DEV_LICENCE,
    commercial=False, pipeline="FluxControlPipeline", steps=30, guidance=10.0, max_sequence_length=512,
    controls=("depth",), shares=FLUX_SHARED, base_models=FLUX_BASES,
    description="FLUX.1 Depth [dev]: structural conditioning on depth maps (FLUX Control)",
))

# -- FLUX ControlNets --------------------------------------------------------------------------------------
register_profile(ModelProfile(
    id="Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro", family="flux", role="controlnet",
    licence=FLUX_DEV_LICENCE, commercial=False, controls=("openpose", "canny", "depth", "tile"),
    control_modes=FLUX_UNION_MODES, base_models=FLUX_BASES,
    alternatives=("xinsir/controlnet-openpose-sdxl-1.0", "xinsir/controlnet-canny-sdxl-1.0"),
    required_files=("config.json", "diffusion_pytorch_model.safetensors"),
    description="FLUX.1 [dev] union ControlNet (pose, canny, depth... in one model)",
))
register_profile(ModelProfile(
    id="InstantX/FLUX.1-dev-Controlnet-Union", family="flux", role="controlnet",
    licence=FLUX_DEV_LICENCE, commercial=False, controls=("openpose", "canny", "depth", "tile"),
    control_modes=FLUX_UNION_MODES, base_models=FLUX_BASES,
    alternatives=("xinsir/controlnet-openpose-sdxl-1.0", "xinsir/controlnet-canny-sdxl-1.0"),
    required_files=("config.json", "diffusion_pytorch_model.safetensors"),
    description="FLUX.1 [dev] union ControlNet (InstantX)",
))
register_profile(ModelProfile(
    id="InstantX/FLUX.1-dev-Controlnet-Canny", family="flux", role="controlnet", licence=FLUX_DEV_LICENCE,
    commercial=False, controls=("canny",), base_models=FLUX_BASES,
    alternatives=("xinsir/controlnet-canny-sdxl-1.0",),
    required_files=("config.json", "diffusion_pytorch_model.safetensors"),
    description="FLUX.1 [dev] Canny ControlNet (InstantX)",
))

# -- FLUX LoRAs (few-step distills) and quantized transformers ---------------------------------------------
register_profile(ModelProfile(
    id="alimama-creative/FLUX.1-Turbo-Alpha", family="flux", role="lora", licence=FLUX_DEV_LICENCE,
    commercial=False, weight_name="diffusion_pytorch_model.safetensors", steps=8, guidance=3.5,
    base_models=(FLUX_DEV,), description="FLUX.1 [dev] 8-step distill LoRA (Turbo-Alpha)",
))
register_profile(ModelProfile(
    id="ByteDance/Hyper-SD", name="ByteDance/Hyper-SD:flux-8step", family="flux", role="lora",
    licence=FLUX_DEV_LICENCE, commercial=False, weight_name="Hyper-FLUX.1-dev-8steps-lora.safetensors",
    steps=8, guidance=3.5, lora_scale=0.125, base_models=(FLUX_DEV,),
    description="Hyper-FLUX.1-dev 8-step LoRA (fused at scale 0.125, per its model card)",
))
register_profile(ModelProfile(
    id="city96/FLUX.1-dev-gguf", family="flux", role="gguf", licence=FLUX_DEV_LICENCE, commercial=False,
    weight_name="flux1-dev-Q8_0.gguf", base_models=(FLUX_DEV,),
    description="FLUX.1 [dev] transformer quantized to GGUF Q8_0 (for GPUs with less memory)",
))
register_profile(ModelProfile(
    id="city96/FLUX.1-schnell-gguf", family="flux", role="gguf", licence="Apache-2.0", commercial=True,
    weight_name="flux1-schnell-Q8_0.gguf", base_models=(FLUX_SCHNELL,),
    description="FLUX.1 [schnell] transformer quantized to GGUF Q8_0",
))

# -- SDXL ------------------------------------------------------------------------------------------------
register_profile(ModelProfile(
    id=SDXL_BASE, family="sdxl", role="base", licence=OPENRAIL, commercial=True, dtype="float16",
    pipeline="StableDiffusionXLPipeline", single_file="sd_xl_base_1.0.safetensors", steps=30, guidance=5.0,
    description="SDXL 1.0 base text-to-image",
))
register_profile(ModelProfile(
    id=SDXL_INPAINT, family="sdxl", role="inpaint", licence=OPENRAIL, commercial=True, dtype="float16",
    pipeline="StableDiffusionXLInpaintPipeline", steps=20, guidance=8.0, strength=0.99, shares=SDXL_SHARED,
    base_models=(SDXL_BASE,), description="SDXL 1.0 inpainting (9-channel UNet; used for the seam band)",
))
register_profile(ModelProfile(
    id=SDXL_REFINER, family="sdxl", role="refiner", licence=OPENRAIL, commercial=True, dtype="float16",
    pipeline="StableDiffusionXLImg2ImgPipeline", steps=30, guidance=5.0, strength=0.3,
    shares=("text_encoder_2", "tokenizer_2", "vae"), base_models=(SDXL_BASE,),
    description="SDXL 1.0 refiner (img2img detail pass on the generated scene)",
))
register_profile(ModelProfile(
    id="xinsir/controlnet-openpose-sdxl-1.0", family="sdxl", role="controlnet", licence="Apache-2.0",
    commercial=True, dtype="float16", controls=("openpose",), base_models=(SDXL_BASE,),
    required_files=("config.json", "diffusion_pytorch_model.safetensors"),
    description="SDXL OpenPose ControlNet (xinsir)",
))
register_profile(ModelProfile(
    id="xinsir/controlnet-canny-sdxl-1.0", family="sdxl", role="controlnet", licence="Apache-2.0",
    commercial=True, dtype="float16", controls=("canny",), base_models=(SDXL_BASE,),
    required_files=("config.json", "diffusion_pytorch_model.safetensors"),
    description="SDXL Canny ControlNet (xinsir)",
))
register_profile(ModelProfile(
    id="xinsir/controlnet-union-sdxl-1.0", family="sdxl", role="controlnet", licence="Apache-2.0",
    commercial=True, dtype="float16", controls=("openpose", "canny", "depth"), control_modes=SDXL_UNION_MODES,
    base_models=(SDXL_BASE,), description="SDXL union ControlNet (xinsir; ControlNetUnionModel)",
))
register_profile(ModelProfile(
    id="diffusers/controlnet-canny-sdxl-1.0", family="sdxl", role="controlnet", licence=OPENRAIL,
    commercial=True, dtype="float16", controls=("canny",), base_models=(SDXL_BASE,),
    description="SDXL Canny ControlNet (diffusers)",
))
register_profile(ModelProfile(
    id="ByteDance/SDXL-Lightning", family="sdxl", role="lora", licence=OPENRAIL, commercial=True,
    dtype="float16", weight_name="sdxl_lightning_4step_lora.safetensors", steps=4, guidance=0.0,
    scheduler={"class": "EulerDiscreteScheduler", "timestep_spacing": "trailing"}, base_models=(SDXL_BASE,),
    description="SDXL-Lightning 4-step LoRA (Euler, trailing timesteps, no CFG)",
))
register_profile(ModelProfile(
    id="ByteDance/Hyper-SD", name="ByteDance/Hyper-SD:sdxl-8step", family="sdxl", role="lora",
    licence="Hyper-SD (see model card)", commercial=False, dtype="float16",
    weight_name="Hyper-SDXL-8steps-lora.safetensors", steps=8, guidance=0.0,
    scheduler={"class": "DDIMScheduler", "timestep_spacing": "trailing"}, base_models=(SDXL_BASE,),
    alternatives=("ByteDance/SDXL-Lightning",),
    description="Hyper-SDXL 8-step LoRA (DDIM, trailing timesteps, no CFG); licence unverified: treated as non-commercial",
))
register_profile(ModelProfile(
    id="tianweiy/DMD2", family="sdxl", role="lora", licence="CC-BY-NC-4.0", commercial=False, dtype="float16",
    weight_name="dmd2_sdxl_4step_lora_fp16.safetensors", steps=4, guidance=0.0,
    scheduler={"class": "LCMScheduler"}, timesteps=(999, 749, 499, 249), base_models=(SDXL_BASE,),
    alternatives=("ByteDance/SDXL-Lightning",),
    description="DMD2 4-step SDXL LoRA (LCM scheduler, timesteps 999/749/499/249, no CFG)",
))
register_profile(ModelProfile(
    id="madebyollin/sdxl-vae-fp16-fix", family="sdxl", role="vae", licence="MIT", commercial=True,
    dtype="float16", base_models=(SDXL_BASE,), required_files=("config.json",),
    description="SDXL VAE that does not overflow in float16 (used instead of the base's VAE when found)",
))

# -- Qwen-Image (text-to-image; Apache-2.0) --------------------------------------------------------------
QWEN_IMAGE = "Qwen/Qwen-Image"
#: The scheduler the Qwen-Image-Lightning model card gives (exponential time shift, shift log 3, no CFG).
QWEN_LIGHTNING_SCHEDULER = {
    "class": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": math.log(3),
    "max_image_seq_len": 8192, "max_shift": math.log(3), "shift": 1.0, "time_shift_type": "exponential",
    "use_dynamic_shifting": True,
}
register_profile(ModelProfile(
    id=QWEN_IMAGE, family="qwen", role="base", licence="Apache-2.0", commercial=True, pipeline="QwenImagePipeline",
    steps=50, guidance=4.0, max_sequence_length=512,
    description="Qwen-Image text-to-image (20B MMDiT, Qwen2.5-VL text encoder); guidance = true_cfg_scale",
))
for _steps in (8, 4):
    register_profile(ModelProfile(
        id="lightx2v/Qwen-Image-Lightning", name=f"lightx2v/Qwen-Image-Lightning:{_steps}step", family="qwen",
        role="lora", licence="Apache-2.0", commercial=True,
        weight_name=f"Qwen-Image-Lightning-{_steps}steps-V1.0.safetensors", steps=_steps, guidance=1.0,
        scheduler=QWEN_LIGHTNING_SCHEDULER, base_models=(QWEN_IMAGE,),
        description=f"Qwen-Image-Lightning {_steps}-step distill LoRA (FlowMatch Euler, exponential shift, no CFG)",
    ))

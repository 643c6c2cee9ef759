"""Seconds per image and peak GPU memory of full-size FLUX.1-dev and SDXL, default diffusers vs Vitrine's
optimized path, with random weights (speed does not depend on weight values; nothing is downloaded).

Needs a CUDA GPU (an H100 for the issue's targets: FLUX-size <= 2.0 s/image at 1024x1024 and 28 steps,
SDXL-size <= 1.5 s/image at 1024x1024 and 30 steps; public baselines 6.9 s and ~2.5 s). Every
configuration runs in one process on the same models, warm (after compile/warm-up runs):

- ``default``: the diffusers pipeline as documented (bf16 FLUX / fp16 SDXL with its fp32 VAE upcast);
- ``fuse_qkv``: + fused attention QKV projections;
- ``compile``: + regional ``torch.compile`` of the repeated blocks (``compile_repeated_blocks``);
- ``cache``: + first-block cache (FLUX only; skips the rest of the blocks while the first block's
  residual changes less than ``--cache-threshold``; changes the output slightly);
- ``fp8``: + torchao float8 dynamic quantization of the denoiser's linear layers (needs torchao and
  an fp8-capable GPU: compute capability >= 8.9);
- ``vitrine``: all of the above that are available: what ``VITRINE_GEN_FUSE_QKV=1 VITRINE_GEN_COMPILE=1
  VITRINE_GEN_CACHE_THRESHOLD=0.12 VITRINE_GEN_QUANTIZE=fp8`` makes the engines use.

The speed-ups are applied with Vitrine's own `pipelines.generation.loading.apply_speedups` and
`quantize_model`. Text encoding and VAE decoding are included in the time (one image per call).

Usage (on the GPU machine, from the repository root):
    python bench/gpu_generation.py --family both --json bench/results/gpu_generation.json
    python bench/gpu_generation.py --family flux --configs default,vitrine --runs 5
    python bench/gpu_generation.py --tiny --device cpu --configs default,fuse_qkv   # smoke test, any machine
    python bench/gpu_generation.py --plan-only   # the memory planner's plans for 16/24/48/80 GB, any machine

Each run prints the planner's estimated peak beside the measured peak (``torch.cuda.max_memory_allocated``),
and the plans per GPU size of the full-size models (the models of one FLUX.1 or SDXL pipeline).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = ("default", "fuse_qkv", "compile", "cache", "fp8", "vitrine")


# ------------------------------------------------------------------------------------------ architectures
def flux_components(tiny: bool, dtype, device):
    """FLUX.1-dev's architecture (12B transformer, T5-XXL, CLIP-L, 16-channel VAE) with random weights."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from pipelines.dev_models.tiny_generation import flux_shared, flux_transformer, make_clip_tokenizer, make_t5_tokenizer

    if tiny:
        parts = flux_shared()
        parts["transformer"] = flux_transformer(guidance_embeds=True)
        return {k: (v.to(device, dtype) if isinstance(v, torch.nn.Module) else v) for k, v in parts.items()}
    with torch.device(device):
        torch.set_default_dtype(dtype)
        try:
            transformer = FluxTransformer2DModel(
                patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
            t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                         num_heads=64, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32))
            clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12, projection_dim=768,
                                                max_position_embeddings=77, hidden_act="quick_gelu"))
            vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                layers_per_block=2, sample_size=1024, use_quant_conv=False, use_post_quant_conv=False,
                                shift_factor=0.1159, scaling_factor=0.3611)
        finally:
            torch.set_default_dtype(torch.float32)
    return dict(
        transformer=transformer.eval(), text_encoder_2=t5.eval(), text_encoder=clip.eval(), vae=vae.eval(),
        tokenizer=make_clip_tokenizer(), tokenizer_2=make_t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                  base_image_seq_len=256, max_image_seq_len=4096),
    )


def sdxl_components(tiny: bool, dtype, device):
    """SDXL 1.0's architecture (2.6B UNet, CLIP-L + OpenCLIP bigG, VAE) with random weights."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pipelines.dev_models.tiny_generation import make_clip_tokenizer, sdxl_shared, sdxl_unet

    if tiny:
        parts = sdxl_shared()
        parts["unet"] = sdxl_unet()
        return {k: (v.to(device, dtype) if isinstance(v, torch.nn.Module) else v) for k, v in parts.items()}
    with torch.device(device):
        torch.set_default_dtype(dtype)
        try:
            unet = UNet2DConditionModel(
                sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
                transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
                addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
            te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                              num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu"))
            te2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
                                                             num_hidden_layers=32, num_attention_heads=20,
                                                             projection_dim=1280, hidden_act="gelu"))
            vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                layers_per_block=2, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
        finally:
            torch.set_default_dtype(torch.float32)
    tok = make_clip_tokenizer()
    return dict(unet=unet.eval(), text_encoder=te.eval(), text_encoder_2=te2.eval(), vae=vae.eval(), tokenizer=tok,
                tokenizer_2=tok, scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                                                  beta_schedule="scaled_linear", timestep_spacing="leading"))


# --------------------------------------------------------------------------------------------- running
def build(family: str, tiny: bool, device: str):
    import torch
    from diffusers import FluxPipeline, StableDiffusionXLPipeline

    dtype = torch.float32 if device == "cpu" else (torch.bfloat16 if family == "flux" else torch.float16)
    if family == "flux":
        return FluxPipeline(**flux_components(tiny, dtype, device), image_encoder=None, feature_extractor=None)
    return StableDiffusionXLPipeline(**sdxl_components(tiny, dtype, device), image_encoder=None, feature_extractor=None)


def plan_models_of(pipe, family: str):
    """`memplan.PlanModel`s of a built pipeline's models (bytes from their parameters and buffers)."""
    import torch

    from pipelines.generation.memplan import PlanModel

    out = []
    for name, comp in pipe.components.items():
        if not isinstance(comp, torch.nn.Module):
            continue
        tensors = list(comp.parameters()) + list(comp.buffers())
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        biggest = max((t.numel() * t.element_size() for t in tensors), default=0)
        role = "denoiser" if name in ("transformer", "unet") else ("vae" if name == "vae" else "text")
        group = f"denoiser:{family}" if role == "denoiser" else role
        out.append(PlanModel(id=name, role=role, pipeline="base", bytes=nbytes, group=group,
                             max_tensor_bytes=biggest, source="built model"))
    return out


def plan_table(family: str, models, budgets_gb=(16, 24, 48, 80), megapixels: float = 1.0) -> list[dict]:
    """The memory planner's level and estimated peak for each GPU size (and every level's peak)."""
    from pipelines.generation.memplan import GB, LEVELS, activation_bytes, make_plan, peak_bytes, placements_for

    act = activation_bytes(family, megapixels)
    rows = []
    for gb in budgets_gb:
        plan = make_plan(models, family=family, budget_bytes=gb * GB, total_bytes=gb * GB, megapixels=megapixels)
        rows.append({"family": family, "gpu_gb": gb, "level": plan.level, "peak_gb": plan.peak_gb, "fits": plan.fits})
    levels = {lv: round(peak_bytes(placements_for(models, lv), act) / GB, 2) for lv in LEVELS}
    for r in rows:
        r["peak_by_level_gb"] = levels
    return rows


def print_plans(rows: list[dict]) -> None:
    for r in rows:
        print(f"plan  {r['family']:5} {r['gpu_gb']:>3} GB: {r['level']:<17} estimated peak {r['peak_gb']:6.2f} GB"
              f"{'' if r['fits'] else '  (does not fit)'}", flush=True)
    for family in dict.fromkeys(r["family"] for r in rows):
        levels = next(r for r in rows if r["family"] == family)["peak_by_level_gb"]
        print(f"      {family} peak per level: " + ", ".join(f"{k} {v} GB" for k, v in levels.items()))


def configure(pipe, family: str, config: str, cache_threshold: float, device: str) -> list[str]:
    """Apply a configuration's speed-ups to the (fresh) pipeline with Vitrine's helpers."""
    from pipelines.generation.loading import apply_speedups, quantize_model
    from pipelines.generation.settings import GenerationSettings

    denoiser = pipe.transformer if family == "flux" else pipe.unet
    want = {"fuse_qkv": config in ("fuse_qkv", "compile", "cache", "fp8", "vitrine"),
            "compile": config in ("compile", "vitrine") and device != "cpu",
            "cache": config in ("cache", "vitrine") and family == "flux",
            "fp8": config in ("fp8", "vitrine") and device != "cpu"}
    applied = []
    if want["fp8"]:
        try:
            quantize_model(denoiser, "fp8")
            applied.append("fp8")
        except Exception as exc:  # torchao missing / GPU without fp8: report and go on
            print(f"  fp8 not applied: {exc}", file=sys.stderr)
    settings = GenerationSettings(fuse_qkv=want["fuse_qkv"], compile=want["compile"],
                                  cache_threshold=cache_threshold if want["cache"] else None)
    applied += apply_speedups(denoiser, settings)
    if family == "sdxl" and config != "default":
        pipe.vae.config.force_upcast = False  # Vitrine uses the fp16-safe VAE (madebyollin/sdxl-vae-fp16-fix)
        applied.append("vae_fp16")
    return applied


def run_config(family: str, config: str, args) -> dict:
    import torch

    device = args.device
    pipe = build(family, args.tiny, device)
    pipe.set_progress_bar_config(disable=True)
    applied = configure(pipe, family, config, args.cache_threshold, device)
    size = 32 if args.tiny else args.size
    steps = args.steps or (28 if family == "flux" else 30)
    kwargs = dict(prompt="a fashion model wearing a navy t-shirt, studio", height=size, width=size,
                  num_inference_steps=steps, guidance_scale=3.5 if family == "flux" else 5.0, output_type="np")

    def once(seed: int) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t

    warm = [once(0) for _ in range(args.warmup)]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = [once(1 + i) for i in range(args.runs)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    from pipelines.generation.memplan import GB, activation_bytes, make_plan

    models = plan_models_of(pipe, family)
    resident = make_plan(models, family=family, budget_bytes=1e15, total_bytes=None, megapixels=size * size / 1e6)
    result = {
        "planned_peak_gb": resident.peak_gb,  # the planner's estimate for this (resident) run, beside the measured peak
        "planned_activations_gb": round(activation_bytes(family, size * size / 1e6) / GB, 2),"family": family, "config": config, "applied": applied, "size": size, "steps": steps,
              "s_per_image": round(sorted(times)[len(times) // 2], 3), "min_s": round(min(times), 3),
              "warmup_s": [round(w, 2) for w in warm], "peak_gib": round(peak, 2) if peak else None,
              "device": torch.cuda.get_device_name() if device.startswith("cuda") else device}
    return result  # the pipeline is freed when this returns (see main)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["flux", "sdxl", "both"], default="both")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=None, help="default 28 (FLUX) / 30 (SDXL)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first (compilation happens here)")
    ap.add_argument("--cache-threshold", type=float, default=0.12)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny configs at 32 px: a smoke test of this script")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plan-only", action="store_true",
                    help="print the memory planner's plans for 16/24/48/80 GB GPUs of the full-size models (built on "
                         "the meta device: no memory, no GPU) and exit")
    args = ap.parse_args(argv)

    import torch

    families = ["flux", "sdxl"] if args.family == "both" else [args.family]
    if args.plan_only:
        plans = []
        for family in families:
            pipe = build(family, False, "meta")
            plans += plan_table(family, plan_models_of(pipe, family), megapixels=args.size * args.size / 1e6)
        print_plans(plans)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(plans, indent=2))
        return 0

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu_generation.py needs a CUDA GPU (or --tiny --device cpu for a smoke test)", file=sys.stderr)
        return 2
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        ap.error(f"unknown configs {unknown}; expected {', '.join(CONFIGS)}")
    results = []
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        print(f"GPU {torch.cuda.get_device_name()}: {free / 1e9:.1f} of {total / 1e9:.1f} GB free", flush=True)
    for family in families:
        for config in configs:
            r = run_config(family, config, args)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            results.append(r)
            peak = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] else "-"
            print(f"{family:5} {config:9} {r['s_per_image']:7.3f} s/image (min {r['min_s']:.3f}) peak {peak:>9} "
                  f"(planner: {r['planned_peak_gb']:.1f} GB)  "
                  f"{r['size']}px {r['steps']} steps on {r['device']}  [{', '.join(r['applied']) or 'none'}]", flush=True)
        if not args.tiny:
            print_plans(plan_table(family, plan_models_of(build(family, False, "meta"), family),
                                   megapixels=args.size * args.size / 1e6))
        base = next((r for r in results if r["family"] == family and r["config"] == "default"), None)
        for r in results:
            if base and r["family"] == family and r is not base:
                print(f"      {r['config']:9} speed-up x{base['s_per_image'] / r['s_per_image']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

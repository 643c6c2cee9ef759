"""Qwen-Image and its Lightning LoRAs: registered with their licences and loaded through Vitrine's loader
into diffusers' QwenImagePipeline, on a tiny random model written in the real repo layout."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.generation.settings import GenerationSettings

QWEN = "Qwen/Qwen-Image"
LIGHTNING = "lightx2v/Qwen-Image-Lightning:8step"


def _tiny_qwen(root):
    """Qwen/Qwen-Image (transformer, Qwen2.5-VL text encoder, Qwen2 tokenizer, Qwen-Image VAE) and a random
    Lightning LoRA, written with save_pretrained / save_lora_weights."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
    from tokenizers import pre_tokenizers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    from pipelines.dev_models.tiny_generation import _random_lora_state

    vocab = {"<|endoftext|>": 0}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=1024)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    text = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "rope_theta": 1000000.0, "vocab_size": len(tok),
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}}
    te = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=text, vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                                         "out_hidden_size": 16}, hidden_size=16, vocab_size=len(tok)))
    pipe = QwenImagePipeline(transformer=transformer, vae=vae, text_encoder=te, tokenizer=tok,
                             scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.save_pretrained(root / QWEN, safe_serialization=True)
    lora = root / "lightx2v" / "Qwen-Image-Lightning"
    lora.mkdir(parents=True)
    QwenImagePipeline.save_lora_weights(lora, transformer_lora_layers=_random_lora_state(transformer, 11),
                                        weight_name="Qwen-Image-Lightning-8steps-V1.0.safetensors",
                                        safe_serialization=True)
    return root


@pytest.fixture(scope="module")
def qwen_root(tmp_path_factory):
    return _tiny_qwen(tmp_path_factory.mktemp("qwen"))


def test_qwen_image_profiles_and_licences():
    from pipelines.models.profiles import get_profile, list_profiles
    from pipelines.models.licence import licence_of

    assert [p.name for p in list_profiles("qwen", "base")] == [QWEN]
    assert {p.name for p in list_profiles("qwen", "lora")} == {LIGHTNING, "lightx2v/Qwen-Image-Lightning:4step"}
    for name in (QWEN, LIGHTNING):
        info = licence_of(get_profile(name))
        assert info.licence == "Apache-2.0" and info.commercial
    lp = get_profile(LIGHTNING)
    assert lp.steps == 8 and lp.scheduler["time_shift_type"] == "exponential" and lp.base_models == (QWEN,)


def test_qwen_image_loads_with_its_lightning_lora_and_generates(qwen_root):
    import torch

    from pipelines.engines.generative import set_scheduler
    from pipelines.generation.loading import MODEL_CACHE, load_pipeline
    from pipelines.models.profiles import get_profile

    root = qwen_root
    plain = load_pipeline(QWEN, model_root=root, settings=GenerationSettings(device="cpu"))
    assert type(plain).__name__ == "QwenImagePipeline"
    fused = load_pipeline(QWEN, model_root=root, settings=GenerationSettings(device="cpu", loras=(LIGHTNING,)))
    assert fused.transformer is not plain.transformer and fused.text_encoder is plain.text_encoder  # cached once
    q0 = plain.transformer.transformer_blocks[0].attn.to_q.weight
    q1 = fused.transformer.transformer_blocks[0].attn.to_q.weight
    assert not torch.equal(q0, q1)  # the LoRA is fused into the weights
    set_scheduler(fused, get_profile(LIGHTNING).scheduler)
    assert fused.scheduler.config.time_shift_type == "exponential"
    out = fused(prompt="a navy dress on a model", height=32, width=32, num_inference_steps=2, true_cfg_scale=1.0,
                output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()
    MODEL_CACHE.clear()


@pytest.mark.parametrize("gb", [24, 80])
def test_qwen_image_is_planned_like_the_other_families(qwen_root, gb):
    from pipelines.generation.memplan import plan_for
    from pipelines.generation.modelset import ModelSet
    from pipelines.models.profiles import get_profile

    root = qwen_root
    ms = ModelSet(family="qwen", base=get_profile(QWEN), paths={QWEN: root / QWEN})
    plan = plan_for(ms, GenerationSettings(), device="cuda", gpu_memory_gb=gb)
    ids = {m.id for m in plan.models}
    assert {f"{QWEN}/transformer", f"{QWEN}/text_encoder", f"{QWEN}/vae"} == ids and plan.fits
